#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: one QEMU boot on a kernel with kprobes (kernel/bench.config),
# every scenario of bench/scenarios.rs on the system heap and on ours under
# both policies, then allocation latency; prints the table and writes JSON
# to $BENCH_OUT (default bench.json). BENCH_MS_PER_MIB sets the cost per MiB
# used for the estimated saving (default 0.7 ms, a published figure).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
out=${BENCH_OUT:-bench.json}

bash scripts/setup.sh >/dev/null
# 1 GiB, like the test boots: the churn's 256 MiB are a quarter of RAM, so
# what a pool policy keeps after it shows. QEMU's edu device behind an
# SMMUv3 (topology iommu) shows the segments an IOMMU maps; nothing else
# in the boot goes through it.
RDH_PROFILE=bench RDH_MEMORY=${RDH_MEMORY:-1024} RDH_TIMEOUT=${RDH_TIMEOUT:-1500} \
	RDH_TOPOLOGY=${RDH_TOPOLOGY:-iommu} bash scripts/vm.sh bench
cargo run -q --release --locked -p cache-model --bin bench-report -- \
	target/vm-bench.log "$out" ${BENCH_MS_PER_MIB:-}
