#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds everything the test VM needs and boots it under QEMU arm64.
#   scripts/vm.sh check   the guest's checks (and, on kernels with KUnit, the
#                         module's KUnit suite at insmod), judged by the
#                         runner (ends with "N passed, N failed")
#   scripts/vm.sh run     the demonstration: the heaps, allocation timing and
#                         the pipelines' cache maintenance, through rdh
#   scripts/vm.sh bench   the benchmark scenarios (see scripts/bench.sh)
#   scripts/vm.sh dma     only the real-DMA suite (rdh_dma) on RDH_TOPOLOGY
#   scripts/vm.sh clients Debian's libcamera and GStreamer capture frames
#                         from /dev/dma_heap/system (suite rdh_clients; the
#                         drop-in kernel; RDH_CLIENTS_HEAP=upstream serves
#                         it with the upstream system heap instead)
# The kernel is RDH_PROFILE's (scripts/env.sh; default: bench for bench
# and run, test otherwise). Settings for other boots:
#   RDH_PARAMS      module parameters, comma separated (e.g. heap_name=foo)
#   RDH_APPEND      more kernel command line (e.g. swiotlb=65536,force)
#   RDH_MACHINE     QEMU -M value (default: virt)
#   RDH_MEMORY      guest RAM in MiB (default: 1024; DMA boots 3072, dma32 6144)
#   RDH_QEMU_ARGS   more QEMU arguments, space separated
#   RDH_LOG         console log (default: target/vm-<mode>.log)
#   RDH_TOPOLOGY    the DMA topology of QEMU's edu device, a PCI device with
#                   a real DMA engine (the guest's rdh_dma suite uses it):
#                   plain (64-bit mask, coherent PCIe host; the default for
#                   dma), iommu (behind an SMMUv3), dma32 (32-bit mask,
#                   RAM up to 7 GiB: swiotlb bounces high pages), swiotlb
#                   (swiotlb=65536,force), noncoherent (no dma-coherent on
#                   the PCIe host and root in the device tree), none (no
#                   edu device; the default for check, run, bench)
#                   With check, the DMA suite runs in the check boot, at
#                   QEMU's real pace (100 ms per engine transfer).
#   RDH_ICOUNT=1    run QEMU with -icount sleep=off: the guest's idle time
#                   (waiting for the engine's 100 ms timer) passes at once;
#                   the default for dma (one vCPU: icount has no MTTCG)
set -euo pipefail
mode=${1:-check}
case "$mode" in
check | dma) export RDH_PROFILE=${RDH_PROFILE:-test} ;;
# run: the demonstration counts the system heap's maintenance too, with the
# importer driver's kprobes, which the bench kernel has.
bench | run) export RDH_PROFILE=${RDH_PROFILE:-bench} ;;
clients) export RDH_PROFILE=${RDH_PROFILE:-dropin} ;;
*) export RDH_PROFILE=${RDH_PROFILE:-test} ;;
esac
. "$(dirname "$0")/env.sh"

# RDH_KDIR: boot a kernel built elsewhere (the heap in a kernel tree,
# scripts/check-intree.sh); RDH_KO: the heap module to load instead of the
# out-of-tree one built here (the importer test driver is always built here).
if [ -n "${RDH_KDIR:-}" ]; then
	KDIR=$RDH_KDIR
	[ -x "$KDIR/usr/gen_init_cpio" ] || { mkdir -p "$KDIR/usr" && clang -O2 -o "$KDIR/usr/gen_init_cpio" "$KSRC/usr/gen_init_cpio.c"; }
else
	KDIR=$(bash "$REPO_ROOT/scripts/build-kernel.sh" | tail -1)
fi
modules=$(KDIR=$KDIR bash "$REPO_ROOT/scripts/build-module.sh" | tail -1)
ko=${RDH_KO:-$modules}
selftest=$(bash "$REPO_ROOT/scripts/build-selftest.sh" | tail -1)

cd "$REPO_ROOT"
[ -x target/aarch64-unknown-linux-musl/release/guest-init ] ||
	echo "vm: building the guest programs (static aarch64; first run only, about a minute)" >&2
cargo build -q --release --locked -p dmabuf-heap-guest -p rdh --target aarch64-unknown-linux-musl
cargo build -q --release --locked -p rdh-runner
guest=$REPO_ROOT/target/aarch64-unknown-linux-musl/release/guest-init
tool=$REPO_ROOT/target/aarch64-unknown-linux-musl/release/rdh
runner=$REPO_ROOT/target/release/rdh-runner

out=$CACHE_ROOT/vm/$(basename "$KDIR")
mkdir -p "$out"
cat >"$out/initramfs.list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
file /init $guest 0755 0 0
dir /bin 0755 0 0
file /bin/rdh $tool 0755 0 0
$([ -f "$ko" ] && echo "file /rust_dmabuf_heap.ko $ko 0644 0 0")
file /rdh_importer.ko $(dirname "$modules")/rdh_importer.ko 0644 0 0
file /dmabuf-heap $selftest 0755 0 0
$(system_heap=$KDIR/drivers/dma-buf/heaps/system_heap.ko
	[ -f "$system_heap" ] && echo "file /system_heap.ko $system_heap 0644 0 0")
LIST
initramfs=$out/initramfs.cpio
# The clients' Debian userland (scripts/client-rootfs.sh), beside ours.
if [ "$mode" = clients ]; then
	clients_list=$(bash "$REPO_ROOT/scripts/client-rootfs.sh" | tail -1)
	cat "$clients_list" >>"$out/initramfs.list"
	initramfs=$out/initramfs-clients.cpio
fi
"$KDIR/usr/gen_init_cpio" "$out/initramfs.list" >"$initramfs"

# RDH_MEMCG=1 (make check's DMA boot) turns on the dma-heap core's memcg
# accounting so that the guest can verify that our pages are charged (and
# the page pool bypassed); every other boot keeps the default, so that its
# checks, and the real DMA of the matrix and of make check-debug, run with
# the pool.
# A kernel with kmemleak (make check-debug) gets its verdict as a last suite.
# Only the module's test build has the KUnit suite.
extra_append="rdh_kunit=$RDH_KUNIT ${RDH_APPEND:-}"
expect=(--expect-suite rdh_guest --expect-suite dmabuf_heaps_selftest)
# shellcheck disable=SC2207 # suite names have no spaces
[ "$RDH_KUNIT" = y ] && expect+=($(kunit_suite_args --expect-suite))
[ "$mode" = dma ] && [ "${RDH_MEMCG:-0}" = 1 ] && extra_append+=" dma_heap.mem_accounting=1"
[ "$mode" = clients ] && extra_append+=" rdh_clients_heap=${RDH_CLIENTS_HEAP:-ours}"
if [ "$mode" = check ]; then
	expect+=(--expect-suite rdh_core_contract)
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
[ "$mode" = dma ] && smp=1
# DMA boots get room for a 1 GiB buffer (guest/src/dma.rs).
memory=${RDH_MEMORY:-$([ "$mode" = dma ] && echo 3072 || echo 1024)}
machine=${RDH_MACHINE:-virt}
qemu_args=()
for arg in ${RDH_QEMU_ARGS:-}; do qemu_args+=(--qemu-arg "$arg"); done

# The DMA topology (see the top of this file).
topology=${RDH_TOPOLOGY:-$([ "$mode" = dma ] && echo plain || echo none)}
if [ "$topology" != none ]; then
	# swiotlb's peak use (debugfs io_tlb_used_hiwater), which the DMA suite
	# reads per case: counted always up to 7.2, from 7.3 only with
	# swiotlb=...,track_hiwater (which 7.2 does not parse: it would lose
	# the force before it). 7.3 on arm64 with static call trampolines
	# (kCFI) crashes at boot when asked (the early parameter patches text
	# before text can be patched): there the peak goes uncounted.
	hiwater=
	if grep -q track_hiwater "$KSRC/kernel/dma/swiotlb.c"; then
		if ! grep -qx CONFIG_HAVE_STATIC_CALL=y "$KDIR/.config"; then
			hiwater=track_hiwater
			extra_append+=" rdh_swiotlb_peak=1"
		fi
	elif grep -q used_hiwater "$KSRC/kernel/dma/swiotlb.c"; then
		extra_append+=" rdh_swiotlb_peak=1"
	fi
	edu_mask=0xffffffffffffffff edu_bits=64 bounces=0 swiotlb=$hiwater
	machine=virt,gic-version=3
	case "$topology" in
	plain) ;;
	iommu) machine+=,iommu=smmuv3 ;;
	dma32) edu_mask=0xffffffff edu_bits=32 bounces=1 memory=6144 ;;
	swiotlb) swiotlb=65536,force${hiwater:+,$hiwater} bounces=1 ;;
	noncoherent)
		# QEMU's device tree for this very machine, without dma-coherent on
		# the PCIe host and on the root node (of_dma_is_coherent() walks up
		# to it).
		dtb=$out/noncoherent-$smp-$memory.dtb
		"$QEMU" -L "$QEMU_DIR/usr/share/qemu" -M "$machine,dumpdtb=$dtb.orig" -cpu max \
			-smp "$smp" -m "$memory" -nographic -nic none >/dev/null
		pcie=$(fdtget -l "$dtb.orig" / | grep '^pcie@' | head -1)
		cp "$dtb.orig" "$dtb"
		fdtput -d "$dtb" "/$pcie" dma-coherent
		fdtput -d "$dtb" / dma-coherent
		qemu_args+=(--qemu-arg -dtb --qemu-arg "$dtb")
		;;
	*)
		echo "unknown RDH_TOPOLOGY=$topology" >&2
		exit 2
		;;
	esac
	[ -n "$swiotlb" ] && extra_append+=" swiotlb=$swiotlb"
	qemu_args+=(--qemu-arg -device --qemu-arg "edu,dma_mask=$edu_mask")
	extra_append+=" rdh_topology=$topology rdh_bounces=$bounces rdh_edu_dma_bits=$edu_bits"
	expect+=(--expect-suite rdh_dma)
fi
if [ "${RDH_ICOUNT:-$([ "$mode" = dma ] && echo 1)}" = 1 ]; then
	qemu_args+=(--qemu-arg -icount --qemu-arg shift=0,sleep=off)
fi
args=(--qemu "$QEMU" --qemu-data "$QEMU_DIR/usr/share/qemu"
	--kernel "$KDIR/arch/arm64/boot/Image" --initrd "$initramfs"
	--machine "$machine" --smp "$smp" --memory "$memory"
	--timeout "${RDH_TIMEOUT:-300}" "${qemu_args[@]}"
	--append "rdh_mode=$mode rdh_params=${RDH_PARAMS:-} $extra_append")
# The heap built into the kernel: its KUnit suite runs at boot.
# shellcheck disable=SC2207 # suite names have no spaces
grep -qx CONFIG_DMABUF_HEAPS_RUST=y "$KDIR/.config" && args+=($(kunit_suite_args --boot-suite))
# More suites that run at boot and must pass (RDH_BOOT_SUITES, e.g. the
# kernel crate's doctests, rust_doctests_kernel).
for suite in ${RDH_BOOT_SUITES:-}; do
	args+=(--boot-suite "$suite")
	expect+=(--expect-suite "$suite")
done
log=${RDH_LOG:-$REPO_ROOT/target/vm-$mode.log}
case "$mode" in
check)
	exec "$runner" "${args[@]}" --log "$log" "${expect[@]}"
	;;
dma)
	exec "$runner" "${args[@]}" --log "$log" --expect-suite rdh_dma_setup --expect-suite rdh_dma \
		$([ "$RDH_KUNIT" = y ] && kunit_suite_args --expect-suite)
	;;
bench)
	exec "$runner" "${args[@]}" --log "$log" \
		--echo "rdh:" $(kunit_suite_args --expect-suite)
	;;
clients)
	exec "$runner" "${args[@]}" --log "$log" --expect-suite rdh_clients
	;;
run)
	exec "$runner" "${args[@]}" --log "$log" \
		--echo "rdh:" --echo "rust_dmabuf_heap:" \
		$(kunit_suite_args --expect-suite) --expect-suite rdh_run
	;;
*)
	echo "usage: $0 check|run|bench|dma|clients" >&2
	exit 2
	;;
esac
