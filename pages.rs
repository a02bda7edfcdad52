// SPDX-License-Identifier: GPL-2.0

//! The memory behind a buffer: physically contiguous chunks of order 8, 4 or
//! 0 (1 MiB, 64 KiB, 4 KiB with 4 KiB pages), the sizes IOMMUs map
//! efficiently, as the upstream system heap chooses them.

use crate::sys;
use core::{ffi::c_void, ptr::NonNull, sync::atomic::AtomicUsize, sync::atomic::Ordering};
use kernel::{
    alloc::{flags::GFP_KERNEL, KVVec},
    prelude::*,
};

/// Page orders tried for each chunk, largest first.
pub(crate) const ORDERS: [u32; 3] = [8, 4, 0];

/// Bytes of chunk memory currently allocated by this module (all heaps,
/// all buffers). Tests use it to prove that every path frees what it took.
pub(crate) static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Size of a page in bytes.
pub(crate) const PAGE_SIZE: usize = sys::RDH_PAGE_SIZE;

/// A physically contiguous, zeroed run of `1 << order` pages.
///
/// # Invariants
///
/// `page` points to the head of a block of `1 << order` pages allocated with
/// `alloc_pages(_, order)` and owned exclusively by this chunk.
pub(crate) struct PageChunk {
    page: NonNull<sys::page>,
    order: u32,
}

// SAFETY: A chunk is plain memory owned by one object; freeing it from any
// thread is allowed.
unsafe impl Send for PageChunk {}
// SAFETY: Shared access only reads the page pointer and order.
unsafe impl Sync for PageChunk {}

impl PageChunk {
    /// Allocates one zeroed chunk of the given order, or `None`.
    fn alloc(order: u32) -> Option<Self> {
        let mut gfp = if order > 0 {
            sys::RDH_GFP_HIGH_ORDER
        } else {
            sys::RDH_GFP_LOW_ORDER
        };
        // Charge the memory cgroup like the system heap does when the
        // dma-heap core asks for it.
        if mem_accounting_enabled() {
            gfp |= sys::RDH_GFP_ACCOUNT;
        }
        // SAFETY: `alloc_pages` may be called with any flags and order; it
        // returns NULL or an exclusively owned block.
        let page = NonNull::new(unsafe { sys::alloc_pages(gfp, order) })?;
        LIVE_BYTES.fetch_add(PAGE_SIZE << order, Ordering::Relaxed);
        // INVARIANT: `page` was just allocated with `order` and is ours.
        Some(Self { page, order })
    }

    /// Gives up ownership of the block, e.g. to put it on a page list
    /// (`pool.rs`); [`Self::from_raw`] takes it back.
    pub(crate) fn into_raw(self) -> (NonNull<sys::page>, u32) {
        let this = core::mem::ManuallyDrop::new(self);
        (this.page, this.order)
    }

    /// Takes back a block given up by [`Self::into_raw`].
    ///
    /// # Safety
    ///
    /// `page` and `order` come from one call of [`Self::into_raw`], and
    /// nothing else owns the block any more.
    pub(crate) unsafe fn from_raw(page: NonNull<sys::page>, order: u32) -> Self {
        // INVARIANT: By the safety requirements the block is ours again.
        Self { page, order }
    }

    /// Writes zeroes to the whole chunk (through the CPU cache: the lines
    /// are dirty afterwards). May sleep.
    pub(crate) fn zero(&self) {
        // SAFETY: By the type invariant the block has `order` and is ours.
        unsafe { sys::rdh_clear_pages(self.page.as_ptr(), self.order) };
    }

    /// The page order of this chunk.
    pub(crate) fn order(&self) -> u32 {
        self.order
    }

    /// The chunk size in bytes.
    pub(crate) fn size(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Number of 4 KiB pages in the chunk.
    pub(crate) fn page_count(&self) -> usize {
        1 << self.order
    }

    /// The head page.
    pub(crate) fn head(&self) -> *mut sys::page {
        self.page.as_ptr()
    }

    /// The `n`-th page of the chunk.
    pub(crate) fn nth_page(&self, n: usize) -> *mut sys::page {
        debug_assert!(n < self.page_count());
        // SAFETY: By the type invariant the chunk has `page_count()` pages
        // and `n` is in range.
        unsafe { sys::rdh_nth_page(self.page.as_ptr(), n) }
    }

    /// Copies page `n` (which must be in range) into `out` through a
    /// temporary kernel mapping.
    #[cfg(rdh_kunit)]
    pub(crate) fn read_page(&self, n: usize, out: &mut [u8; PAGE_SIZE]) {
        let page = self.nth_page(n);
        // SAFETY: `page` is a valid page owned by this chunk.
        let vaddr = unsafe { sys::kmap_local_page(page) };
        // SAFETY: `vaddr` maps `PAGE_SIZE` readable bytes; `out` is a
        // distinct kernel buffer of the same size.
        unsafe { core::ptr::copy_nonoverlapping(vaddr.cast::<u8>(), out.as_mut_ptr(), PAGE_SIZE) };
        // SAFETY: `vaddr` was returned by `kmap_local_page` above.
        unsafe { sys::kunmap_local(vaddr) };
    }

    /// Fills page `n` (which must be in range) with `byte`.
    #[cfg(rdh_kunit)]
    pub(crate) fn fill_page(&self, n: usize, byte: u8) {
        let page = self.nth_page(n);
        // SAFETY: `page` is a valid page owned by this chunk.
        let vaddr = unsafe { sys::kmap_local_page(page) };
        // SAFETY: `vaddr` maps `PAGE_SIZE` writable bytes.
        unsafe { core::ptr::write_bytes(vaddr.cast::<u8>(), byte, PAGE_SIZE) };
        // SAFETY: `vaddr` was returned by `kmap_local_page` above.
        unsafe { sys::kunmap_local(vaddr) };
    }
}

impl Drop for PageChunk {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own this block of `order`.
        unsafe { sys::__free_pages(self.page.as_ptr(), self.order) };
        LIVE_BYTES.fetch_sub(self.size(), Ordering::Relaxed);
    }
}

/// The kernel virtual address of a buffer's [`KernelMapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KernelAddress(NonNull<c_void>);

impl KernelAddress {
    /// The address, for C (`iosys_map`, the vmap range helpers).
    pub(crate) fn as_ptr(self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// A kernel virtual mapping of all pages of some chunks (`vmap`).
///
/// # Invariants
///
/// `addr` was returned by `vmap` for those pages and is unmapped on drop;
/// the pages outlive the mapping (its owner drops it first).
pub(crate) struct KernelMapping {
    addr: KernelAddress,
}

// SAFETY: A kernel mapping may be torn down from any thread.
unsafe impl Send for KernelMapping {}

impl KernelMapping {
    /// Maps all pages of `chunks`, which must outlive the mapping:
    /// write-combined if `write_combined` (the uncached heap's buffers).
    pub(crate) fn new(chunks: &[PageChunk], write_combined: bool) -> Result<Self> {
        let count = chunks.iter().map(PageChunk::page_count).sum();
        // One pointer per page: 4 MiB for 2 GiB, so vmalloc-backed.
        let mut pages = KVVec::with_capacity(count, GFP_KERNEL)?;
        for chunk in chunks {
            for n in 0..chunk.page_count() {
                pages.push(chunk.nth_page(n), GFP_KERNEL)?;
            }
        }
        let count = pages.len().try_into().map_err(|_| ENOMEM)?;
        // SAFETY: `pages` holds `count` valid pages.
        let vaddr =
            NonNull::new(unsafe { sys::rdh_vmap_pages(pages.as_mut_ptr(), count, write_combined) })
                .ok_or(ENOMEM)?;
        // INVARIANT: Just returned by `vmap`.
        Ok(Self {
            addr: KernelAddress(vaddr),
        })
    }

    /// The mapping's address.
    pub(crate) fn addr(&self) -> KernelAddress {
        self.addr
    }
}

impl Drop for KernelMapping {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the address came from `vmap`.
        unsafe { sys::vunmap(self.addr.as_ptr()) };
    }
}

/// Whether the dma-heap core asks heaps to charge the memory cgroup.
pub(crate) fn mem_accounting_enabled() -> bool {
    // SAFETY: A read-only (0444) parameter of the dma-heap core, set before
    // any heap can allocate.
    unsafe { sys::mem_accounting }
}

/// Whether the current task has been killed.
fn fatal_signal_pending() -> bool {
    // SAFETY: Looks at `current`, which is always valid in process context,
    // the only context allocation runs in.
    unsafe { sys::rdh_fatal_signal_pending() }
}

/// Number of pages of RAM managed by the kernel.
pub(crate) fn totalram_pages() -> usize {
    // SAFETY: Reads a global counter; no preconditions.
    unsafe { sys::rdh_totalram_pages() as usize }
}

/// Pages the kernel could hand out now without swapping (`MemAvailable`),
/// free CMA pages excepted.
fn available_pages() -> usize {
    // SAFETY: Reads global counters; no preconditions.
    unsafe { sys::rdh_available_pages() }.max(0) as usize
}

/// Free pages an unmovable allocation can take: free CMA pages do not
/// count (two per-cpu-summed counters: much cheaper than
/// [`available_pages`]).
pub(crate) fn free_pages() -> usize {
    // SAFETY: Reads a global counter; no preconditions.
    unsafe { sys::rdh_free_pages() as usize }
}

/// Whether taking `pages` more pages leaves the reserve available. Free
/// pages alone answer it when there are plenty: twice the reserve covers
/// the watermarks that `MemAvailable` subtracts (`totalreserve_pages`, not
/// exported, a few per mille of RAM). Pages taken from the page pool count
/// like any others: `MemAvailable` includes the pool (it is accounted as
/// reclaimable), and a pooled page in a buffer is no longer available.
fn leaves_reserve(pages: usize) -> bool {
    let reserve = totalram_pages() / RESERVE_DIVISOR;
    if pages.saturating_add(2 * reserve) <= free_pages() {
        return true;
    }
    pages <= available_pages().saturating_sub(reserve)
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

    /// The same chunks in a vector with room for `room` of them, and the
    /// vector's address: beyond kmalloc's largest size it lives in vmalloc
    /// memory.
    #[cfg(rdh_kunit)]
    pub(crate) fn with_room(self, room: usize) -> Result<(Chunks, *const u8)> {
        let mut chunks = KVVec::with_capacity(room, GFP_KERNEL)?;
        let mut result = Ok(());
        let rest = self.drain(|chunk| {
            if result.is_ok() {
                result = chunks.push(chunk, GFP_KERNEL).map_err(Error::from);
            }
        });
        drop(rest);
        result?;
        let addr = chunks.as_ptr().cast();
        Ok((Chunks::Many(chunks), addr))
    }
}

/// Allocates `len` bytes (a non-zero multiple of the page size) as zeroed
/// chunks, each no larger than the previous one, like the system heap; each
/// chunk comes from `pooled` if it has one of that order, else from the
/// page allocator. Returns the
/// chunks and how many came from `pooled`.
///
/// Fails with `ENOMEM` up front when `len` would leave less than the reserve
/// available (so always for more than the machine's RAM), whenever the page
/// allocator gives up (never the OOM killer), and with `EINTR` when the
/// caller has a fatal signal pending. Whatever was allocated before a
/// failure is freed.
pub(crate) fn alloc_chunks(
    len: usize,
    mut pooled: impl FnMut(u32) -> Option<PageChunk>,
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
        let chunk = ORDERS
            .iter()
            .filter(|&&order| fits(order))
            .find_map(|&order| match pooled(order) {
                Some(chunk) => {
                    from_pool += 1;
                    Some(chunk)
                }
                None => PageChunk::alloc(order),
            })
            .ok_or(ENOMEM)?;
        remaining -= chunk.size();
        max_order = chunk.order();
        chunks.push(chunk)?;
    }
    Ok((chunks, from_pool))
}
