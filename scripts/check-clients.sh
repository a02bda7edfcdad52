#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make check-clients: Debian's own arm64 libcamera (`cam`) and GStreamer
# (`gst-launch-1.0 libcamerasrc`), unmodified, capture frames of libcamera's
# virtual camera on the drop-in kernel (kernel/dropin.config) twice: once
# with /dev/dma_heap/system served by this heap (heap_name=system), once by
# the upstream system heap. Each boot must pass its rdh_clients suite (the
# clients' buffers are the heap's; rdh stats is shown while they run), and
# the frames must be byte-identical across the two boots. Prints a table
# of the frames' digests; exits non-zero on any failure or difference.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
mkdir -p target
start=$(date +%s)
failed=0
for heap in ours upstream; do
	echo "== clients on /dev/dma_heap/system served by $([ "$heap" = ours ] && echo this heap || echo the upstream system heap)"
	RDH_PROFILE=dropin RDH_PARAMS=heap_name=system RDH_CLIENTS_HEAP=$heap RDH_TIMEOUT=600 \
		RDH_LOG="$REPO_ROOT/target/vm-clients-$heap.log" bash scripts/vm.sh clients || failed=1
done
# "# rdh-clients: <client> frame=<n> bytes=<b> sha256=<hex>", per boot.
frames() { grep -o 'rdh-clients: [a-z]* frame=[0-9]* bytes=[0-9]* sha256=[0-9a-f]*' "target/vm-clients-$1.log" | cut -d' ' -f2-; }
ours=$(frames ours)
upstream=$(frames upstream)
echo
printf '%-6s %5s %64s  %s\n' client frame "sha256 (this heap)" "upstream system heap"
paste -d' ' <(echo "$ours") <(echo "$upstream") | while read -r client frame _ digest _ _ _ other; do
	same=$([ "$digest" = "$other" ] && echo same || echo "DIFFERENT: ${other#sha256=}")
	printf '%-6s %5s %64s  %s\n' "$client" "${frame#frame=}" "${digest#sha256=}" "$same"
done
count=$(echo "$ours" | grep -c frame=)
if [ -z "$ours" ] || [ "$ours" != "$upstream" ]; then
	echo "check-clients: the frames differ between the heaps (or are missing)"
	failed=1
fi
grep -h 'rdh-clients: .* maintenance:' target/vm-clients-ours.log | sed 's/^ *# //'
echo "check-clients: $count frames compared, wall time $(($(date +%s) - start)) s"
exit $failed
