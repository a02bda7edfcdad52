// SPDX-License-Identifier: GPL-2.0

//! Fences: what a signalled write costs and when, CPU access waiting for
//! fences, callbacks across release, the explicit fence API's reserve,
//! commit and cancel (also inside a fence signalling section), and the
//! range API for importer drivers.

use kernel::prelude::*;

#[kunit_tests(rust_dmabuf_heap_fences)]
mod tests {
    use crate::{bindings as sys, kunit::rig::*, ownership::Policy, pages::LIVE_BYTES};
    use core::sync::atomic::Ordering;
    use kernel::prelude::*;

    #[test]
    fn fenced_writer_costs_an_invalidate_only_after_its_fence_signalled() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let before = rig.stats();
        // No device work since the last CPU access: free, though mapped.
        for _ in 0..5 {
            assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        }
        assert_eq!(ops_between(before, rig.stats()), (0, 0));
        // Three frames written, then one CPU read: one invalidate.
        for _ in 0..3 {
            let frame = TestFence::new()?;
            assert_eq!(rig.access_until(0, FROM_DEVICE, &frame), 0);
            frame.signal();
        }
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    #[test]
    fn fence_signalled_before_it_is_hooked_counts_at_once() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let before = rig.stats();
        let done = TestFence::new()?;
        done.signal();
        assert_eq!(rig.access_until(0, FROM_DEVICE, &done), 0);
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    /// A coherent importer stays mapped beside a fenced non-coherent
    /// writer: the writer's signal invalidates at once, from the fence
    /// callback, before any further call into the heap (the importer's
    /// snoops could otherwise be served by lines older than the write).
    #[test]
    fn a_signal_invalidates_at_once_for_a_mapped_coherent_importer() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = fenced_writer()?;
        rig.map_new(true, TO_DEVICE)?;
        let before = rig.stats();
        let frame = TestFence::new()?;
        assert_eq!(rig.access_until(0, FROM_DEVICE, &frame), 0);
        assert_eq!(ops_between(before, rig.stats()), (0, 0));
        frame.signal();
        // Reading the counters is no call into the heap's rules.
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    #[test]
    fn many_fences_on_one_buffer_cost_one_invalidate() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let before = rig.stats();
        let mut fences = KVec::new();
        for _ in 0..64 {
            let fence = TestFence::new()?;
            assert_eq!(rig.access_until(0, FROM_DEVICE, &fence), 0);
            fences.push(fence, GFP_KERNEL)?;
        }
        for fence in fences.iter() {
            fence.signal();
        }
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    #[test]
    fn cpu_access_waits_for_a_fence_signalled_on_another_cpu() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let before = rig.stats();
        assert!(rig.cpu_read_waits_for_a_job_signalled_later()?);
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    #[test]
    fn cpu_read_waits_for_a_coherent_writers_fence_and_costs_nothing() -> Result {
        // A coherent device leaves no stale lines, but its write is not
        // complete before its fence signals: a CPU read must wait for it
        // (under either policy, whatever the DMA path).
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        rig.map_new(true, FROM_DEVICE)?;
        let before = rig.stats();
        assert!(rig.cpu_read_waits_for_a_job_signalled_later()?);
        if test_heap_bounce().is_none() {
            assert_eq!(ops_between(before, rig.stats()), (0, 0));
        }
        Ok(())
    }

    #[test]
    fn buffer_freed_with_callbacks_pending_then_signalled() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        flush_releases();
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let (a, b) = (TestFence::new()?, TestFence::new()?);
        {
            let rig = fenced_writer()?;
            assert_eq!(rig.access_until(0, FROM_DEVICE, &a), 0);
            assert_eq!(rig.access_until(0, TO_DEVICE, &b), 0);
            // The rig drops here: detach, last reference, release.
        }
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        // Signalling after the buffer is gone must touch nothing of it.
        a.signal();
        b.signal();
        Ok(())
    }

    #[test]
    fn fence_signalled_during_release() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        flush_releases();
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        for ms in [0, 1, 2] {
            let fence = TestFence::new()?;
            let rig = fenced_writer()?;
            assert_eq!(rig.access_until(0, FROM_DEVICE, &fence), 0);
            fence.signal_later(ms);
            drop(rig);
        }
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        Ok(())
    }

    /// A driver publishes its job's fence, then declares the access: the
    /// commit runs inside the fence signalling section, where allocating
    /// or taking a lock held while allocating could deadlock against
    /// reclaim waiting for that fence. Lockdep (`make check-debug`; the
    /// dma-resv core primes reclaim -> fence wait) checks that it does
    /// neither. The access still counts.
    #[test]
    fn access_commit_inside_a_fence_signalling_section() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let attach = rig.importers[0].0;
        // SAFETY: `attach` is live.
        let access =
            unsafe { crate::c_api::rdh_dma_buf_access_reserve(attach, FROM_DEVICE.into()) };
        assert!(!access.is_null() && access.addr() < usize::MAX - 4095);
        let fence = TestFence::new()?;
        let before = rig.stats();
        // SAFETY: Process context; paired below.
        let cookie = unsafe { sys::rdh_test_begin_signalling() };
        // SAFETY: Reserved above, attachment live, fence referenced.
        unsafe { crate::c_api::rdh_dma_buf_access_commit(access, fence.0) };
        // SAFETY: Pairs with the begin above.
        unsafe { sys::rdh_test_end_signalling(cookie) };
        fence.signal();
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 1));
        Ok(())
    }

    /// A cancelled reservation is forgotten: nothing waits for it, nothing
    /// leaks (kmemleak in `make check-debug`), and the attachment stays
    /// fenced (no invalidate without a signalled write fence).
    #[test]
    fn cancelled_access_is_forgotten() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = fenced_writer()?;
        let attach = rig.importers[0].0;
        let before = rig.stats();
        for _ in 0..3 {
            // SAFETY: `attach` is live.
            let access =
                unsafe { crate::c_api::rdh_dma_buf_access_reserve(attach, FROM_DEVICE.into()) };
            assert!(!access.is_null() && access.addr() < usize::MAX - 4095);
            // SAFETY: Reserved for `attach` and not committed.
            unsafe { crate::c_api::rdh_dma_buf_access_cancel(attach, access) };
        }
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 0));
        Ok(())
    }

    /// Bad arguments to the explicit API: errors, nothing changed.
    #[test]
    fn access_api_rejects_foreign_and_null_arguments() -> Result {
        // SAFETY: A null attachment is rejected before use.
        let access = unsafe {
            crate::c_api::rdh_dma_buf_access_reserve(core::ptr::null_mut(), TO_DEVICE.into())
        };
        assert_eq!(access.addr(), EINVAL.to_ptr::<u8>().addr());
        let fence = TestFence::new()?;
        // SAFETY: A null attachment is rejected before use.
        let ret = unsafe {
            crate::c_api::rdh_dma_buf_access_until(core::ptr::null_mut(), TO_DEVICE.into(), fence.0)
        };
        assert_eq!(ret, EINVAL.to_errno());
        // Commit and cancel ignore null and error pointers.
        // SAFETY: Null and error pointers are documented as ignored.
        unsafe {
            crate::c_api::rdh_dma_buf_access_commit(core::ptr::null_mut(), fence.0);
            crate::c_api::rdh_dma_buf_access_commit(EINVAL.to_ptr(), fence.0);
        }
        Ok(())
    }

    /// The range API for importer drivers: a non-coherent writer's frame,
    /// then a 64 KiB range read costs 64 KiB of invalidate (the range
    /// widened to pages), and a whole read the rest; bad arguments are
    /// EINVAL and change nothing.
    #[test]
    fn range_api_for_importers_maintains_only_the_range() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        use crate::c_api::{rdh_dma_buf_begin_cpu_access_range, rdh_dma_buf_end_cpu_access_range};
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        rig.map_new(false, FROM_DEVICE)?;
        rig.unmap_last();
        let range = |begin: bool, offset: usize, len: usize| {
            let f = if begin {
                rdh_dma_buf_begin_cpu_access_range
            } else {
                rdh_dma_buf_end_cpu_access_range
            };
            // SAFETY: `dmabuf` is live (or null, which is rejected).
            unsafe { f(rig.dmabuf, FROM_DEVICE.into(), offset, len) }
        };
        let before = rig.stats();
        let einval = EINVAL.to_errno();
        assert_eq!(range(true, 0, 0), einval);
        assert_eq!(range(true, MIB - 4096, 8192), einval);
        assert_eq!(range(true, usize::MAX - 10, 100), einval);
        // SAFETY: A null dma-buf is rejected before use.
        let null = unsafe {
            rdh_dma_buf_begin_cpu_access_range(core::ptr::null_mut(), FROM_DEVICE.into(), 0, 4096)
        };
        assert_eq!(null, einval);
        assert_eq!(rig.stats().invalidate_bytes, before.invalidate_bytes);
        // 64 KiB at an unaligned offset: 17 pages.
        assert_eq!(range(true, 256 * 1024 + 100, 64 * 1024), 0);
        assert_eq!(range(false, 256 * 1024 + 100, 64 * 1024), 0);
        let after_range = rig.stats().invalidate_bytes - before.invalidate_bytes;
        assert_eq!(after_range, 17 * 4096);
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(
            rig.stats().invalidate_bytes - before.invalidate_bytes,
            MIB as u64
        );
        Ok(())
    }

    /// Under `always` the explicit fence API is accepted and CPU access
    /// still waits for the fences; the maintenance is the system heap's
    /// (the mapped attachment is synced for every CPU access).
    #[test]
    fn always_policy_waits_for_fences_and_syncs_per_attachment() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Always)?;
        rig.map_new(false, BIDIRECTIONAL)?;
        let before = rig.stats();
        assert!(rig.cpu_read_waits_for_a_job_signalled_later()?);
        assert_eq!(ops_between(before, rig.stats()), (1, 1));
        Ok(())
    }
}
