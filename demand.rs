// SPDX-License-Identifier: GPL-2.0

//! What a page pool may keep: as much as its heap handed out in the
//! busiest stretch of the last few seconds.
//!
//! A pipeline that frees its frames and allocates them again (a camera
//! restarting its stream, a decoder changing resolution, a benchmark's
//! churn) finds them in the pool, with room for what the pool's worker is
//! still zeroing; once its users stop allocating, the pool goes back to
//! nothing within the window (`pool_window_ms`, 5 s by default), without
//! waiting for memory pressure, and a heap whose buffers stay allocated
//! keeps nothing beside them. The measure is the most pages allocated
//! within one of [`BUCKETS`] buckets of a fifth of the window each, over
//! the window: a bucket is forgotten between 4/5 of the window and the
//! whole window after it ends.
//!
//! Time is passed in (milliseconds of a monotonic clock), so that tests
//! can play any timeline.

/// Buckets of the sliding maximum.
pub(crate) const BUCKETS: usize = 5;

/// Pages in use, and pages allocated per bucket lately.
///
/// # Invariants
///
/// `bucket_ms > 0`. `allocated[i]`, if `Some((bucket, pages))`, has
/// `bucket % BUCKETS == i` and `pages` is the sum of the pages allocated
/// at moments noted during `bucket` (`now_ms / bucket_ms`).
pub(crate) struct Demand {
    in_use: usize,
    bucket_ms: u64,
    allocated: [Option<(u64, usize)>; BUCKETS],
}

impl Demand {
    /// Nothing in use or allocated, a window of `window_ms`.
    pub(crate) fn new(window_ms: u64) -> Self {
        // INVARIANT: No bucket holds a sum; `bucket_ms` is at least 1.
        Self {
            in_use: 0,
            bucket_ms: (window_ms / BUCKETS as u64).max(1),
            allocated: [None; BUCKETS],
        }
    }

    /// Makes the window `window_ms`; a change forgets what was allocated
    /// (it was summed in buckets of the old size).
    pub(crate) fn set_window(&mut self, window_ms: u64) {
        let bucket_ms = (window_ms / BUCKETS as u64).max(1);
        if bucket_ms != self.bucket_ms {
            // INVARIANT: No sum left; `bucket_ms` is at least 1.
            self.bucket_ms = bucket_ms;
            self.allocated = [None; BUCKETS];
        }
    }

    /// How long after a bucket ends it is surely forgotten.
    pub(crate) fn window_ms(&self) -> u64 {
        self.bucket_ms * BUCKETS as u64
    }

    /// How often the measure can change while nothing happens.
    pub(crate) fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// Pages in use now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    /// `pages` were handed out at `now_ms`.
    pub(crate) fn took(&mut self, pages: usize, now_ms: u64) {
        self.in_use += pages;
        let bucket = now_ms / self.bucket_ms;
        let slot = &mut self.allocated[(bucket % BUCKETS as u64) as usize];
        let sum = match *slot {
            Some((noted, sum)) if noted == bucket => sum.saturating_add(pages),
            _ => pages,
        };
        // INVARIANT: The slot of `bucket`, with all allocated during it.
        *slot = Some((bucket, sum));
    }

    /// `pages` came back.
    pub(crate) fn gave_back(&mut self, pages: usize) {
        self.in_use = self.in_use.saturating_sub(pages);
    }

    /// Pages a pool may keep at `now_ms`: the most allocated within one
    /// bucket of the window that ends at `now_ms`.
    pub(crate) fn wanted(&self, now_ms: u64) -> usize {
        let bucket = now_ms / self.bucket_ms;
        self.allocated
            .iter()
            .flatten()
            .filter(|&&(noted, _)| noted <= bucket && bucket - noted < BUCKETS as u64)
            .map(|&(_, pages)| pages)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(rust_dmabuf_heap_demand)]
mod tests {
    use super::*;

    const WINDOW_MS: u64 = 5000;
    const BUCKET_MS: u64 = WINDOW_MS / BUCKETS as u64;

    /// Churn: 32 buffers allocated, all freed, again and again. Everything
    /// freed may stay pooled while the churn goes on, and as much again
    /// for what the worker is still zeroing; the window after the last
    /// allocation, nothing may.
    #[test]
    fn a_churn_may_keep_what_it_allocates_until_the_window_passes() {
        let mut demand = Demand::new(WINDOW_MS);
        let mut now = 10_000;
        let mut last = now;
        for _ in 0..20 {
            for _ in 0..32 {
                demand.took(2048, now);
                last = now;
                now += 3;
            }
            for _ in 0..32 {
                demand.gave_back(2048);
                now += 1;
            }
            assert!(demand.wanted(now) >= 32 * 2048);
        }
        assert_eq!(demand.in_use(), 0);
        assert!(demand.wanted(last + WINDOW_MS - BUCKET_MS - 1) >= 32 * 2048);
        assert_eq!(demand.wanted(last + WINDOW_MS), 0);
    }

    /// Buffers held for long keep nothing beside them, however large they
    /// were when allocated.
    #[test]
    fn buffers_in_use_keep_nothing_beside_them() {
        let mut demand = Demand::new(WINDOW_MS);
        demand.took(1000, 0);
        demand.took(500, 100);
        demand.gave_back(500);
        assert_eq!(demand.wanted(300), 1500);
        // Much later, nothing: nobody allocates.
        assert_eq!(demand.wanted(60_000), 0);
        assert_eq!(demand.in_use(), 1000);
    }

    /// A small steady demand after a large burst: the burst is forgotten,
    /// the steady part is kept.
    #[test]
    fn a_burst_is_forgotten_and_a_steady_demand_is_kept() {
        let mut demand = Demand::new(WINDOW_MS);
        demand.took(10_000, 0);
        demand.gave_back(10_000);
        let mut now = 10;
        while now < 30_000 {
            demand.took(100, now);
            demand.gave_back(100);
            now += 700;
        }
        // One or two allocations per bucket.
        let wanted = demand.wanted(now);
        assert!(wanted == 100 || wanted == 200);
    }

    /// A new window forgets what was allocated; the same one keeps it.
    #[test]
    fn a_new_window_forgets_the_sums() {
        let mut demand = Demand::new(WINDOW_MS);
        demand.took(64, 100);
        demand.gave_back(64);
        demand.set_window(WINDOW_MS);
        assert_eq!(demand.wanted(300), 64);
        demand.set_window(60_000);
        assert_eq!(demand.wanted(300), 0);
        assert_eq!(demand.window_ms(), 60_000);
        demand.took(64, 500);
        demand.gave_back(64);
        assert_eq!(demand.wanted(500 + 47_999), 64);
        assert_eq!(demand.wanted(500 + 60_000), 0);
    }
}
