// SPDX-License-Identifier: GPL-2.0

//! What the suites that span modules share: private heaps and buffers, and
//! the [`Rig`], a buffer exported and driven through the dma-buf core as
//! importer drivers drive it (attach, map, CPU access, the explicit fence
//! API), with KUnit devices and test fences.

use super::support::skip;
use crate::{
    bindings as sys, buffer::HeapBuffer, context::HeapContext, heap::Heap, ownership::Policy,
    pool::PoolMode, stats::CacheStats,
};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::{dma::DataDirection, error::from_err_ptr, prelude::*, str::CString, sync::Arc};

/// One mebibyte.
pub(crate) const MIB: usize = 1 << 20;
/// One kibibyte.
pub(crate) const KIB: usize = 1 << 10;

/// A private heap (its own maintenance device, no debugfs), without a
/// page pool: its buffers are always fresh, and freed at once.
pub(crate) fn heap() -> Result<Arc<HeapContext>> {
    HeapContext::new(c"private", PoolMode::Off)
}

/// A buffer of a private heap under `policy`.
pub(crate) fn buffer_with_policy(len: usize, policy: Policy) -> Result<Arc<HeapBuffer>> {
    HeapBuffer::with_policy(heap()?, len, policy)
}

/// Why a heap's maintenance mappings would bounce on this boot.
pub(crate) fn test_heap_bounce() -> Option<crate::dma_mapping::Bounce> {
    heap().ok()?.maintenance().bounce()
}

/// Allocates and exports a buffer as the heap does; returns the
/// reference for the caller to put.
pub(crate) fn allocate_dma_buf(len: usize) -> Result<*mut sys::dma_buf> {
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

/// Waits for dma-buf releases queued by `fput` from this kernel thread.
pub(crate) use super::support::flush_releases;

/// Sum of the DMA lengths of a mapped table's `nents` entries.
pub(crate) fn mapped_bytes(table: *mut sys::sg_table) -> usize {
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

/// The tests that count tracked maintenance need the maintenance device
/// and importers that do not bounce. On a boot where every DMA mapping
/// bounces (`swiotlb=force`) the heap falls back to `always` (checked by
/// `every_buffer_is_always_when_the_maintenance_device_would_bounce`)
/// and these are skipped.
pub(crate) fn skipped_where_dma_bounces() -> bool {
    if test_heap_bounce().is_none() {
        return false;
    }
    skip(c"DMA mappings bounce on this boot");
    true
}

pub(crate) const NAME: &CStr = c"rust_dmabuf_heap_kunit";

/// `invalidate_mappings` of a dynamic importer: the heap never moves
/// buffers.
///
/// # Safety
///
/// Called by the dma-buf core with a dynamic attachment.
unsafe extern "C" fn moved(_attach: *mut sys::dma_buf_attachment) {
    panic!("rust_dmabuf_heap moved a buffer");
}

pub(crate) static DYNAMIC_IMPORTER: sys::dma_buf_attach_ops = {
    // SAFETY: All zeroes is a valid `dma_buf_attach_ops` (no hooks).
    let mut ops: sys::dma_buf_attach_ops = unsafe { core::mem::zeroed() };
    ops.invalidate_mappings = Some(moved);
    ops
};

pub(crate) const TO_DEVICE: DataDirection = DataDirection::ToDevice;

pub(crate) const FROM_DEVICE: DataDirection = DataDirection::FromDevice;

pub(crate) const BIDIRECTIONAL: DataDirection = DataDirection::Bidirectional;

/// An exported buffer with importers attached and mapped through the
/// dma-buf core, torn down (unmapped, detached, put) on drop.
pub(crate) struct Rig {
    pub(crate) dmabuf: *mut sys::dma_buf,
    pub(crate) importers: KVec<(
        *mut sys::dma_buf_attachment,
        *mut sys::sg_table,
        sys::dma_data_direction,
    )>,
}

impl Rig {
    pub(crate) fn new(len: usize, policy: Policy) -> Result<Self> {
        Self::of(buffer_with_policy(len, policy)?)
    }

    /// Exports `buffer`.
    pub(crate) fn of(buffer: Arc<HeapBuffer>) -> Result<Self> {
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
    pub(crate) fn device(&mut self, coherent: bool) -> Result<*mut sys::device> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = CString::try_from_fmt(fmt!("rdh-importer-{n}"))?;
        // SAFETY: Called from a running KUnit test.
        from_err_ptr(unsafe { sys::rdh_kunit_dma_device(name.as_char_ptr(), coherent) })
    }

    /// A new KUnit device with a 32-bit DMA mask (non-coherent).
    pub(crate) fn device_32bit(&mut self) -> Result<*mut sys::device> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = CString::try_from_fmt(fmt!("rdh-importer32-{n}"))?;
        // SAFETY: Called from a running KUnit test.
        from_err_ptr(unsafe { sys::rdh_kunit_dma32_device(name.as_char_ptr()) })
    }

    /// Whether the newest importer's mapping points at the buffer's pages
    /// themselves (no bounce slot).
    pub(crate) fn last_mapping_is_direct(&self) -> bool {
        self.importers.last().is_some_and(|&(_, table, _)| {
            // SAFETY: A table mapped by `map`, live until unmapped.
            unsafe { sys::rdh_kunit_table_is_direct(table) }
        })
    }

    /// Attaches `dev` and maps it in direction `dir`.
    pub(crate) fn map(&mut self, dev: *mut sys::device, dir: DataDirection) -> Result {
        let dir = dir.into();
        // SAFETY: `dmabuf` is live; the device lives until the test ends.
        let attach = from_err_ptr(unsafe { sys::dma_buf_attach(self.dmabuf, dev) })?;
        // SAFETY: `attach` is a live, unmapped attachment.
        let table = match from_err_ptr(unsafe { sys::dma_buf_map_attachment_unlocked(attach, dir) })
        {
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
    pub(crate) fn map_new(&mut self, coherent: bool, dir: DataDirection) -> Result {
        let dev = self.device(coherent)?;
        self.map(dev, dir)
    }

    /// Unmaps and detaches the most recent importer.
    pub(crate) fn unmap_last(&mut self) {
        if let Some((attach, table, dir)) = self.importers.pop() {
            // SAFETY: Mapped and attached by `map`.
            unsafe {
                sys::dma_buf_unmap_attachment_unlocked(attach, table, dir);
                sys::dma_buf_detach(self.dmabuf, attach);
            }
        }
    }

    /// One CPU access bracket; returns the two return codes.
    pub(crate) fn cpu_access(&self, begin: DataDirection, end: DataDirection) -> (i32, i32) {
        // SAFETY: `dmabuf` is live.
        let b = unsafe { sys::dma_buf_begin_cpu_access(self.dmabuf, begin.into()) };
        // SAFETY: As above.
        let e = unsafe { sys::dma_buf_end_cpu_access(self.dmabuf, end.into()) };
        (b, e)
    }

    /// Declares, for importer `i`, an access in `dir` until `fence`.
    pub(crate) fn access_until(&self, i: usize, dir: DataDirection, fence: &TestFence) -> i32 {
        let attach = self.importers[i].0;
        // SAFETY: `attach` is live; the fence is referenced by `fence`.
        unsafe { crate::c_api::rdh_dma_buf_access_until(attach, dir.into(), fence.0) }
    }

    /// Importer 0 writes until a fence that signals 20 ms later from a
    /// workqueue; a CPU read bracket starts at once. Returns whether the
    /// fence had signalled when the bracket's START returned.
    pub(crate) fn cpu_read_waits_for_a_job_signalled_later(&self) -> Result<bool> {
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

    pub(crate) fn stats(&self) -> CacheStats {
        // SAFETY: `dmabuf` is one of ours and live.
        let (buffer, _) =
            unsafe { crate::dma_buf::exporter_of::<HeapBuffer>(self.dmabuf) }.expect("one of ours");
        buffer.snapshot().1
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
pub(crate) struct TestFence(pub(crate) *mut sys::dma_fence);

impl TestFence {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Process context.
        Ok(Self(from_err_ptr(unsafe { sys::rdh_test_fence_create() })?))
    }

    pub(crate) fn signal(&self) {
        // SAFETY: The fence is valid while we hold our reference.
        unsafe { sys::rdh_test_fence_signal(self.0) };
    }

    pub(crate) fn signal_later(&self, ms: u32) {
        // SAFETY: As above; the work item takes its own reference.
        unsafe { sys::rdh_test_fence_signal_later(self.0, ms) };
    }

    pub(crate) fn is_signaled(&self) -> bool {
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
pub(crate) fn fenced_writer() -> Result<Rig> {
    let mut rig = Rig::new(MIB, Policy::Tracked)?;
    rig.map_new(false, BIDIRECTIONAL)?;
    let first = TestFence::new()?;
    first.signal();
    assert_eq!(rig.access_until(0, BIDIRECTIONAL, &first), 0);
    assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
    Ok(rig)
}

/// Cleans and invalidates between two snapshots.
pub(crate) fn ops_between(before: CacheStats, after: CacheStats) -> (u64, u64) {
    (
        after.cleans - before.cleans,
        after.invalidates - before.invalidates,
    )
}

/// A buffer of a private uncached heap (sharing a private heap's
/// maintenance device); `None` (the case skipped) where DMA bounces:
/// then there is no uncached heap.
pub(crate) fn uncached_buffer(len: usize) -> Result<Option<(Arc<HeapContext>, Arc<HeapBuffer>)>> {
    if skipped_where_dma_bounces() {
        return Ok(None);
    }
    let heap = heap()?.uncached()?;
    let buffer = HeapBuffer::new(heap.clone(), len)?;
    Ok(Some((heap, buffer)))
}
