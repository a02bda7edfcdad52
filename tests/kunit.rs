// SPDX-License-Identifier: GPL-2.0

//! KUnit suite run when the module is loaded: allocation shape, zeroing,
//! export and release, checked against the real page allocator.

use kernel::prelude::*;

#[kunit_tests(rust_dmabuf_heap)]
mod tests {
    use crate::{
        bindings as sys,
        buffer::HeapBuffer,
        context::HeapContext,
        heap::Heap,
        ownership::{self, CacheOps, Device, Event, Ownership, Policy},
        pages::{LIVE_BYTES, PAGE_SIZE},
        pool::PoolMode,
        sg_table::BlockTable as SgTable,
        stats::CacheStats,
    };
    use core::sync::atomic::{AtomicUsize, Ordering};
    use kernel::{
        dma::DataDirection,
        error::from_err_ptr,
        prelude::*,
        str::CString,
        sync::Arc,
        time::{Delta, Instant, Monotonic},
    };

    const MIB: usize = 1 << 20;

    /// A private heap (its own maintenance device, no debugfs), without a
    /// page pool: its buffers are always fresh, and freed at once.
    fn heap() -> Result<Arc<HeapContext>> {
        HeapContext::new(c"private", PoolMode::Off)
    }

    /// A buffer of a private heap, under the heap's policy.
    fn new_buffer(len: usize) -> Result<Arc<HeapBuffer>> {
        HeapBuffer::new(heap()?, len)
    }

    /// A buffer of a private heap under `policy`.
    fn buffer_with_policy(len: usize, policy: Policy) -> Result<Arc<HeapBuffer>> {
        HeapBuffer::with_policy(heap()?, len, policy)
    }

    /// Why a heap's maintenance mappings would bounce on this boot.
    fn test_heap_bounce() -> Option<crate::dma_mapping::Bounce> {
        heap().ok()?.maintenance().bounce()
    }

    /// Allocates and exports a buffer as the heap does; returns the
    /// reference for the caller to put.
    fn allocate_dma_buf(len: usize) -> Result<*mut sys::dma_buf> {
        use crate::dma_heap::Allocator;
        let heap = Heap::new(None, PoolMode::Off)?;
        Heap::allocate(
            heap.as_arc_borrow(),
            len,
            sys::O_RDWR,
            c"rust_dmabuf_heap_kunit",
        )
        .map(crate::dma_buf::DmaBuf::into_raw)
    }
    const KIB: usize = 1 << 10;

    fn orders_of(buffer: &HeapBuffer) -> KVec<u32> {
        let mut orders = KVec::new();
        for chunk in buffer.chunks() {
            if orders.push(chunk.order(), GFP_KERNEL).is_err() {
                break;
            }
        }
        orders
    }

    /// Waits for dma-buf releases queued by `fput` from this kernel thread.
    fn flush_releases() {
        // SAFETY: Process context, no locks held.
        unsafe { sys::flush_delayed_fput() };
    }

    #[test]
    fn chunks_are_largest_first_and_cover_the_length() -> Result {
        // 2 MiB + 3 * 64 KiB + 5 * 4 KiB: on a fresh machine every order is
        // available, so the mix is exact.
        let len = 2 * MIB + 3 * 64 * KIB + 5 * 4 * KIB;
        let buffer = new_buffer(len)?;
        let orders = orders_of(&buffer);
        assert_eq!(&orders[..], &[8, 8, 4, 4, 4, 0, 0, 0, 0, 0][..]);
        assert_eq!(buffer.chunks().iter().map(|c| c.size()).sum::<usize>(), len);
        Ok(())
    }

    #[test]
    fn orders_never_increase() -> Result {
        let buffer = new_buffer(5 * MIB + 68 * KIB)?;
        let orders = orders_of(&buffer);
        assert!(orders.windows(2).all(|w| w[0] >= w[1]));
        assert!(orders.iter().all(|o| [8, 4, 0].contains(o)));
        Ok(())
    }

    #[test]
    fn sg_table_has_one_entry_per_chunk() -> Result {
        let len = MIB + 64 * KIB + 4 * KIB;
        let buffer = new_buffer(len)?;
        let table = SgTable::new(buffer.chunks(), usize::MAX)?;
        assert_eq!(table.len(), 3);
        assert_eq!(table.entry_lengths().sum::<usize>(), len);
        let sizes = buffer.chunks().iter().map(|chunk| chunk.size());
        assert!(table.entry_lengths().eq(sizes));
        Ok(())
    }

    #[test]
    fn attachment_tables_split_chunks_to_the_devices_segment_limit() -> Result {
        // swiotlb maps at most 256 KiB at once.
        let len = 2 * MIB + 64 * KIB + 4 * KIB;
        let buffer = new_buffer(len)?;
        let copy = SgTable::new(buffer.chunks(), 256 * KIB)?;
        let mut lengths = KVec::new();
        for length in copy.entry_lengths() {
            lengths.push(length, GFP_KERNEL)?;
        }
        let quarter = 256 * KIB;
        let expected = [
            quarter, quarter, quarter, quarter, quarter, quarter, quarter, quarter,
        ];
        assert_eq!(&lengths[..8], &expected[..]);
        assert_eq!(&lengths[8..], &[64 * KIB, 4 * KIB][..]);
        // Pieces of a chunk are consecutive pages of it, in order.
        let mut pages = copy.entry_pfns();
        let first = pages.next().unwrap_or(0);
        assert_eq!(pages.next(), Some(first + 64));
        Ok(())
    }

    #[test]
    fn memory_is_zeroed_even_after_reuse() -> Result {
        // Dirty a buffer, free it, and check a new one of the same shape:
        // the page allocator is likely to hand back the same pages.
        let len = MIB + 64 * KIB + 4 * KIB;
        fill(&*new_buffer(len)?, 0xa5);
        assert_eq!(nonzero_pages(&*new_buffer(len)?)?, 0);
        Ok(())
    }

    #[test]
    fn request_beyond_ram_fails_without_allocating() {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let too_big = (crate::mm_stat::totalram_pages() + 1) * PAGE_SIZE;
        assert!(matches!(new_buffer(too_big), Err(e) if e == ENOMEM));
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
    }

    #[test]
    fn unaligned_or_empty_length_is_rejected() {
        assert!(matches!(new_buffer(0), Err(e) if e == EINVAL));
        assert!(matches!(new_buffer(PAGE_SIZE + 1), Err(e) if e == EINVAL));
    }

    #[test]
    fn export_then_put_releases_everything() -> Result {
        flush_releases();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let len = 3 * MIB;
        let dmabuf = allocate_dma_buf(len)?;
        // SAFETY: `dmabuf` was just exported and we hold its only reference.
        let (size, ops) = unsafe { ((*dmabuf).size, (*dmabuf).ops) };
        assert_eq!(size, len);
        // SAFETY: `dmabuf` is live.
        assert!(unsafe { crate::dma_buf::exporter_of::<HeapBuffer>(dmabuf) }.is_ok());
        assert!(!ops.is_null());
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before + len);
        // SAFETY: We own the reference returned by export.
        unsafe { sys::dma_buf_put(dmabuf) };
        flush_releases();
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
        Ok(())
    }

    /// Sum of the DMA lengths of a mapped table's `nents` entries.
    fn mapped_bytes(table: *mut sys::sg_table) -> usize {
        // SAFETY: `table` is a mapped table returned by the dma-buf core.
        let (mut sg, nents) = unsafe { ((*table).sgl, (*table).nents) };
        let mut total = 0;
        for _ in 0..nents {
            // SAFETY: `sg` is one of the `nents` mapped entries.
            unsafe {
                total += sys::sg_dma_len(sg) as usize;
                sg = sys::sg_next(sg);
            }
        }
        total
    }

    #[test]
    fn two_importers_map_private_tables_through_the_core() -> Result {
        flush_releases();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let len = MIB + 64 * KIB + 4 * KIB;
        // SAFETY: Called from a running KUnit test.
        let camera =
            from_err_ptr(unsafe { sys::rdh_kunit_dma_device(c"rdh-camera".as_char_ptr(), false) })?;
        // SAFETY: As above.
        let display = from_err_ptr(unsafe {
            sys::rdh_kunit_dma_device(c"rdh-display".as_char_ptr(), false)
        })?;
        let dmabuf = allocate_dma_buf(len)?;

        // SAFETY: `dmabuf` is live; the devices live until the test ends.
        let writer = from_err_ptr(unsafe { sys::dma_buf_attach(dmabuf, camera) })?;
        // SAFETY: As above.
        let reader = from_err_ptr(unsafe { sys::dma_buf_attach(dmabuf, display) })?;
        // SAFETY: Both attachments are live and unmapped.
        let (written, read) = unsafe {
            (
                sys::dma_buf_map_attachment_unlocked(writer, FROM_DEVICE.into()),
                sys::dma_buf_map_attachment_unlocked(reader, TO_DEVICE.into()),
            )
        };
        let (written, read) = (from_err_ptr(written)?, from_err_ptr(read)?);
        assert!(!core::ptr::eq(written, read));
        assert_eq!(mapped_bytes(written), len);
        assert_eq!(mapped_bytes(read), len);
        // SAFETY: `dmabuf` is live.
        let begin = unsafe { sys::dma_buf_begin_cpu_access(dmabuf, FROM_DEVICE.into()) };
        // SAFETY: As above.
        let end = unsafe { sys::dma_buf_end_cpu_access(dmabuf, FROM_DEVICE.into()) };
        assert_eq!((begin, end), (0, 0));

        // SAFETY: Undo the mappings and attachments made above, in order.
        unsafe {
            sys::dma_buf_unmap_attachment_unlocked(writer, written, FROM_DEVICE.into());
            sys::dma_buf_unmap_attachment_unlocked(reader, read, TO_DEVICE.into());
            sys::dma_buf_detach(dmabuf, writer);
            sys::dma_buf_detach(dmabuf, reader);
            sys::dma_buf_put(dmabuf);
        }
        flush_releases();
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
        Ok(())
    }

    #[test]
    fn vmap_through_the_core_maps_the_buffer() -> Result {
        flush_releases();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let len = 64 * KIB + 4 * KIB;
        let dmabuf = allocate_dma_buf(len)?;
        // SAFETY: All zeroes is a cleared map.
        let mut map: sys::iosys_map = unsafe { core::mem::zeroed() };
        // SAFETY: `dmabuf` is live; `map` is ours to fill.
        let rc = unsafe { sys::dma_buf_vmap_unlocked(dmabuf, &mut map) };
        assert_eq!(rc, 0);
        // SAFETY: `dma_buf_vmap_unlocked` filled in a system-memory map.
        let (vaddr, is_iomem) = unsafe { (map.__bindgen_anon_1.vaddr, map.is_iomem) };
        assert!(!is_iomem && !vaddr.is_null());
        if !vaddr.is_null() {
            // SAFETY: The mapping covers `len` bytes of zeroed memory.
            let last = unsafe { vaddr.cast::<u8>().add(len - 1).read_volatile() };
            assert_eq!(last, 0);
        }
        // SAFETY: Undo the mapping, then drop our reference.
        unsafe {
            sys::dma_buf_vunmap_unlocked(dmabuf, &mut map);
            sys::dma_buf_put(dmabuf);
        }
        flush_releases();
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
        Ok(())
    }

    /// The tests that count tracked maintenance need the maintenance device
    /// and importers that do not bounce. On a boot where every DMA mapping
    /// bounces (`swiotlb=force`) the heap falls back to `always` (checked by
    /// `every_buffer_is_always_when_the_maintenance_device_would_bounce`)
    /// and these are skipped.
    fn skipped_where_dma_bounces() -> bool {
        if test_heap_bounce().is_none() {
            return false;
        }
        // SAFETY: Called from a running KUnit test.
        unsafe { sys::rdh_kunit_skip(c"DMA mappings bounce on this boot".as_char_ptr()) };
        true
    }

    #[test]
    fn every_buffer_is_always_when_the_maintenance_device_would_bounce() -> Result {
        let buffer = buffer_with_policy(PAGE_SIZE, Policy::Tracked)?;
        let expected = match test_heap_bounce() {
            Some(_) => Policy::Always,
            None => Policy::Tracked,
        };
        assert_eq!(buffer.snapshot().0.policy(), expected);
        Ok(())
    }

    const NAME: &CStr = c"rust_dmabuf_heap_kunit";

    /// `invalidate_mappings` of a dynamic importer: the heap never moves
    /// buffers.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core with a dynamic attachment.
    unsafe extern "C" fn moved(_attach: *mut sys::dma_buf_attachment) {
        panic!("rust_dmabuf_heap moved a buffer");
    }

    static DYNAMIC_IMPORTER: sys::dma_buf_attach_ops = {
        // SAFETY: All zeroes is a valid `dma_buf_attach_ops` (no hooks).
        let mut ops: sys::dma_buf_attach_ops = unsafe { core::mem::zeroed() };
        ops.invalidate_mappings = Some(moved);
        ops
    };
    const TO_DEVICE: DataDirection = DataDirection::ToDevice;
    const FROM_DEVICE: DataDirection = DataDirection::FromDevice;
    const BIDIRECTIONAL: DataDirection = DataDirection::Bidirectional;

    /// An exported buffer with importers attached and mapped through the
    /// dma-buf core, torn down (unmapped, detached, put) on drop.
    struct Rig {
        dmabuf: *mut sys::dma_buf,
        importers: KVec<(
            *mut sys::dma_buf_attachment,
            *mut sys::sg_table,
            sys::dma_data_direction,
        )>,
    }

    impl Rig {
        fn new(len: usize, policy: Policy) -> Result<Self> {
            Self::of(buffer_with_policy(len, policy)?)
        }

        /// Exports `buffer`.
        fn of(buffer: Arc<HeapBuffer>) -> Result<Self> {
            let len = buffer.len();
            Ok(Self {
                dmabuf: crate::dma_buf::export(
                    buffer,
                    len,
                    sys::O_RDWR,
                    NAME,
                    &crate::glue::THIS_MODULE,
                )?
                .into_raw(),
                importers: KVec::new(),
            })
        }

        /// A new KUnit device (names must be unique within a test: they
        /// also name a driver that lives until the test ends).
        fn device(&mut self, coherent: bool) -> Result<*mut sys::device> {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = CString::try_from_fmt(fmt!("rdh-importer-{n}"))?;
            // SAFETY: Called from a running KUnit test.
            from_err_ptr(unsafe { sys::rdh_kunit_dma_device(name.as_char_ptr(), coherent) })
        }

        /// Attaches `dev` and maps it in direction `dir`.
        fn map(&mut self, dev: *mut sys::device, dir: DataDirection) -> Result {
            let dir = dir.into();
            // SAFETY: `dmabuf` is live; the device lives until the test ends.
            let attach = from_err_ptr(unsafe { sys::dma_buf_attach(self.dmabuf, dev) })?;
            // SAFETY: `attach` is a live, unmapped attachment.
            let table =
                match from_err_ptr(unsafe { sys::dma_buf_map_attachment_unlocked(attach, dir) }) {
                    Ok(table) => table,
                    Err(e) => {
                        // SAFETY: Undo the attach above.
                        unsafe { sys::dma_buf_detach(self.dmabuf, attach) };
                        return Err(e);
                    }
                };
            self.importers.push((attach, table, dir), GFP_KERNEL)?;
            Ok(())
        }

        /// Maps a new device in direction `dir`.
        fn map_new(&mut self, coherent: bool, dir: DataDirection) -> Result {
            let dev = self.device(coherent)?;
            self.map(dev, dir)
        }

        /// Unmaps and detaches the most recent importer.
        fn unmap_last(&mut self) {
            if let Some((attach, table, dir)) = self.importers.pop() {
                // SAFETY: Mapped and attached by `map`.
                unsafe {
                    sys::dma_buf_unmap_attachment_unlocked(attach, table, dir);
                    sys::dma_buf_detach(self.dmabuf, attach);
                }
            }
        }

        /// One CPU access bracket; returns the two return codes.
        fn cpu_access(&self, begin: DataDirection, end: DataDirection) -> (i32, i32) {
            // SAFETY: `dmabuf` is live.
            let b = unsafe { sys::dma_buf_begin_cpu_access(self.dmabuf, begin.into()) };
            // SAFETY: As above.
            let e = unsafe { sys::dma_buf_end_cpu_access(self.dmabuf, end.into()) };
            (b, e)
        }

        /// Declares, for importer `i`, an access in `dir` until `fence`.
        fn access_until(&self, i: usize, dir: DataDirection, fence: &TestFence) -> i32 {
            let attach = self.importers[i].0;
            // SAFETY: `attach` is live; the fence is referenced by `fence`.
            unsafe { crate::c_api::rdh_dma_buf_access_until(attach, dir.into(), fence.0) }
        }

        /// Importer 0 writes until a fence that signals 20 ms later from a
        /// workqueue; a CPU read bracket starts at once. Returns whether the
        /// fence had signalled when the bracket's START returned.
        fn cpu_read_waits_for_a_job_signalled_later(&self) -> Result<bool> {
            let fence = TestFence::new()?;
            assert_eq!(self.access_until(0, FROM_DEVICE, &fence), 0);
            fence.signal_later(20);
            // SAFETY: `dmabuf` is live.
            let begin = unsafe { sys::dma_buf_begin_cpu_access(self.dmabuf, FROM_DEVICE.into()) };
            let signalled_first = fence.is_signaled();
            // SAFETY: As above.
            let end = unsafe { sys::dma_buf_end_cpu_access(self.dmabuf, FROM_DEVICE.into()) };
            assert_eq!((begin, end), (0, 0));
            Ok(signalled_first)
        }

        fn stats(&self) -> CacheStats {
            // SAFETY: `dmabuf` is one of ours and live.
            let (buffer, _) = unsafe { crate::dma_buf::exporter_of::<HeapBuffer>(self.dmabuf) }
                .expect("one of ours");
            buffer.stats()
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            while !self.importers.is_empty() {
                self.unmap_last();
            }
            // SAFETY: We hold the reference returned by export.
            unsafe { sys::dma_buf_put(self.dmabuf) };
            flush_releases();
        }
    }

    /// A fence on a private context; we hold one reference.
    struct TestFence(*mut sys::dma_fence);

    impl TestFence {
        fn new() -> Result<Self> {
            // SAFETY: Process context.
            Ok(Self(from_err_ptr(unsafe { sys::rdh_test_fence_create() })?))
        }

        fn signal(&self) {
            // SAFETY: The fence is valid while we hold our reference.
            unsafe { sys::rdh_test_fence_signal(self.0) };
        }

        fn signal_later(&self, ms: u32) {
            // SAFETY: As above; the work item takes its own reference.
            unsafe { sys::rdh_test_fence_signal_later(self.0, ms) };
        }

        fn is_signaled(&self) -> bool {
            // SAFETY: As above.
            unsafe { sys::dma_fence_is_signaled(self.0) }
        }
    }

    impl Drop for TestFence {
        fn drop(&mut self) {
            // Never leave a fence unsignalled: nothing may wait forever.
            self.signal();
            // SAFETY: Our reference.
            unsafe { sys::dma_fence_put(self.0) };
        }
    }

    /// A tracked buffer with one mapped non-coherent writer that declared a
    /// first (signalled) fence, its conversion to fenced already paid for.
    fn fenced_writer() -> Result<Rig> {
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        rig.map_new(false, BIDIRECTIONAL)?;
        let first = TestFence::new()?;
        first.signal();
        assert_eq!(rig.access_until(0, BIDIRECTIONAL, &first), 0);
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        Ok(rig)
    }

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

    /// An importer that detaches without unmapping: the heap undoes the
    /// mapping itself, and it counts as an unmap (a non-coherent writer's
    /// lines are stale afterwards: the next CPU read invalidates).
    #[test]
    fn detach_while_mapped_unmaps_and_counts_as_an_unmap() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        flush_releases();
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        {
            let mut rig = Rig::new(MIB, Policy::Tracked)?;
            rig.map_new(false, FROM_DEVICE)?;
            let (attach, _, _) = rig.importers.pop().ok_or(EINVAL)?;
            let before = rig.stats();
            // SAFETY: `attach` is live and mapped; detach without unmap is
            // what a buggy importer does.
            unsafe { sys::dma_buf_detach(rig.dmabuf, attach) };
            assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
            assert_eq!(ops_between(before, rig.stats()), (0, 1));
        }
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        Ok(())
    }

    /// Mapping an attachment that is mapped already: EBUSY, nothing
    /// changed, and the first mapping still unmaps cleanly.
    #[test]
    fn second_map_of_an_attachment_is_ebusy() -> Result {
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        rig.map_new(false, BIDIRECTIONAL)?;
        let (attach, _, _) = rig.importers[0];
        let before = rig.stats();
        // SAFETY: `attach` is live (mapped once already).
        let again = unsafe { sys::dma_buf_map_attachment_unlocked(attach, TO_DEVICE.into()) };
        assert_eq!(again.addr(), EBUSY.to_ptr::<u8>().addr());
        assert_eq!(rig.stats(), before);
        Ok(())
    }

    /// A dynamic importer (`dma_buf_dynamic_attach`, maps under the
    /// reservation lock, does not wait for kernel fences at map): the heap
    /// never moves buffers, so it never calls `invalidate_mappings`, and such an
    /// importer's maps count like any other's.
    #[test]
    fn dynamic_importer_maps_like_a_static_one() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        let dev = rig.device(false)?;
        // SAFETY: `dmabuf` is live; the device lives until the test ends;
        // the ops are static.
        let attach = from_err_ptr(unsafe {
            sys::dma_buf_dynamic_attach(rig.dmabuf, dev, &DYNAMIC_IMPORTER, core::ptr::null_mut())
        })?;
        // SAFETY: `dmabuf` is live; paired below.
        unsafe { sys::rdh_test_resv_lock(rig.dmabuf) };
        // SAFETY: Reservation lock held, `attach` live and unmapped.
        let table = unsafe { sys::dma_buf_map_attachment(attach, TO_DEVICE.into()) };
        let mapped = rig.stats();
        if !table.is_null() && table.addr() < usize::MAX - 4095 {
            // SAFETY: Mapped above, lock held.
            unsafe { sys::dma_buf_unmap_attachment(attach, table, TO_DEVICE.into()) };
        }
        // SAFETY: Locked above.
        unsafe { sys::rdh_test_resv_unlock(rig.dmabuf) };
        // SAFETY: Unmapped; detach takes the lock itself.
        unsafe { sys::dma_buf_detach(rig.dmabuf, attach) };
        assert!(!table.is_null() && table.addr() < usize::MAX - 4095);
        // The freshly zeroed pages were cleaned for the device, once.
        assert_eq!((mapped.cleans, mapped.invalidates), (1, 0));
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

    /// Cleans and invalidates between two snapshots.
    fn ops_between(before: CacheStats, after: CacheStats) -> (u64, u64) {
        (
            after.cleans - before.cleans,
            after.invalidates - before.invalidates,
        )
    }

    #[test]
    fn tracked_three_mapped_importers_cost_one_invalidate_and_one_clean_per_cpu_access() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        for _ in 0..3 {
            rig.map_new(false, BIDIRECTIONAL)?;
        }
        // Mapping cleaned the zeroed pages once, not three times.
        assert_eq!((rig.stats().cleans, rig.stats().invalidates), (1, 0));
        let before = rig.stats();
        assert_eq!(rig.cpu_access(BIDIRECTIONAL, BIDIRECTIONAL), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (1, 1));
        assert_eq!(rig.stats().clean_bytes, 2 * MIB as u64);
        Ok(())
    }

    #[test]
    fn always_three_mapped_importers_cost_three_and_three_like_the_system_heap() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Always)?;
        for _ in 0..3 {
            rig.map_new(false, BIDIRECTIONAL)?;
        }
        assert_eq!((rig.stats().cleans, rig.stats().invalidates), (3, 0));
        let before = rig.stats();
        assert_eq!(rig.cpu_access(BIDIRECTIONAL, BIDIRECTIONAL), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (3, 3));
        Ok(())
    }

    #[test]
    fn cpu_owned_buffer_costs_nothing_for_100_accesses() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let rig = Rig::new(64 * KIB, Policy::Tracked)?;
        for _ in 0..100 {
            assert_eq!(rig.cpu_access(BIDIRECTIONAL, BIDIRECTIONAL), (0, 0));
        }
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (0, 0));
        Ok(())
    }

    #[test]
    fn camera_gpu_display_handover_costs_only_the_first_clean() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        let (camera, gpu, display) = (rig.device(false)?, rig.device(false)?, rig.device(false)?);
        for _ in 0..3 {
            rig.map(camera, FROM_DEVICE)?;
            rig.unmap_last();
            rig.map(gpu, BIDIRECTIONAL)?;
            rig.unmap_last();
            rig.map(display, TO_DEVICE)?;
            rig.unmap_last();
        }
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (1, 0));
        // The CPU reads the result: one invalidate for all the device writes.
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (1, 1));
        Ok(())
    }

    #[test]
    fn coherent_importers_cost_nothing() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let mut rig = Rig::new(MIB, Policy::Tracked)?;
        rig.map_new(true, BIDIRECTIONAL)?;
        rig.map_new(true, FROM_DEVICE)?;
        assert_eq!(rig.cpu_access(BIDIRECTIONAL, BIDIRECTIONAL), (0, 0));
        rig.unmap_last();
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (0, 0));
        assert!(rig.stats().skipped[0] >= 2);
        Ok(())
    }

    #[test]
    fn ownership_rules_run_in_the_kernel() {
        use ownership::Direction::*;
        let nc = Device {
            coherent: false,
            fenced: false,
        };
        let mut own = Ownership::new(Policy::Tracked, 2048);
        let script = [
            (Event::Map(nc, FromDevice), (1, 0)), // zeroed pages cleaned
            (Event::Unmap(nc, FromDevice), (0, 0)),
            (Event::Map(nc, ToDevice), (0, 0)), // hand-over: free
            (Event::Unmap(nc, ToDevice), (0, 0)),
            (Event::BeginCpu(FromDevice), (0, 1)), // camera data: invalidate
            (Event::EndCpu(FromDevice), (0, 0)),
            (Event::BeginCpu(FromDevice), (0, 0)), // still CPU-owned: free
            (Event::EndCpu(ToDevice), (0, 0)),     // dirty, nobody mapped
            (Event::Map(nc, ToDevice), (1, 0)),    // the clean happens now
        ];
        for (event, (clean, invalidate)) in script {
            assert_eq!(own.on(event).ops, CacheOps { clean, invalidate });
        }
    }

    #[test]
    fn vmap_sees_the_pages_and_is_refcounted() -> Result {
        let buffer = new_buffer(64 * KIB + 4 * KIB)?;
        buffer.chunks()[1].fill_page(0, 0x5a);
        let first = buffer.vmap()?;
        let second = buffer.vmap()?;
        assert_eq!(first, second);
        // SAFETY: The mapping covers the whole buffer; byte 64 KiB is the
        // first byte of the second chunk.
        let byte = unsafe { first.as_ptr().cast::<u8>().add(64 * KIB).read_volatile() };
        assert_eq!(byte, 0x5a);
        buffer.vunmap();
        buffer.vunmap();
        Ok(())
    }

    /// A buffer of a private uncached heap (sharing a private heap's
    /// maintenance device); `None` (the case skipped) where DMA bounces:
    /// then there is no uncached heap.
    fn uncached_buffer(len: usize) -> Result<Option<(Arc<HeapContext>, Arc<HeapBuffer>)>> {
        if skipped_where_dma_bounces() {
            return Ok(None);
        }
        let heap = heap()?.uncached()?;
        let buffer = HeapBuffer::new(heap.clone(), len)?;
        Ok(Some((heap, buffer)))
    }

    #[test]
    fn uncached_buffer_is_flushed_once_and_costs_nothing_for_noncoherent_importers() -> Result {
        let Some((heap, buffer)) = uncached_buffer(MIB)? else {
            return Ok(());
        };
        let flushed = heap.totals().allocation_flush_bytes.load(Ordering::Relaxed);
        assert_eq!(flushed, MIB as u64);
        assert_eq!(buffer.snapshot().0.policy(), Policy::Uncached);
        let mut rig = Rig::of(buffer)?;
        // Camera writes, CPU reads, the CPU fills for two readers: nothing.
        rig.map_new(false, FROM_DEVICE)?;
        rig.unmap_last();
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        rig.map_new(false, TO_DEVICE)?;
        rig.map_new(false, BIDIRECTIONAL)?;
        for _ in 0..10 {
            assert_eq!(rig.cpu_access(BIDIRECTIONAL, BIDIRECTIONAL), (0, 0));
        }
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (0, 0));
        let totals = heap.totals();
        assert_eq!(totals.clean_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(totals.invalidate_bytes.load(Ordering::Relaxed), 0);
        Ok(())
    }

    #[test]
    fn uncached_coherent_importer_gets_an_invalidate_at_map_and_after_cpu_writes_only() -> Result {
        let Some((_heap, buffer)) = uncached_buffer(64 * KIB)? else {
            return Ok(());
        };
        let mut rig = Rig::of(buffer)?;
        // User space may have written around the cache without SYNC: the
        // snooping reader's map drops every line, once.
        rig.map_new(true, TO_DEVICE)?;
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (0, 1));
        // The CPU writes around the cache while a snooping reader is mapped:
        // the lines a speculative fill may have left are dropped, once.
        assert_eq!(rig.cpu_access(TO_DEVICE, TO_DEVICE), (0, 0));
        assert_eq!(ops_between(CacheStats::default(), rig.stats()), (0, 2));
        assert_eq!(rig.stats().invalidate_bytes, 2 * 64 * KIB as u64);
        // Reading changes nothing the reader could see.
        let before = rig.stats();
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        assert_eq!(ops_between(before, rig.stats()), (0, 0));
        Ok(())
    }

    #[test]
    fn uncached_kernel_mapping_is_write_combined() -> Result {
        let Some((_heap, buffer)) = uncached_buffer(64 * KIB + 4 * KIB)? else {
            return Ok(());
        };
        let cached = new_buffer(4 * KIB)?;
        let (wc, normal) = (buffer.vmap()?, cached.vmap()?);
        // SAFETY: Both are live kernel mappings; the last page is in the
        // uncached buffer's second chunk.
        let attrs = unsafe {
            [
                wc.as_ptr(),
                wc.as_ptr().cast::<u8>().add(64 * KIB).cast(),
                normal.as_ptr(),
            ]
            .map(|addr| sys::rdh_kunit_kernel_mapping_is_writecombine(addr))
        };
        buffer.vunmap();
        cached.vunmap();
        if attrs.contains(&-(sys::EOPNOTSUPP as i32)) {
            // SAFETY: Called from a running KUnit test.
            unsafe { sys::rdh_kunit_skip(c"page-table walk for arm64 only".as_char_ptr()) };
            return Ok(());
        }
        assert_eq!(attrs, [1, 1, 0]);
        Ok(())
    }

    #[test]
    fn uncached_kernel_mapping_reads_and_writes_the_pages() -> Result {
        let Some((_heap, buffer)) = uncached_buffer(64 * KIB + 4 * KIB)? else {
            return Ok(());
        };
        let first = buffer.vmap()?;
        assert_eq!(buffer.vmap()?, first);
        // Through the mapping only: the linear map is another alias, which
        // may hold older lines.
        // SAFETY: The mapping covers the whole buffer; byte 64 KiB is the
        // first byte of the second chunk.
        let byte = unsafe {
            let at = first.as_ptr().cast::<u8>().add(64 * KIB);
            let zero = at.read_volatile();
            at.write_volatile(0x5a);
            (zero, at.read_volatile())
        };
        assert_eq!(byte, (0, 0x5a));
        buffer.vunmap();
        buffer.vunmap();
        Ok(())
    }

    /// A private heap with a page pool whose worker and shrinker jobs the
    /// test runs itself (no thread: what is on the backlog stays there);
    /// `None` (the case skipped) if the pool is off on this boot (under
    /// `mem_accounting` or `pool_limit_mib=0`).
    fn pooled_heap() -> Result<Option<Arc<HeapContext>>> {
        let heap = HeapContext::new(c"private", PoolMode::Manual)?;
        if heap.pool().limit_bytes() == 0 || crate::dma_heap::mem_accounting() {
            // SAFETY: Called from a running KUnit test.
            unsafe { sys::rdh_kunit_skip(c"the page pool is off on this boot".as_char_ptr()) };
            return Ok(None);
        }
        Ok(Some(heap))
    }

    /// Fills every page of `buffer` with `byte`.
    fn fill(buffer: &HeapBuffer, byte: u8) {
        for chunk in buffer.chunks() {
            for n in 0..chunk.page_count() {
                chunk.fill_page(n, byte);
            }
        }
    }

    /// Number of pages of `buffer` with a non-zero byte.
    fn nonzero_pages(buffer: &HeapBuffer) -> Result<usize> {
        let mut page = KBox::new([0xffu8; PAGE_SIZE], GFP_KERNEL)?;
        let mut nonzero = 0;
        for chunk in buffer.chunks() {
            for n in 0..chunk.page_count() {
                chunk.read_page(n, &mut page);
                if page.iter().any(|&b| b != 0) {
                    nonzero += 1;
                }
            }
        }
        Ok(nonzero)
    }

    /// A buffer of each chunk order, one after the other.
    const ONE_OF_EACH_ORDER: usize = MIB + 64 * KIB + 4 * KIB;

    /// A pooled heap ([`pooled_heap`]) whose backlog holds a freed
    /// buffer of `len` bytes full of a pattern; `None` (the case skipped)
    /// if the pool is off on this boot.
    fn heap_with_a_dirty_free(len: usize) -> Result<Option<Arc<HeapContext>>> {
        let Some(heap) = pooled_heap()? else {
            return Ok(None);
        };
        let dirty = HeapBuffer::new(heap.clone(), len)?;
        fill(&dirty, 0xa5);
        drop(dirty);
        Ok(Some(heap))
    }

    /// Free CMA pages serve only movable allocations, so the reserve
    /// check does not count them (the debug kernel has a CMA area).
    #[test]
    fn the_reserve_check_does_not_count_free_cma_pages() -> Result {
        // SAFETY: Reads a global counter.
        let cma = unsafe { sys::rdh_kunit_nr_free_cma_pages() } as usize;
        if cma < 1024 {
            // SAFETY: Called from a running KUnit test.
            unsafe { sys::rdh_kunit_skip(c"no free CMA area on this boot".as_char_ptr()) };
            return Ok(());
        }
        let counted = crate::pages::free_pages();
        // SAFETY: Reads a global counter.
        let free = unsafe { sys::rdh_kunit_nr_free_pages() } as usize;
        // Other allocations may come and go meanwhile: half the CMA area
        // of slack.
        assert!(counted + cma / 2 <= free);
        Ok(())
    }

    /// A freed buffer's chunk vector in vmalloc memory (a long one: a
    /// large buffer of 4 KiB chunks) is freed only after the pool's
    /// spinlock is dropped: `vfree` may sleep, which the debug kernel
    /// (`DEBUG_ATOMIC_SLEEP`) reports as a BUG, failing the boot.
    #[test]
    fn a_chunk_vector_in_vmalloc_memory_is_freed_outside_the_pool_lock() -> Result {
        let Some(heap) = pooled_heap()? else {
            return Ok(());
        };
        let len = ONE_OF_EACH_ORDER;
        let mut memory = heap.pool().allocate(len)?;
        // Beyond kmalloc's largest size (4 MiB with 4 KiB pages).
        let room = (4 * MIB) / core::mem::size_of::<crate::pages::PageChunk>() + 1;
        let vector = memory.regroup(room)?;
        // SAFETY: Only compares the address with the vmalloc area.
        assert!(unsafe { sys::rdh_kunit_is_vmalloc_addr(vector.cast()) });
        let backlog = heap.pool().levels().backlog_pages;
        drop(memory);
        // The chunks went onto the backlog; their vector was freed after
        // the lock.
        assert_eq!(
            heap.pool().levels().backlog_pages,
            backlog + len / PAGE_SIZE
        );
        Ok(())
    }

    #[test]
    fn freed_chunks_on_the_backlog_are_never_handed_out() -> Result {
        let len = ONE_OF_EACH_ORDER;
        let Some(heap) = heap_with_a_dirty_free(len)? else {
            return Ok(());
        };
        // Freed, not zeroed yet (the worker has not run).
        assert_eq!(heap.pool().levels().backlog_pages * PAGE_SIZE, len);
        let hits = heap.pool().counters.hit_bytes.load(Ordering::Relaxed);
        let buffer = HeapBuffer::new(heap.clone(), len)?;
        assert_eq!(nonzero_pages(&buffer)?, 0);
        assert_eq!(heap.pool().counters.hit_bytes.load(Ordering::Relaxed), hits);
        assert_eq!(buffer.snapshot().0.lines(), ownership::Lines::ZEROED);
        assert_eq!(heap.pool().levels().backlog_pages * PAGE_SIZE, len);
        Ok(())
    }

    #[test]
    fn pooled_chunks_come_back_zeroed_and_clean() -> Result {
        let len = ONE_OF_EACH_ORDER;
        let Some(heap) = heap_with_a_dirty_free(len)? else {
            return Ok(());
        };
        heap.pool().work();
        let levels = heap.pool().levels();
        assert_eq!((levels.chunks, levels.backlog_pages), ([1, 1, 1], 0));
        let cleans = heap.pool().cleans();
        let cleaned = heap.pool().counters.cleaned_bytes.load(Ordering::Relaxed);
        assert_eq!(cleaned, if cleans { len as u64 } else { 0 });
        let buffer = HeapBuffer::new(heap.clone(), len)?;
        assert_eq!(heap.pool().levels().zeroed_pages, 0);
        assert_eq!(nonzero_pages(&buffer)?, 0);
        let expected = if cleans {
            ownership::Lines::CLEAN
        } else {
            ownership::Lines::ZEROED
        };
        assert_eq!(buffer.snapshot().0.lines(), expected);
        // The first map by a non-coherent device needs no clean. (Where
        // the pool cannot clean, the maintenance device bounces: then the
        // buffer is `always`, and its mappings sync themselves.)
        if cleans {
            let mut rig = Rig::of(buffer)?;
            rig.map_new(false, TO_DEVICE)?;
            assert_eq!(rig.stats().clean_bytes, 0);
        }
        Ok(())
    }

    #[test]
    fn buffer_of_pooled_and_fresh_chunks_starts_dirty() -> Result {
        let Some(heap) = pooled_heap()? else {
            return Ok(());
        };
        drop(HeapBuffer::new(heap.clone(), 4 * KIB)?);
        heap.pool().work();
        let buffer = HeapBuffer::new(heap.clone(), MIB + 4 * KIB)?;
        assert_eq!(heap.pool().levels().zeroed_pages, 0);
        assert_eq!(buffer.snapshot().0.lines(), ownership::Lines::ZEROED);
        Ok(())
    }

    #[test]
    fn shrinker_frees_the_backlog_first_then_bypasses_the_pool() -> Result {
        let Some(heap) = pooled_heap()? else {
            return Ok(());
        };
        flush_releases();
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let (a, b, c) = (
            HeapBuffer::new(heap.clone(), 2 * MIB)?,
            HeapBuffer::new(heap.clone(), MIB)?,
            HeapBuffer::new(heap.clone(), MIB)?,
        );
        drop(a);
        heap.pool().work();
        drop(b);
        let pool = heap.pool();
        assert_eq!(rdh_pool_pages(pool), 3 * MIB / PAGE_SIZE);
        // Asked for one page, the shrinker frees a whole chunk: the
        // backlog's, which needs no zeroing.
        let until = Instant::<Monotonic>::now() + Delta::from_millis(60_000);
        assert_eq!(pool.shrink(1, until), MIB / PAGE_SIZE);
        assert_eq!(pool.levels().backlog_pages, 0);
        assert_eq!(pool.levels().zeroed_pages, 2 * MIB / PAGE_SIZE);
        // Under pressure a freed buffer is freed at once.
        drop(c);
        assert_eq!(rdh_pool_pages(pool), 2 * MIB / PAGE_SIZE);
        assert_eq!(pool.shrink(usize::MAX, until), 2 * MIB / PAGE_SIZE);
        assert_eq!(rdh_pool_pages(pool), 0);
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        Ok(())
    }

    /// All pages pooled or on the backlog.
    fn rdh_pool_pages(pool: &crate::pool::Pool) -> usize {
        let levels = pool.levels();
        levels.zeroed_pages + levels.backlog_pages
    }

    #[test]
    fn pooled_heap_frees_everything_when_it_goes() -> Result {
        flush_releases();
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let Some(heap) = pooled_heap()? else {
            return Ok(());
        };
        drop(HeapBuffer::new(heap.clone(), MIB)?);
        heap.pool().work();
        drop(HeapBuffer::new(heap.clone(), 64 * KIB)?);
        drop(heap);
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        Ok(())
    }
}
