// SPDX-License-Identifier: GPL-2.0

//! What the page allocator has: the counters an allocator of many pages
//! checks before it takes them.
//!
//! C header: [`include/linux/vmstat.h`](srctree/include/linux/vmstat.h)

use crate::bindings;

/// Pages of RAM the kernel manages.
///
/// # Examples
///
/// ```
/// use kernel::mm_stat;
///
/// assert!(mm_stat::totalram_pages() > 0);
/// assert!(mm_stat::free_cma_pages() <= mm_stat::free_pages());
/// assert!(mm_stat::free_pages() <= mm_stat::totalram_pages());
/// ```
pub fn totalram_pages() -> usize {
    // SAFETY: Reads a global counter.
    unsafe { bindings::totalram_pages() }
}

/// Free pages, free CMA pages included.
pub fn free_pages() -> usize {
    // SAFETY: Reads a global counter.
    unsafe { bindings::global_zone_page_state(bindings::zone_stat_item_NR_FREE_PAGES) }
}

/// Free CMA pages: they serve only movable allocations.
pub fn free_cma_pages() -> usize {
    // SAFETY: Reads a global counter.
    unsafe { bindings::global_zone_page_state(bindings::zone_stat_item_NR_FREE_CMA_PAGES) }
}

/// Pages the kernel could hand out without swapping, as `MemAvailable`
/// says (free CMA pages included).
pub fn available_pages() -> usize {
    // SAFETY: Reads global counters.
    let available = unsafe { bindings::si_mem_available() };
    usize::try_from(available).unwrap_or(0)
}
