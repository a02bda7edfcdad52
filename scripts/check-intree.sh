#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check-intree`: the heap as an in-tree kernel option, both ways. A
# copy of the kernel source gets the heap (scripts/add-to-kernel-tree.sh:
# drivers/dma-buf/heaps/rust -> this checkout); the test kernel's config
# plus CONFIG_DMABUF_HEAPS_RUST=m, then =y (and its KUnit suite), each built
# in the cache (the first time fully, about 4 minutes each; then only what
# changed) and booted with the guest suite: =m loads the in-tree module as
# the out-of-tree one is loaded, =y finds the heap at boot.
set -euo pipefail
export RDH_PROFILE=test
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
bash scripts/setup.sh >/dev/null

src=$CACHE_ROOT/src/intree-$(basename "$KSRC")
# One run at a time: the copy's link names one checkout.
exec 9>"$CACHE_ROOT/intree.lock"
flock 9
version=$(cat "$KSRC/.debian-version" 2>/dev/null || echo "$KVER")
if [ "$(cat "$src/.rdh-source-version" 2>/dev/null)" != "$version" ]; then
	echo "check-intree: copying the kernel source $version to $src (first run only)" >&2
	rm -rf "$src" "$src.tmp"
	cp -a "$KSRC" "$src.tmp"
	echo "$version" >"$src.tmp/.rdh-source-version"
	mv "$src.tmp" "$src"
fi
bash scripts/add-to-kernel-tree.sh "$src" >&2

rc=0
for how in m y; do
	frag=$CACHE_ROOT/fragments/intree-$how.config
	{ cat "$KCONFIG_FRAGMENT"; printf 'CONFIG_DMABUF_HEAPS_RUST=%s\nCONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST=y\n' "$how"; } >"$frag"
	KDIR=$CACHE_ROOT/build/$(kernel_key)-intree-$how-$(sha256sum "$frag" | cut -c1-12)
	kmake() { make -s -C "$src" O="$KDIR" ARCH=arm64 LLVM=1 "$@"; }
	if [ ! -f "$KDIR/.config" ]; then
		echo "check-intree: configuring $KDIR" >&2
		mkdir -p "$KDIR"
		kmake KCONFIG_ALLCONFIG="$frag" allnoconfig >/dev/null
	fi
	for line in "CONFIG_DMABUF_HEAPS_RUST=$how" CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST=y; do
		grep -qx "$line" "$KDIR/.config" || { echo "check-intree: not in $KDIR/.config: $line" >&2; exit 1; }
	done
	# Objects built from another checkout may be newer than this one's
	# sources, which make alone would not rebuild.
	objs=$KDIR/drivers/dma-buf/heaps/rust
	if [ "$(cat "$objs/.rdh-checkout" 2>/dev/null)" != "$REPO_ROOT" ]; then
		rm -rf "$objs"
		mkdir -p "$objs"
		echo "$REPO_ROOT" >"$objs/.rdh-checkout"
	fi
	[ -f "$KDIR/arch/arm64/boot/Image" ] ||
		echo "check-intree: building the kernel with the heap =$how (first run only, about 4 minutes)" >&2
	kmake -j"$KBUILD_JOBS" Image modules modules_prepare >&2
	ko=
	[ "$how" = m ] && ko=$KDIR/drivers/dma-buf/heaps/rust/rust_dmabuf_heap.ko
	echo "== the heap in-tree, =$how"
	RDH_KDIR=$KDIR RDH_KO=$ko RDH_LOG=$REPO_ROOT/target/vm-intree-$how.log bash scripts/vm.sh check || rc=1
done
exit $rc
