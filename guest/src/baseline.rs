// SPDX-License-Identifier: GPL-2.0

//! "Nothing left behind", measured three ways: the dma-buf core's `bufinfo`
//! (bytes of live buffers we exported), the heap's own `live_bytes` (pages
//! its buffers hold) and the kernel's free memory (with what the page pool
//! holds).

use crate::{
    checks::{ensure, exported_bytes, stats_number},
    heap_name,
    ktap::Outcome,
    pool, sys,
};

/// Unrelated kernel activity (slab growth, page tables) allowed in free
/// memory.
const MEMFREE_SLACK_KIB: u64 = 8 * 1024;

/// The free memory slack for this kernel: under KASAN (`rdh_kasan=1`, set by
/// `scripts/vm.sh`) freed slab objects wait in a quarantine of up to 1/32
/// of RAM before they are really freed.
fn memfree_slack_kib() -> u64 {
    if std::env::var("rdh_kasan").as_deref() == Ok("1") {
        MEMFREE_SLACK_KIB + sys::total_ram() / 32 / 1024
    } else {
        MEMFREE_SLACK_KIB
    }
}

/// What the heap and the kernel held at one moment.
pub struct Baseline {
    exported: u64,
    live: u64,
    free_kib: u64,
}

fn live_bytes() -> Result<u64, String> {
    stats_number("live_bytes")
}

impl Baseline {
    /// Once the page pool's worker is idle. Pooled pages count as free:
    /// they are the system's again when it needs them (`pool.rs`).
    pub fn take() -> Result<Self, String> {
        pool::wait_idle()?;
        Ok(Self {
            exported: exported_bytes(&heap_name())?,
            live: live_bytes()?,
            free_kib: sys::free_kib()? + pool::number("pool_bytes")? / 1024,
        })
    }

    /// Checks that everything taken since [`Baseline::take`] came back.
    pub fn check_returned(&self) -> Outcome {
        let now = Self::take()?;
        ensure(now.exported == self.exported, || {
            format!("bufinfo: {} -> {} bytes", self.exported, now.exported)
        })?;
        ensure(now.live == self.live, || {
            format!("heap live_bytes: {} -> {}", self.live, now.live)
        })?;
        ensure(now.free_kib + memfree_slack_kib() >= self.free_kib, || {
            format!("free memory {} -> {} KiB", self.free_kib, now.free_kib)
        })
    }
}
