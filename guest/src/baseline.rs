// SPDX-License-Identifier: GPL-2.0

//! "Nothing left behind", measured three ways: the dma-buf core's `bufinfo`
//! (bytes of live buffers we exported), the heap's own `live_bytes` (pages
//! it holds) and the kernel's MemFree.

use crate::{
    checks::{debugfs_dir, debugfs_number, ensure, exported_bytes},
    heap_name,
    ktap::Outcome,
    sys,
};

/// Unrelated kernel activity (slab growth, page tables) allowed in MemFree.
const MEMFREE_SLACK_KIB: u64 = 8 * 1024;

/// What the heap and the kernel held at one moment.
pub struct Baseline {
    exported: u64,
    live: u64,
    free_kib: u64,
}

fn live_bytes() -> Result<u64, String> {
    debugfs_number(&format!("{}/stats", debugfs_dir()), "live_bytes")
}

impl Baseline {
    pub fn take() -> Result<Self, String> {
        Ok(Self {
            exported: exported_bytes(&heap_name())?,
            live: live_bytes()?,
            free_kib: sys::meminfo_kib("MemFree").ok_or("no MemFree")?,
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
        ensure(now.free_kib + MEMFREE_SLACK_KIB >= self.free_kib, || {
            format!("MemFree {} -> {} KiB", self.free_kib, now.free_kib)
        })
    }
}
