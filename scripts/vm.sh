#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds everything the test VM needs and boots it under QEMU arm64.
#   scripts/vm.sh check   KUnit at insmod + the guest's checks, judged by
#                         the runner (ends with "N passed, N failed")
#   scripts/vm.sh run     the demonstration: both heaps, a few lines
#   scripts/vm.sh bench   the benchmark scenarios (see scripts/bench.sh)
# RDH_PARAMS (e.g. heap_name=foo) is passed to the module.
set -euo pipefail
mode=${1:-check}
# The check boot runs on the test kernel (vgem, fault injection).
[ "$mode" = check ] && export RDH_TEST_KERNEL=1
. "$(dirname "$0")/env.sh"

KDIR=$(bash "$REPO_ROOT/scripts/build-kernel.sh" | tail -1)
ko=$(KDIR=$KDIR bash "$REPO_ROOT/scripts/build-module.sh" | tail -1)
selftest=$(bash "$REPO_ROOT/scripts/build-selftest.sh" | tail -1)

cd "$REPO_ROOT"
cargo build -q --release --locked -p dmabuf-heap-guest --target aarch64-unknown-linux-musl
cargo build -q --release --locked -p rdh-runner
guest=$REPO_ROOT/target/aarch64-unknown-linux-musl/release/guest-init
runner=$REPO_ROOT/target/release/rdh-runner

out=$CACHE_ROOT/vm/$(kernel_key)
mkdir -p "$out"
cat >"$out/initramfs.list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
file /init $guest 0755 0 0
file /rust_dmabuf_heap.ko $ko 0644 0 0
file /rdh_importer.ko $(dirname "$ko")/rdh_importer.ko 0644 0 0
file /dmabuf-heap $selftest 0755 0 0
LIST
"$KDIR/usr/gen_init_cpio" "$out/initramfs.list" >"$out/initramfs.cpio"

# The check boot turns on the dma-heap core's memcg accounting so that the
# guest can verify that our pages are charged; `make run` keeps the default.
# A kernel with kmemleak (make check-debug) gets its verdict as a last suite.
extra_append=
expect=(--expect-suite rust_dmabuf_heap --expect-suite rdh_guest
	--expect-suite dmabuf_heaps_selftest)
if [ "$mode" = check ]; then
	extra_append="dma_heap.mem_accounting=1"
	if grep -qx CONFIG_DEBUG_KMEMLEAK=y "$KDIR/.config"; then
		extra_append+=" rdh_kmemleak=1"
		expect+=(--expect-suite rdh_kmemleak)
	fi
	# KASAN's quarantine delays frees: the guest allows for it in MemFree.
	if grep -qx CONFIG_KASAN=y "$KDIR/.config"; then
		extra_append+=" rdh_kasan=1"
	fi
fi

# The checks run a thread per vCPU against each other (guest/src/stress.rs).
smp=2
[ "$mode" = check ] && smp=4
args=(--qemu "$QEMU" --qemu-data "$QEMU_DIR/usr/share/qemu"
	--kernel "$KDIR/arch/arm64/boot/Image" --initrd "$out/initramfs.cpio"
	--smp "$smp" --memory 1024 --timeout "${RDH_TIMEOUT:-300}"
	--append "rdh_mode=$mode rdh_params=${RDH_PARAMS:-} $extra_append")
case "$mode" in
check)
	exec "$runner" "${args[@]}" --log "$REPO_ROOT/target/vm-check.log" "${expect[@]}"
	;;
bench)
	exec "$runner" "${args[@]}" --log "$REPO_ROOT/target/vm-bench.log" \
		--echo "rdh:" --expect-suite rust_dmabuf_heap
	;;
run)
	exec "$runner" "${args[@]}" --log "$REPO_ROOT/target/vm-run.log" \
		--echo "rdh:" --echo "rust_dmabuf_heap:" \
		--expect-suite rust_dmabuf_heap --expect-suite rdh_run
	;;
*)
	echo "usage: $0 check|run|bench" >&2
	exit 2
	;;
esac
