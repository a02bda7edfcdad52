// SPDX-License-Identifier: GPL-2.0

//! The memory behind a buffer: physically contiguous chunks of order 9, 8,
//! 4 or 0 (2 MiB, 1 MiB, 64 KiB, 4 KiB with 4 KiB pages), the sizes IOMMUs
//! map efficiently: the upstream system heap's (8, 4, 0), and before them
//! 2 MiB where the page allocator has such a block, which an IOMMU and the
//! CPU's page tables map with one entry (a PMD's worth).

use crate::{
    dma_heap, mm_stat,
    page_block::{Gfp, PageBlock},
    task_signal::fatal_signal_pending,
};
use core::sync::atomic::AtomicUsize;
use kernel::{
    alloc::{flags::GFP_KERNEL, KVVec},
    prelude::*,
};

/// Page orders tried for each chunk, largest first.
pub(crate) const ORDERS: [u32; 4] = [9, 8, 4, 0];

/// Bytes of chunk memory of zone [`Zone::Any`] currently allocated by this
/// module (all heaps, all buffers, the pool). Tests use it to prove that
/// every path frees what it took.
pub(crate) static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The same for zone [`Zone::Dma32`].
pub(crate) static LIVE_DMA32_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Size of a page in bytes.
pub(crate) const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// Where a heap's chunks come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Zone {
    /// Any memory.
    Any,
    /// Below 4 GiB (`ZONE_DMA32` and the zones under it), which a 32-bit DMA
    /// master reaches without bouncing. No fallback above: when the zone
    /// is exhausted, allocation fails with `ENOMEM`.
    Dma32,
}

impl Zone {
    /// The zone's flags.
    fn gfp(self) -> Gfp {
        match self {
            // `__GFP_HIGHMEM` with `__GFP_DMA32` is an invalid zone mix.
            Zone::Any => Gfp::HIGHUSER,
            Zone::Dma32 => Gfp::USER | Gfp::DMA32,
        }
    }

    /// Whether `chunk` lies within the zone. With `ZONE_DMA32` (the DMA32
    /// heaps exist only there) the page allocator keeps `__GFP_DMA32`
    /// below 4 GiB on arm64, whose DMA zones end at 4 GiB at the most; the
    /// check makes sure of it for any other layout, and a chunk above is
    /// refused rather than handed to a 32-bit device.
    pub(crate) fn holds(self, chunk: &PageChunk) -> bool {
        match self {
            Zone::Any => true,
            Zone::Dma32 => chunk.phys_end() <= DMA32_END,
        }
    }

    /// Bytes of chunk memory of this zone allocated now.
    pub(crate) fn live_bytes(self) -> &'static AtomicUsize {
        match self {
            Zone::Any => &LIVE_BYTES,
            Zone::Dma32 => &LIVE_DMA32_BYTES,
        }
    }

    /// The zone's name in debugfs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Zone::Any => "any",
            Zone::Dma32 => "dma32",
        }
    }
}

/// The end of the memory a 32-bit DMA address reaches.
pub(crate) const DMA32_END: u64 = 1 << 32;

/// High orders are opportunistic: no reclaim, no retries, no warning.
fn high_order_gfp(zone: Zone) -> Gfp {
    (zone.gfp() | Gfp::ZERO | Gfp::NOWARN | Gfp::NORETRY) & !Gfp::RECLAIM | Gfp::COMP
}

/// Order 0 may reclaim but fails with `ENOMEM` rather than invoking the
/// OOM killer (`__GFP_RETRY_MAYFAIL`), because dma-buf memory is not
/// charged to the allocating process and the killer would pick an
/// innocent one.
fn low_order_gfp(zone: Zone) -> Gfp {
    zone.gfp() | Gfp::ZERO | Gfp::NOWARN | Gfp::RETRY_MAYFAIL
}

/// A zeroed block of `1 << order` pages of a buffer or the pool, counted
/// in its zone's [`Zone::live_bytes`] while it exists.
pub(crate) type PageChunk = PageBlock;

/// Allocates a zeroed chunk of `order` in `zone`; `None` if there is none.
fn alloc_chunk(order: u32, zone: Zone) -> Option<PageChunk> {
    let mut gfp = if order > 0 {
        high_order_gfp(zone)
    } else {
        low_order_gfp(zone)
    };
    // Charge the memory cgroup like the system heap does when the dma-heap
    // core asks for it.
    if dma_heap::mem_accounting() {
        gfp = gfp | Gfp::ACCOUNT;
    }
    let chunk = PageBlock::alloc(gfp, order)?.counted_in(zone.live_bytes());
    zone.holds(&chunk).then_some(chunk)
}

/// Whether `zone` has memory at all: one page of it can be had. (A board
/// whose RAM starts above 4 GiB has none below.)
pub(crate) fn zone_has_memory(zone: Zone) -> bool {
    alloc_chunk(0, zone).is_some()
}

/// Free pages an unmovable allocation can take: free CMA pages do not
/// count (two per-cpu-summed counters: much cheaper than
/// [`available_pages`]).
pub(crate) fn free_pages() -> usize {
    mm_stat::free_pages().saturating_sub(mm_stat::free_cma_pages())
}

/// What the kernel could hand out without swapping (`MemAvailable`), less
/// free CMA pages: they serve only movable allocations, and a heap
/// buffer's pages are not movable.
fn available_pages() -> usize {
    mm_stat::available_pages().saturating_sub(mm_stat::free_cma_pages())
}

/// Whether taking `pages` more pages leaves the reserve available. Free
/// pages alone answer it when there are plenty: twice the reserve covers
/// the watermarks that `MemAvailable` subtracts (`totalreserve_pages`, not
/// exported, a few per mille of RAM). Pages taken from the page pool count
/// like any others: `MemAvailable` includes the pool (it is accounted as
/// reclaimable), and a pooled page in a buffer is no longer available.
fn leaves_reserve(pages: usize) -> bool {
    let reserve = mm_stat::totalram_pages() / RESERVE_DIVISOR;
    if pages.saturating_add(2 * reserve) <= free_pages() {
        return true;
    }
    pages <= available_pages().saturating_sub(reserve)
}

/// Pages missing for free memory to be comfortable: twice the reserve,
/// well above the watermarks. Page pools keep nothing more while any are
/// missing, and give back what they hold until none are.
pub(crate) fn short_of_comfort() -> usize {
    (2 * (mm_stat::totalram_pages() / RESERVE_DIVISOR)).saturating_sub(free_pages())
}

/// The share of RAM an allocation must leave available to everything else:
/// 1/24. Without it, buffers could take memory down to the watermarks, and
/// the next ordinary allocation (a page fault, a slab refill) would invoke
/// the OOM killer, which does not see dma-buf memory and so kills an
/// innocent process. (1/32 was too little: on the debug kernel a process
/// touching 3/128 of RAM was killed with 1/30 of RAM available.)
const RESERVE_DIVISOR: usize = 24;

/// A buffer's chunks, largest first. Most buffers up to 1 MiB have one,
/// kept inline: allocation and free then cost no vector.
pub(crate) enum Chunks {
    /// No chunk (a buffer's memory after it went back).
    None,
    One(PageChunk),
    /// Vmalloc-backed when long (a fragmented 1 GiB buffer has 262144).
    Many(KVVec<PageChunk>),
}

impl Chunks {
    /// The chunks as a slice.
    pub(crate) fn as_slice(&self) -> &[PageChunk] {
        match self {
            Chunks::None => &[],
            Chunks::One(chunk) => core::slice::from_ref(chunk),
            Chunks::Many(chunks) => chunks,
        }
    }

    fn push(&mut self, chunk: PageChunk) -> Result {
        match core::mem::replace(self, Chunks::None) {
            Chunks::None => *self = Chunks::One(chunk),
            Chunks::One(first) => {
                let mut chunks = KVVec::with_capacity(2, GFP_KERNEL)?;
                chunks.push(first, GFP_KERNEL)?;
                chunks.push(chunk, GFP_KERNEL)?;
                *self = Chunks::Many(chunks);
            }
            Chunks::Many(mut chunks) => {
                // On failure `chunks` and `chunk` are freed, as the caller
                // would free them.
                chunks.push(chunk, GFP_KERNEL)?;
                *self = Chunks::Many(chunks);
            }
        }
        Ok(())
    }

    /// Gives every chunk to `f`, in order, and returns the emptied
    /// container: a long vector lives in vmalloc memory, and freeing it may
    /// sleep, so the caller drops it where sleeping is allowed (not under a
    /// spinlock).
    #[must_use = "drop the emptied container where sleeping is allowed"]
    pub(crate) fn drain(self, f: impl FnMut(PageChunk)) -> Chunks {
        match self {
            Chunks::None => Chunks::None,
            Chunks::One(chunk) => {
                let mut f = f;
                f(chunk);
                Chunks::None
            }
            Chunks::Many(mut chunks) => {
                chunks.drain_all().for_each(f);
                Chunks::Many(chunks)
            }
        }
    }
}

/// Allocates `len` bytes (a non-zero multiple of the page size) as zeroed
/// chunks in `zone`, each no larger than the previous one, like the system
/// heap; each chunk comes from `pooled` (which must hold chunks of `zone`)
/// if it has one of that order, else from the page allocator, and is then
/// given to `fresh` (which may fail the allocation). Returns the chunks and
/// how many came from `pooled`.
///
/// Fails with `ENOMEM` up front when `len` would leave less than the reserve
/// available (so always for more than the machine's RAM), whenever the page
/// allocator gives up (never the OOM killer), and with `EINTR` when the
/// caller has a fatal signal pending. Whatever was allocated before a
/// failure is freed.
pub(crate) fn alloc_chunks(
    len: usize,
    zone: Zone,
    mut pooled: impl FnMut(u32) -> Option<PageChunk>,
    mut fresh: impl FnMut(&PageChunk) -> Result,
) -> Result<(Chunks, usize)> {
    if len == 0 || len % PAGE_SIZE != 0 {
        return Err(EINVAL);
    }
    if !leaves_reserve(len / PAGE_SIZE) {
        return Err(ENOMEM);
    }
    let mut chunks = Chunks::None;
    let mut from_pool = 0;
    let mut remaining = len;
    let mut max_order = ORDERS[0];
    while remaining > 0 {
        // Stop early for a killed process: the memory would go unused.
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        // Per order, largest first: the pool, then the page allocator (a
        // pooled small chunk must not stand in for a large one).
        let fits = |order: u32| order <= max_order && PAGE_SIZE << order <= remaining;
        let (chunk, was_pooled) = ORDERS
            .iter()
            .filter(|&&order| fits(order))
            .find_map(|&order| match pooled(order) {
                Some(chunk) => Some((chunk, true)),
                None => alloc_chunk(order, zone).map(|chunk| (chunk, false)),
            })
            .ok_or(ENOMEM)?;
        if was_pooled {
            from_pool += 1;
        } else {
            fresh(&chunk)?;
        }
        remaining -= chunk.size();
        max_order = chunk.order();
        chunks.push(chunk)?;
    }
    Ok((chunks, from_pool))
}

#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[kunit_tests(rust_dmabuf_heap_pages)]
mod tests {
    use super::*;
    use crate::{
        kunit::support::{self, fill, nonzero_pages},
        sg_table::BlockTable,
    };
    use core::sync::atomic::Ordering;

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;

    /// `len` bytes of fresh chunks (no pool).
    fn fresh(len: usize) -> Result<Chunks> {
        Ok(alloc_chunks(len, Zone::Any, |_| None, |_| Ok(()))?.0)
    }

    fn orders(chunks: &Chunks) -> Result<KVec<u32>> {
        let mut orders = KVec::new();
        for chunk in chunks.as_slice() {
            orders.push(chunk.order(), GFP_KERNEL)?;
        }
        Ok(orders)
    }

    #[test]
    fn chunks_are_largest_first_and_cover_the_length() -> Result {
        // 5 MiB + 3 * 64 KiB + 5 * 4 KiB: on a fresh machine every order is
        // available, so the mix is exact.
        let len = 5 * MIB + 3 * 64 * KIB + 5 * 4 * KIB;
        let chunks = fresh(len)?;
        assert_eq!(
            &orders(&chunks)?[..],
            &[9, 9, 8, 4, 4, 4, 0, 0, 0, 0, 0][..]
        );
        let sizes = chunks.as_slice().iter().map(|c| c.size());
        assert_eq!(sizes.sum::<usize>(), len);
        Ok(())
    }

    #[test]
    fn orders_never_increase() -> Result {
        let orders = orders(&fresh(5 * MIB + 68 * KIB)?)?;
        assert!(orders.windows(2).all(|w| w[0] >= w[1]));
        assert!(orders.iter().all(|o| ORDERS.contains(o)));
        Ok(())
    }

    #[test]
    fn a_pooled_chunk_of_each_order_comes_first() -> Result {
        let mut offered = KVec::new();
        let mut fresh = KVec::new();
        let (chunks, from_pool) = alloc_chunks(
            MIB + 64 * KIB,
            Zone::Any,
            |order| {
                let _ = offered.push(order, GFP_KERNEL);
                // The pool has 64 KiB chunks only.
                (order == 4).then(|| alloc_chunk(4, Zone::Any)).flatten()
            },
            |chunk| fresh.push(chunk.order(), GFP_KERNEL).map_err(Into::into),
        )?;
        assert_eq!(&orders(&chunks)?[..], &[8, 4][..]);
        assert_eq!(from_pool, 1);
        // Only the chunk from the page allocator was handed to `fresh`.
        assert_eq!(&fresh[..], &[8][..]);
        // The pool is asked first for every chunk, largest order first.
        assert_eq!(&offered[..], &[8, 4][..]);
        Ok(())
    }

    #[test]
    fn a_table_has_one_entry_per_chunk() -> Result {
        let len = MIB + 64 * KIB + 4 * KIB;
        let chunks = fresh(len)?;
        let table = BlockTable::new(chunks.as_slice(), usize::MAX)?;
        assert_eq!(table.len(), 3);
        let sizes = chunks.as_slice().iter().map(|chunk| chunk.size());
        assert!(table.entry_lengths().eq(sizes));
        Ok(())
    }

    #[test]
    fn tables_split_chunks_to_the_devices_segment_limit() -> Result {
        // swiotlb maps at most 256 KiB at once.
        let chunks = fresh(2 * MIB + 64 * KIB + 4 * KIB)?;
        let table = BlockTable::new(chunks.as_slice(), 256 * KIB)?;
        let mut lengths = KVec::new();
        for length in table.entry_lengths() {
            lengths.push(length, GFP_KERNEL)?;
        }
        assert_eq!(&lengths[..8], &[256 * KIB; 8][..]);
        assert_eq!(&lengths[8..], &[64 * KIB, 4 * KIB][..]);
        // Pieces of a chunk are consecutive pages of it, in order.
        let mut pfns = table.entry_pfns();
        let first = pfns.next().unwrap_or(0);
        assert_eq!(pfns.next(), Some(first + 64));
        Ok(())
    }

    #[test]
    fn memory_is_zeroed_even_after_reuse() -> Result {
        // Dirty chunks, free them, and check new ones of the same shape:
        // the page allocator is likely to hand back the same pages.
        let len = MIB + 64 * KIB + 4 * KIB;
        fill(fresh(len)?.as_slice(), 0xa5);
        assert_eq!(nonzero_pages(fresh(len)?.as_slice())?, 0);
        Ok(())
    }

    #[test]
    fn request_beyond_ram_fails_without_allocating() {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let too_big = (mm_stat::totalram_pages() + 1) * PAGE_SIZE;
        assert!(matches!(fresh(too_big), Err(e) if e == ENOMEM));
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
    }

    /// The page allocator, asked with the DMA32 zone's flags (no check of
    /// ours in between), gives pages below 4 GiB at every order: what
    /// [`Zone::holds`] only makes sure of. Meaningful on boots with RAM
    /// above 4 GiB (the `dma32` topology's 6 GiB), where chunks of any
    /// zone come from above first. A DMA32 buffer is whole and zeroed.
    #[test]
    fn dma32_chunks_lie_below_4_gib() -> Result {
        if !cfg!(CONFIG_ZONE_DMA32) {
            support::skip(c"no ZONE_DMA32 in this kernel");
            return Ok(());
        }
        for order in ORDERS {
            let gfp = if order > 0 {
                high_order_gfp(Zone::Dma32)
            } else {
                low_order_gfp(Zone::Dma32)
            };
            for _ in 0..4 {
                let block = PageBlock::alloc(gfp, order).ok_or(ENOMEM)?;
                assert!(block.phys_end() <= DMA32_END);
            }
        }
        let len = 8 * MIB + 64 * KIB + 4 * KIB;
        let dma32 = alloc_chunks(len, Zone::Dma32, |_| None, |_| Ok(()))?.0;
        let sizes = dma32.as_slice().iter().map(|c| c.size());
        assert_eq!(sizes.sum::<usize>(), len);
        assert_eq!(nonzero_pages(dma32.as_slice())?, 0);
        Ok(())
    }

    #[test]
    fn unaligned_or_empty_length_is_rejected() {
        assert!(matches!(fresh(0), Err(e) if e == EINVAL));
        assert!(matches!(fresh(PAGE_SIZE + 1), Err(e) if e == EINVAL));
    }

    #[test]
    fn chunks_count_in_live_bytes_while_they_exist() -> Result {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let chunks = fresh(MIB + 4 * KIB)?;
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before + MIB + 4 * KIB);
        drop(chunks);
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), before);
        Ok(())
    }

    /// Free CMA pages serve only movable allocations, so the reserve
    /// check does not count them (the debug kernel has a CMA area).
    #[test]
    fn the_reserve_check_does_not_count_free_cma_pages() {
        let cma = mm_stat::free_cma_pages();
        if cma < 1024 {
            support::skip(c"no free CMA area on this boot");
            return;
        }
        // Other allocations may come and go meanwhile: half the CMA area
        // of slack.
        assert!(free_pages() + cma / 2 <= mm_stat::free_pages());
    }
}
