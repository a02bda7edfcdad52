// SPDX-License-Identifier: GPL-2.0

//! What cache maintenance each policy costs for the pipelines the heap is
//! for, counted from the buffer's own counters: tracked against always
//! (the system heap's behaviour), coherent importers, the uncached heap.

use kernel::prelude::*;

#[kunit_tests(rust_dmabuf_heap_maintenance)]
mod tests {
    use crate::{
        buffer::HeapBuffer,
        kunit::{rig::*, support::*},
        ownership::Policy,
        pages::PAGE_SIZE,
        stats::CacheStats,
    };
    use crate::{context::HeapContext, ownership::Lines, pool::PoolMode};
    use core::sync::atomic::Ordering;
    use kernel::prelude::*;

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

    /// A buffer of pooled chunks (zeroed and cleaned by the pool's worker
    /// thread) needs no clean at its first map by a non-coherent device.
    #[test]
    fn a_pooled_buffers_first_map_cleans_nothing() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        let heap = HeapContext::new(c"kunit-pool", PoolMode::Background)?;
        let pool = heap.pool();
        if pool.limit_bytes() == 0 || crate::dma_heap::mem_accounting() {
            skip(c"the page pool is off on this boot");
            return Ok(());
        }
        drop(HeapBuffer::new(heap.clone(), MIB)?);
        assert!(within_a_second(
            || pool.levels().zeroed_pages == MIB / PAGE_SIZE
        ));
        let buffer = HeapBuffer::new(heap.clone(), MIB)?;
        assert_eq!(buffer.snapshot().0.lines(), Lines::CLEAN);
        let mut rig = Rig::of(buffer)?;
        rig.map_new(false, TO_DEVICE)?;
        assert_eq!(rig.stats().clean_bytes, 0);
        Ok(())
    }

    /// One pipeline step on `rig` with `dev`: the device writes, the CPU
    /// reads, the device is unmapped; returns the buffer's counters.
    fn device_writes_cpu_reads(
        rig: &mut Rig,
        dev: *mut crate::bindings::device,
    ) -> Result<CacheStats> {
        rig.map(dev, FROM_DEVICE)?;
        assert_eq!(rig.cpu_access(FROM_DEVICE, FROM_DEVICE), (0, 0));
        rig.unmap_last();
        Ok(rig.stats())
    }

    /// A 32-bit device maps a DMA32 heap's buffer directly (the mapping
    /// neither bounces nor syncs itself) at the maintenance a 64-bit
    /// device costs on a buffer of any memory; a buffer above 4 GiB
    /// bounces for it. The device is addressing-limited only on boots with
    /// RAM above 4 GiB (the `dma32` topology's); elsewhere it is skipped.
    #[test]
    fn a_32_bit_device_maps_a_dma32_buffer_directly_at_the_usual_maintenance() -> Result {
        if skipped_where_dma_bounces() {
            return Ok(());
        }
        if !cfg!(CONFIG_ZONE_DMA32) {
            skip(c"no ZONE_DMA32 in this kernel");
            return Ok(());
        }
        let any = heap()?;
        let dma32 = any.dma32(c"kunit-dma32")?;
        let mut rig = Rig::of(HeapBuffer::new(dma32.clone(), MIB)?)?;
        let dev = rig.device_32bit()?;
        // SAFETY: A live device.
        if !unsafe { crate::bindings::dma_addressing_limited(dev) } {
            skip(c"RAM ends below 4 GiB: a 32-bit device reaches every page");
            return Ok(());
        }
        let limited = |heap: &HeapContext| {
            let reason = crate::stats::BOUNCES
                .iter()
                .position(|&b| b == crate::dma_mapping::Bounce::AddressingLimited);
            reason.map_or(0, |i| {
                heap.totals().bounce_attachments[i].load(Ordering::Relaxed)
            })
        };
        let reached = |heap: &HeapContext| {
            heap.totals()
                .within_reach_attachments
                .load(Ordering::Relaxed)
        };
        rig.map(dev, FROM_DEVICE)?;
        assert!(rig.last_mapping_is_direct());
        rig.unmap_last();
        assert_eq!((reached(&dma32), limited(&dma32)), (1, 0));
        let dma32_stats = device_writes_cpu_reads(&mut rig, dev)?;
        // The same on a buffer of any memory with a 64-bit device.
        let mut plain = Rig::of(HeapBuffer::new(any.clone(), MIB)?)?;
        let wide = plain.device(false)?;
        plain.map(wide, FROM_DEVICE)?;
        plain.unmap_last();
        assert_eq!(device_writes_cpu_reads(&mut plain, wide)?, dma32_stats);
        // A buffer of any memory bounces for the 32-bit device, unless it
        // happens to lie below 4 GiB.
        let (bounced, within) = (limited(&any), reached(&any));
        let mut other = Rig::of(HeapBuffer::new(any.clone(), MIB)?)?;
        other.map(dev, FROM_DEVICE)?;
        let within_now = reached(&any) - within;
        assert_eq!(limited(&any) - bounced + within_now, 1);
        assert_eq!(other.last_mapping_is_direct(), within_now == 1);
        Ok(())
    }
}
