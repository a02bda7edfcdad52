#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check-intree`: the heap as an in-tree kernel option, from the patch
# series (`make patches`, scripts/make-patches.sh) applied to a copy of the
# kernel source: the abstractions as kernel crate modules, the heap as
# drivers/dma-buf/heaps/rust/.
#   1. checkpatch.pl --strict on every patch (its findings are printed; the
#      cover letter explains those that stay);
#   2. the test kernel's config plus CONFIG_DMABUF_HEAPS_RUST=m, built and
#      booted with the guest suite (the in-tree module loaded as the
#      out-of-tree one is), its KUnit suites at insmod;
#   3. the same with =y, the heap's KUnit suites and the kernel crate's
#      doctests (CONFIG_RUST_KERNEL_DOCTESTS, the abstractions' among them)
#      run at boot;
#   4. on the =y tree: CLIPPY=1 over the kernel crate and the heap, and
#      `make rustdoc`, each with no warning.
# Each build is cached (the first time fully, about 5 minutes each; then
# only what changed). Exits non-zero if any step fails.
set -euo pipefail
export RDH_PROFILE=test
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
bash scripts/setup.sh >/dev/null

src=$CACHE_ROOT/src/intree-$(basename "$KSRC")
# One run at a time: the copy holds one series.
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

series=$(bash scripts/make-patches.sh | tail -1)
mapfile -t patches < <(ls "$series"/0*.patch | grep -v '/0000-')

# Undo the series applied last time: the files it changed come back from
# the pristine source, the ones it added go (an older symlinked heap too).
if [ -L "$src/drivers/dma-buf/heaps/rust" ]; then
	rm "$src/drivers/dma-buf/heaps/rust"
fi
if [ -f "$src/.rdh-series-files" ]; then
	while read -r f; do
		if [ -e "$KSRC/$f" ]; then cp "$KSRC/$f" "$src/$f"; else rm -f "$src/$f"; fi
	done <"$src/.rdh-series-files"
fi
for f in drivers/dma-buf/heaps/Kconfig drivers/dma-buf/heaps/Makefile; do
	cp "$KSRC/$f" "$src/$f"
done
rm -rf "$src/drivers/dma-buf/heaps/rust"
sed -n 's|^+++ b/||p' "${patches[@]}" | sort -u >"$src/.rdh-series-files"
for p in "${patches[@]}"; do
	(cd "$src" && patch -p1 -s --no-backup-if-mismatch) <"$p"
done
echo "check-intree: applied ${#patches[@]} patches of $series to $src" >&2

rc=0
echo "== checkpatch --strict"
for p in "${patches[@]}"; do
	out=$(cd "$src" && perl scripts/checkpatch.pl --strict --show-types "$p" 2>&1 || true)
	echo "$(basename "$p"): $(grep -E '^total:' <<<"$out" || echo '?')"
	grep -oE '^(ERROR|WARNING|CHECK):[A-Z_]+' <<<"$out" | sort | uniq -c | sed 's/^/   /' || true
done

for how in m y; do
	frag=$CACHE_ROOT/fragments/intree-$how.config
	{
		cat "$KCONFIG_FRAGMENT"
		printf 'CONFIG_DMABUF_HEAPS_RUST=%s\nCONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST=y\n' "$how"
		[ "$how" = y ] && printf 'CONFIG_RUST_KERNEL_DOCTESTS=y\n'
	} >"$frag"
	KDIR=$CACHE_ROOT/build/$(kernel_key)-intree-$how-$(sha256sum "$frag" | cut -c1-12)
	kmake() { make -s -C "$src" O="$KDIR" ARCH=arm64 LLVM=1 "$@"; }
	if [ ! -f "$KDIR/.config" ]; then
		echo "check-intree: configuring $KDIR" >&2
		mkdir -p "$KDIR"
		kmake KCONFIG_ALLCONFIG="$frag" allnoconfig >/dev/null
	fi
	lines=("CONFIG_DMABUF_HEAPS_RUST=$how" CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST=y)
	[ "$how" = y ] && lines+=(CONFIG_RUST_KERNEL_DOCTESTS=y)
	for line in "${lines[@]}"; do
		grep -qx "$line" "$KDIR/.config" || { echo "check-intree: not in $KDIR/.config: $line" >&2; exit 1; }
	done
	echo "== the heap in-tree, =$how: build"
	log=$REPO_ROOT/target/intree-$how-build.log
	mkdir -p "$REPO_ROOT/target"
	if ! kmake -j"$KBUILD_JOBS" Image modules >"$log" 2>&1; then
		tail -40 "$log"
		echo "check-intree: the =$how build failed (log: $log)"
		rc=1
		continue
	fi
	if grep -E '(^|[^a-z_])(warning|error)(\[|:)' "$log"; then
		echo "check-intree: the =$how build warned (log: $log)"
		rc=1
	fi
	ko=
	[ "$how" = m ] && ko=$KDIR/drivers/dma-buf/heaps/rust/rust_dmabuf_heap.ko
	echo "== the heap in-tree, =$how: boot"
	extra=()
	[ "$how" = y ] && extra=(rust_doctests_kernel)
	# The series places dma-buf mappings for huge entries: the guest
	# checks that unhinted mappings get them.
	RDH_KDIR=$KDIR RDH_KO=$ko RDH_BOOT_SUITES="${extra[*]}" RDH_APPEND=rdh_placed_mappings=1 \
		RDH_LOG=$REPO_ROOT/target/vm-intree-$how.log bash scripts/vm.sh check || rc=1
	if [ "$how" = y ]; then
		echo "== CLIPPY=1 (the kernel crate and the heap)"
		log=$REPO_ROOT/target/intree-clippy.log
		if kmake -j"$KBUILD_JOBS" CLIPPY=1 rust/ drivers/dma-buf/heaps/rust/ >"$log" 2>&1 &&
			! grep -E '(^|[^a-z_])(warning|error)(\[|:)' "$log"; then
			echo "clippy: no warnings"
		else
			tail -40 "$log"
			echo "check-intree: clippy (log: $log)"
			rc=1
		fi
		echo "== make rustdoc"
		log=$REPO_ROOT/target/intree-rustdoc.log
		if kmake -j"$KBUILD_JOBS" rustdoc >"$log" 2>&1 &&
			! grep -E '(^|[^a-z_])(warning|error)(\[|:)' "$log"; then
			echo "rustdoc: no warnings"
		else
			tail -40 "$log"
			echo "check-intree: rustdoc (log: $log)"
			rc=1
		fi
	fi
done
exit $rc
