#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check`: every test this project has, from a fresh machine.
#   1. set-up (idempotent)            4. test kernel (cached) and module build
#   2. host tests (cargo test), the      with CLIPPY=1, no warnings
#      cache model, clippy
#   3. rustfmt with the kernel's         5. QEMU arm64: KUnit at insmod + guest
#      .rustfmt.toml; the module graph      checks, on the cached heap and on
#                                           the uncached one; then real DMA by
#                                           the edu device (plain topology)
# Ends with "N passed, N failed" over host tests and VM results; exits
# non-zero if anything failed.
set -uo pipefail
export RDH_PROFILE=${RDH_PROFILE:-test}
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)
host_passed=0 host_failed=0 vm_passed=0 vm_failed=0 broken=()

step "set-up (KVER=$KVER)"
bash scripts/setup.sh || { echo "check: set-up failed"; exit 1; }

step "host tests"
host_log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$host_log" | grep -E '^(test result|running|error|failures)|FAILED|panicked'
host_rc=${PIPESTATUS[0]}
read -r host_passed host_failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' "$host_log")
rm -f "$host_log"
[ "$host_rc" -eq 0 ] || broken+=("host tests")

step "cache model: ownership rules vs. a simulated CPU cache (10^5 random + exhaustive)"
if cargo run -q --release --locked -p cache-model --bin cache-model; then
	model_ok=1
else
	model_ok=0
	broken+=("cache model")
fi

step "clippy (user-space crates)"
if cargo clippy -q --workspace --all-targets --locked -- -D warnings; then
	echo "clippy: clean"
else
	broken+=("clippy")
fi

step "rustfmt (kernel .rustfmt.toml)"
if rustfmt --check --config-path "$KSRC/.rustfmt.toml" $(git ls-files '*.rs'); then
	echo "rustfmt: clean"
else
	broken+=("rustfmt")
fi

step "module graph (no circles; the abstractions import nothing of the driver)"
if python3 scripts/module-graph.py | tail -1; [ "${PIPESTATUS[0]}" -eq 0 ]; then
	:
else
	python3 scripts/module-graph.py
	broken+=("module graph")
fi

step "kernel $(kernel_key) (built on the first run, then cached)"
if ! bash scripts/build-kernel.sh; then
	echo "check: kernel build failed"
	exit 1
fi

step "module build, CLIPPY=1"
if bash scripts/build-module.sh CLIPPY=1; then
	echo "module: built with no warnings"
else
	broken+=("module build")
fi

# One QEMU boot: the runner's last line is "N passed, N failed[, N skipped]".
vm_passed=0 vm_failed=0 vm_skipped=0
boot() {
	local what=$1 log rc p f k
	shift
	log=$(mktemp)
	bash scripts/vm.sh "$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	read -r p f k < <(awk '/^[0-9]+ passed, [0-9]+ failed/ { p = $1; f = $3; k = $5 } END { print p + 0, f + 0, k + 0 }' "$log")
	rm -f "$log"
	vm_passed=$((vm_passed + p)) vm_failed=$((vm_failed + f)) vm_skipped=$((vm_skipped + k))
	[ "$rc" -eq 0 ] || broken+=("$what")
}
if [[ " ${broken[*]} " == *" module build "* ]]; then
	broken+=("QEMU runs (not started)")
else
	step "QEMU arm64: KUnit at insmod + guest checks"
	boot "QEMU check run" check
	step "QEMU arm64: the guest checks on the uncached heap"
	RDH_APPEND=rdh_heap=uncached RDH_LOG=$REPO_ROOT/target/vm-uncached.log boot "QEMU check run (uncached heap)" check
	# uncached_heap=N here: the DMA setup suite checks that the heap is then
	# absent (check-debug and check-matrix run the uncached heap's DMA cases).
	step "QEMU arm64: real DMA by QEMU's edu device (plain topology; make check-matrix runs all)"
	RDH_TOPOLOGY=plain RDH_MEMCG=1 RDH_PARAMS=uncached_heap=N RDH_LOG=$REPO_ROOT/target/vm-dma.log boot "QEMU DMA run" dma
fi

step "summary"
echo "host tests: $host_passed passed, $host_failed failed"
echo "cache model: $([ "${model_ok:-0}" = 1 ] && echo "all campaigns passed" || echo FAILED)"
echo "VM (KUnit + guest + real DMA): $vm_passed passed, $vm_failed failed, $vm_skipped skipped"
echo "wall time: $(($(date +%s) - start)) s"
failed=$((host_failed + vm_failed))
if [ ${#broken[@]} -gt 0 ]; then
	echo "failed steps: ${broken[*]}"
	[ $failed -gt 0 ] || failed=${#broken[@]}
fi
echo "$((host_passed + vm_passed)) passed, $failed failed"
[ ${#broken[@]} -eq 0 ] && [ $failed -eq 0 ]
