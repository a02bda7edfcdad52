#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check-matrix`: the heap on the kernels boards run, and on every DMA
# topology QEMU can give a device that really DMAs. Per row: build the
# kernel (cached like every other), build the modules against it with
# CLIPPY=1 (the production module unless the profile has KUnit), boot the
# whole guest suite, then one boot per DMA topology with the real-DMA suite
# (rdh_dma). Prints one table (also written to target/matrix.txt), then per
# row what bounced on the dma32 topology (scripts/dma-bounces.sh), and
# exits non-zero if any cell failed.
#
# RDH_MATRIX selects rows (default: all):
#   test-7.3    test kernel, Debian 7.3, clang, KUnit (what make check boots)
#   test-7.2    the same on Debian's 7.2
#   prod-clang  7.3, clang, kCFI, no KUnit
#   prod-gcc    7.3, GCC, MODVERSIONS + GENDWARFKSYMS, no KUnit
# RDH_TOPOLOGIES selects topologies (default: plain iommu dma32 swiotlb
# noncoherent; see scripts/vm.sh).
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

rows=${RDH_MATRIX:-test-7.3 test-7.2 prod-clang prod-gcc}
topologies=${RDH_TOPOLOGIES:-plain iommu dma32 swiotlb noncoherent}
logs=$REPO_ROOT/target/matrix
mkdir -p "$logs"
table=$REPO_ROOT/target/matrix.txt
failed=0

# The last "N passed, M failed" line of a runner's output.
counts() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1; }

row_settings() {
	case "$1" in
	test-7.3) echo "7.3 test" ;;
	test-7.2) echo "7.2 test" ;;
	prod-clang) echo "7.3 prod-clang" ;;
	prod-gcc) echo "7.3 prod-gcc" ;;
	*) return 1 ;;
	esac
}

printf '%-13s | %-22s | %-22s | %-28s | %s\n' configuration "kernel build" "module build" "guest suite" "DMA topologies" >"$table"
printf '%s\n' "--------------|------------------------|------------------------|------------------------------|----------------" >>"$table"
for row in $rows; do
	if ! read -r kver profile < <(row_settings "$row"); then
		echo "check-matrix: unknown row $row" >&2
		exit 2
	fi
	export KVER=$kver RDH_PROFILE=$profile
	echo "== $row (KVER=$kver RDH_PROFILE=$profile)"
	kernel="FAIL" module="not built" guest="not run" dma="not run"
	if bash scripts/setup.sh >"$logs/$row-setup.log" 2>&1; then
		start=$(date +%s)
		if kdir=$(bash scripts/build-kernel.sh 2>"$logs/$row-kernel.log" | tail -1) && [ -n "$kdir" ]; then
			version=$(cat "$kdir/include/config/kernel.release")
			kernel="ok $version ($(($(date +%s) - start)) s)"
			if bash scripts/build-module.sh CLIPPY=1 >"$logs/$row-module.log" 2>&1; then
				kunit=$(bash -c ". scripts/env.sh && echo \$RDH_KUNIT")
				module="ok ($(grep -qx CONFIG_CC_IS_CLANG=y "$kdir/.config" && echo clang || echo gcc), $([ "$kunit" = y ] && echo KUnit || echo production))"
				RDH_TIMEOUT=900 RDH_LOG="$logs/$row-check.log" bash scripts/vm.sh check >"$logs/$row-check.out" 2>&1
				rc=$?
				guest="$(counts "$logs/$row-check.out")"
				[ $rc -eq 0 ] || guest="FAIL ${guest:-no result}"
				passed=0 cases=0 pages=0 mismatches=0
				for topology in $topologies; do
					RDH_TOPOLOGY=$topology RDH_TIMEOUT=900 RDH_LOG="$logs/$row-dma-$topology.log" \
						bash scripts/vm.sh dma >"$logs/$row-dma-$topology.out" 2>&1 && passed=$((passed + 1))
					read -r c p m < <(awk '/# rdh-dma:/ { c++; for (i = 1; i <= NF; i++) { if ($i ~ /^pages=/) p += substr($i, 7); if ($i ~ /^mismatches=/) m += substr($i, 12) } } END { print c + 0, p + 0, m + 0 }' "$logs/$row-dma-$topology.log")
					cases=$((cases + c)) pages=$((pages + p)) mismatches=$((mismatches + m))
				done
				count=$(wc -w <<<"$topologies")
				dma="$passed/$count passed: $cases cases, $pages pages, $mismatches mismatches"
				[ "$passed" -eq "$count" ] || dma="FAIL $dma"
			else
				module="FAIL (see $logs/$row-module.log)"
			fi
		else
			kernel="FAIL (see $logs/$row-kernel.log)"
		fi
	else
		kernel="FAIL: set-up (see $logs/$row-setup.log)"
	fi
	case "$kernel$module$guest$dma" in
	*FAIL* | *"not "*) failed=1 ;;
	esac
	printf '%-13s | %-22s | %-22s | %-28s | %s\n' "$row" "$kernel" "$module" "$guest" "$dma" | tee -a "$table"
done
# What bounced, per heap, where the device's mask cannot reach all RAM.
if [[ " $topologies " == *" dma32 "* ]]; then
	for row in $rows; do
		[ -f "$logs/$row-dma-dma32.log" ] || continue
		{
			echo
			echo "$row, $(bash scripts/dma-bounces.sh "$logs/$row-dma-dma32.log")"
		} >>"$table"
	done
fi
echo
cat "$table"
echo "logs: $logs"
exit $failed
