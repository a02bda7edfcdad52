// SPDX-License-Identifier: GPL-2.0

//! The dma-buf core's contract, driven through the core itself: export and
//! release, importers' private tables, vmap, detach while mapped, a second
//! map, dynamic importers.

use kernel::prelude::*;

#[kunit_tests(rust_dmabuf_heap_exporter)]
mod tests {
    use crate::{
        bindings as sys, buffer::HeapBuffer, kunit::rig::*, ownership::Policy, pages::LIVE_BYTES,
    };
    use core::sync::atomic::Ordering;
    use kernel::{error::from_err_ptr, prelude::*};

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
}
