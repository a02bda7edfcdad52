// SPDX-License-Identifier: GPL-2.0

//! KUnit suite run when the module is loaded: allocation shape, zeroing,
//! export and release, checked against the real page allocator.

use kernel::prelude::*;

#[kunit_tests(rust_dmabuf_heap)]
mod tests {
    use crate::{
        buffer::HeapBuffer,
        pages::{LIVE_BYTES, PAGE_SIZE},
        sys,
    };
    use core::sync::atomic::Ordering;
    use kernel::{error::from_err_ptr, prelude::*};

    const MIB: usize = 1 << 20;
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
        let buffer = HeapBuffer::new(len)?;
        let orders = orders_of(&buffer);
        assert_eq!(&orders[..], &[8, 8, 4, 4, 4, 0, 0, 0, 0, 0][..]);
        assert_eq!(buffer.chunks().iter().map(|c| c.size()).sum::<usize>(), len);
        Ok(())
    }

    #[test]
    fn orders_never_increase() -> Result {
        let buffer = HeapBuffer::new(5 * MIB + 68 * KIB)?;
        let orders = orders_of(&buffer);
        assert!(orders.windows(2).all(|w| w[0] >= w[1]));
        assert!(orders.iter().all(|o| [8, 4, 0].contains(o)));
        Ok(())
    }

    #[test]
    fn sg_table_has_one_entry_per_chunk() -> Result {
        let len = MIB + 64 * KIB + 4 * KIB;
        let buffer = HeapBuffer::new(len)?;
        assert_eq!(buffer.table().len(), 3);
        assert_eq!(buffer.table().entry_lengths().sum::<usize>(), len);
        let copy = buffer.table().duplicate()?;
        assert_eq!(copy.len(), 3);
        assert!(copy.entry_lengths().eq(buffer.table().entry_lengths()));
        Ok(())
    }

    #[test]
    fn memory_is_zeroed_even_after_reuse() -> Result {
        // Dirty a buffer, free it, and check a new one of the same shape:
        // the page allocator is likely to hand back the same pages.
        let len = MIB + 64 * KIB + 4 * KIB;
        {
            let dirty = HeapBuffer::new(len)?;
            for chunk in dirty.chunks() {
                for n in 0..chunk.page_count() {
                    chunk.fill_page(n, 0xa5);
                }
            }
        }
        let buffer = HeapBuffer::new(len)?;
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
        assert_eq!(nonzero, 0);
        Ok(())
    }

    #[test]
    fn request_beyond_ram_fails_without_allocating() {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let too_big = (sys::totalram_pages() + 1) * PAGE_SIZE;
        assert!(matches!(HeapBuffer::new(too_big), Err(e) if e == ENOMEM));
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
    }

    #[test]
    fn unaligned_or_empty_length_is_rejected() {
        assert!(matches!(HeapBuffer::new(0), Err(e) if e == EINVAL));
        assert!(matches!(HeapBuffer::new(PAGE_SIZE + 1), Err(e) if e == EINVAL));
    }

    #[test]
    fn export_then_put_releases_everything() -> Result {
        flush_releases();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let len = 3 * MIB;
        let dmabuf =
            crate::allocate_dma_buf(len, sys::O_RDWR, c"rust_dmabuf_heap_kunit".as_char_ptr())?;
        // SAFETY: `dmabuf` was just exported and we hold its only reference.
        let (size, ops) = unsafe { ((*dmabuf).size, (*dmabuf).ops) };
        assert_eq!(size, len);
        assert!(core::ptr::eq(ops, &crate::BUF_OPS));
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
            from_err_ptr(unsafe { sys::rdh_kunit_dma_device(c"rdh-camera".as_char_ptr()) })?;
        // SAFETY: As above.
        let display =
            from_err_ptr(unsafe { sys::rdh_kunit_dma_device(c"rdh-display".as_char_ptr()) })?;
        let dmabuf =
            crate::allocate_dma_buf(len, sys::O_RDWR, c"rust_dmabuf_heap_kunit".as_char_ptr())?;

        // SAFETY: `dmabuf` is live; the devices live until the test ends.
        let writer = from_err_ptr(unsafe { sys::dma_buf_attach(dmabuf, camera) })?;
        // SAFETY: As above.
        let reader = from_err_ptr(unsafe { sys::dma_buf_attach(dmabuf, display) })?;
        // SAFETY: Both attachments are live and unmapped.
        let (written, read) = unsafe {
            (
                sys::dma_buf_map_attachment_unlocked(
                    writer,
                    sys::dma_data_direction_DMA_FROM_DEVICE,
                ),
                sys::dma_buf_map_attachment_unlocked(reader, sys::dma_data_direction_DMA_TO_DEVICE),
            )
        };
        let (written, read) = (from_err_ptr(written)?, from_err_ptr(read)?);
        assert!(!core::ptr::eq(written, read));
        assert_eq!(mapped_bytes(written), len);
        assert_eq!(mapped_bytes(read), len);
        // SAFETY: `dmabuf` is live.
        let begin = unsafe {
            sys::dma_buf_begin_cpu_access(dmabuf, sys::dma_data_direction_DMA_FROM_DEVICE)
        };
        // SAFETY: As above.
        let end =
            unsafe { sys::dma_buf_end_cpu_access(dmabuf, sys::dma_data_direction_DMA_FROM_DEVICE) };
        assert_eq!((begin, end), (0, 0));

        // SAFETY: Undo the mappings and attachments made above, in order.
        unsafe {
            sys::dma_buf_unmap_attachment_unlocked(
                writer,
                written,
                sys::dma_data_direction_DMA_FROM_DEVICE,
            );
            sys::dma_buf_unmap_attachment_unlocked(
                reader,
                read,
                sys::dma_data_direction_DMA_TO_DEVICE,
            );
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
        let dmabuf =
            crate::allocate_dma_buf(len, sys::O_RDWR, c"rust_dmabuf_heap_kunit".as_char_ptr())?;
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

    #[test]
    fn vmap_sees_the_pages_and_is_refcounted() -> Result {
        let buffer = HeapBuffer::new(64 * KIB + 4 * KIB)?;
        buffer.chunks()[1].fill_page(0, 0x5a);
        let first = buffer.vmap()?;
        let second = buffer.vmap()?;
        assert_eq!(first, second);
        // SAFETY: The mapping covers the whole buffer; byte 64 KiB is the
        // first byte of the second chunk.
        let byte = unsafe { first.cast::<u8>().add(64 * KIB).read_volatile() };
        assert_eq!(byte, 0x5a);
        buffer.vunmap();
        buffer.vunmap();
        Ok(())
    }
}
