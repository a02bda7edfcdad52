// SPDX-License-Identifier: GPL-2.0

//! Counters of cache maintenance, per buffer and for the whole heap, as
//! shown in debugfs. Bytes are what the DMA API was asked to clean or
//! invalidate (whole buffers); skips say why an operation the upstream
//! system heap would have performed was not.

use crate::{
    dma_mapping::Bounce,
    ownership::{Decision, Skip},
    pages::PAGE_SIZE,
};
use core::sync::atomic::{AtomicU64, Ordering};

/// Every bounce reason, in display order; a reason's place here indexes
/// its counters.
pub(crate) const BOUNCES: [Bounce; 3] = [
    Bounce::Forced,
    Bounce::AddressingLimited,
    Bounce::LimitedMapping,
];

/// A bounce reason's name in debugfs and the kernel log.
pub(crate) fn bounce_name(bounce: Bounce) -> &'static str {
    match bounce {
        Bounce::Forced => "swiotlb_forced",
        Bounce::AddressingLimited => "addressing_limited",
        Bounce::LimitedMapping => "limited_mapping_size",
    }
}

/// Every reason an operation can be skipped, in display order.
pub(crate) const SKIP_REASONS: [Skip; 5] = [
    Skip::Coherent,
    Skip::NotDirty,
    Skip::NotStale,
    Skip::DeferredToCpuAccess,
    Skip::DeferredToMap,
];

/// The name of a skip reason in debugfs.
pub(crate) fn skip_name(skip: Skip) -> &'static str {
    match skip {
        Skip::Coherent => "coherent",
        Skip::NotDirty => "not_dirty",
        Skip::NotStale => "not_stale",
        Skip::DeferredToCpuAccess => "deferred_to_cpu_access",
        Skip::DeferredToMap => "deferred_to_map",
    }
}

fn skip_index(skip: Skip) -> usize {
    SKIP_REASONS.iter().position(|&s| s == skip).unwrap_or(0)
}

/// Counters of one buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    pub(crate) cleans: u64,
    pub(crate) invalidates: u64,
    pub(crate) clean_bytes: u64,
    pub(crate) invalidate_bytes: u64,
    pub(crate) skipped: [u64; SKIP_REASONS.len()],
    /// User accesses that faulted because the entries did not allow them
    /// (`unbracketed_cpu=trap`), those outside any SYNC bracket, and
    /// revocations of the user entries.
    pub(crate) user_faults: u64,
    pub(crate) unbracketed_faults: u64,
    pub(crate) revokes: u64,
}

impl CacheStats {
    /// Records a decision (its spans are pages), here and in the
    /// heap's `totals`.
    pub(crate) fn record(&mut self, decision: &Decision, totals: &Totals) {
        let page = PAGE_SIZE as u64;
        let (cleans, invalidates) = (
            u64::from(decision.ops.clean),
            u64::from(decision.ops.invalidate),
        );
        let clean_bytes = decision.clean.units() * page;
        let invalidate_bytes = decision.invalidate.units() * page;
        self.cleans += cleans;
        self.invalidates += invalidates;
        self.clean_bytes += clean_bytes;
        self.invalidate_bytes += invalidate_bytes;
        totals.clean_bytes.fetch_add(clean_bytes, Ordering::Relaxed);
        totals
            .invalidate_bytes
            .fetch_add(invalidate_bytes, Ordering::Relaxed);
        if let Some(skip) = decision.skipped {
            self.skipped[skip_index(skip)] += 1;
            totals.skipped[skip_index(skip)].fetch_add(1, Ordering::Relaxed);
        }
        if decision.revoke {
            self.revokes += 1;
            totals.revokes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a user access that faulted, `unbracketed` if outside any
    /// SYNC bracket, here and in `totals`.
    pub(crate) fn record_user_fault(&mut self, unbracketed: bool, totals: &Totals) {
        self.user_faults += 1;
        totals.user_faults.fetch_add(1, Ordering::Relaxed);
        if unbracketed {
            self.unbracketed_faults += 1;
            totals.unbracketed_faults.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A heap's counters since it was created (kept by the heap object).
pub(crate) struct Totals {
    pub(crate) buffers_allocated: AtomicU64,
    pub(crate) bytes_allocated: AtomicU64,
    /// Bytes cleaned and invalidated at allocation (the uncached heap's
    /// flush); not in `clean_bytes`, which count maintenance afterwards.
    pub(crate) allocation_flush_bytes: AtomicU64,
    pub(crate) clean_bytes: AtomicU64,
    pub(crate) invalidate_bytes: AtomicU64,
    pub(crate) skipped: [AtomicU64; SKIP_REASONS.len()],
    /// Attachments made, and those whose mappings may bounce by reason
    /// (they sync their own mappings).
    pub(crate) attachments: AtomicU64,
    pub(crate) bounce_attachments: [AtomicU64; BOUNCES.len()],
    /// Attachments of devices whose addressing is limited, to buffers
    /// within their reach (so not bouncing: the DMA32 heaps' point).
    pub(crate) within_reach_attachments: AtomicU64,
    pub(crate) user_faults: AtomicU64,
    pub(crate) unbracketed_faults: AtomicU64,
    pub(crate) revokes: AtomicU64,
    /// Calls of the fault handlers (every user fault, told to the rules or
    /// not; a huge one that falls back calls twice), the user page-table
    /// entries they wrote, and of them the huge ones (a PMD each).
    pub(crate) fault_calls: AtomicU64,
    pub(crate) user_entries: AtomicU64,
    pub(crate) user_huge_entries: AtomicU64,
}

impl Totals {
    /// Counts a new attachment, which bounces for `bounce` or, if
    /// `within_reach`, would bounce but for where the buffer lies.
    pub(crate) fn count_attachment(&self, bounce: Option<Bounce>, within_reach: bool) {
        self.attachments.fetch_add(1, Ordering::Relaxed);
        if within_reach {
            self.within_reach_attachments
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = bounce {
            if let Some(i) = BOUNCES.iter().position(|&b| b == reason) {
                self.bounce_attachments[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Totals {
    /// All zero.
    pub(crate) const fn new() -> Self {
        Self {
            buffers_allocated: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            allocation_flush_bytes: AtomicU64::new(0),
            clean_bytes: AtomicU64::new(0),
            invalidate_bytes: AtomicU64::new(0),
            skipped: [const { AtomicU64::new(0) }; SKIP_REASONS.len()],
            attachments: AtomicU64::new(0),
            bounce_attachments: [const { AtomicU64::new(0) }; BOUNCES.len()],
            within_reach_attachments: AtomicU64::new(0),
            user_faults: AtomicU64::new(0),
            unbracketed_faults: AtomicU64::new(0),
            revokes: AtomicU64::new(0),
            fault_calls: AtomicU64::new(0),
            user_entries: AtomicU64::new(0),
            user_huge_entries: AtomicU64::new(0),
        }
    }

    /// Reads a counter.
    pub(crate) fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
