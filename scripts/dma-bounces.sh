#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Prints, from the console log of a real-DMA boot (scripts/vm.sh dma), what
# bounced per heap: swiotlb's peak use in 2 KiB slots during each case (the
# most over a size's cases), and the cases whose map failed as expected
# (the system heap's 1 MiB chunks where swiotlb maps 256 KiB at most).
# Usage: scripts/dma-bounces.sh LOG
set -euo pipefail
awk '
/# rdh-dma: topology=.* case=/ {
	for (i = 1; i <= NF; i++) {
		if ($i ~ /^topology=/) topology = substr($i, 10)
		if ($i ~ /^case=/) name = substr($i, 6)
		if ($i ~ /^swiotlb_slots=/) slots = substr($i, 15)
	}
	if (!match(name, /_(4k|1m4k|8m)_/)) next
	heap = substr(name, 1, RSTART - 1)
	size = substr(name, RSTART + 1, RLENGTH - 2)
	if (!(heap in seen)) { seen[heap] = 1; order[++n] = heap }
	key = heap SUBSEP size
	if (!(key in peak) || slots + 0 > peak[key] + 0) peak[key] = slots
	cases[heap]++
	if ($0 ~ /map failed as expected/) failed[heap]++
}
END {
	printf "topology %s: swiotlb slots in use at the peak of each case (most per size)\n", topology
	printf "  %-16s %6s %8s %8s %8s  %s\n", "heap", "cases", "4 KiB", "1M+4K", "8 MiB", "maps that failed (expected)"
	for (i = 1; i <= n; i++) {
		h = order[i]
		printf "  %-16s %6d %8s %8s %8s  %d\n", h, cases[h], peak[h, "4k"], peak[h, "1m4k"], peak[h, "8m"], failed[h] + 0
	}
}' "$1"
