// SPDX-License-Identifier: GPL-2.0

//! What the KUnit suites need from C (`tests/kunit_shim.c`), as safe
//! functions: skipping a case, waiting for queued releases, and kernel
//! state a case checks.

use crate::{bindings as sys, page_block::PageBlock, pages::PAGE_SIZE};
use kernel::{
    prelude::*,
    time::{delay::fsleep, Delta},
};

/// Marks the running case skipped, for `why`.
pub(crate) fn skip(why: &CStr) {
    // SAFETY: Called from a running KUnit case (the shim checks).
    unsafe { sys::rdh_kunit_skip(why.as_char_ptr()) };
}

/// Waits for the dma-buf releases that `fput` queued from this kernel
/// thread.
pub(crate) fn flush_releases() {
    // SAFETY: Process context, no locks held.
    unsafe { sys::flush_delayed_fput() };
}

/// Whether `addr` lies in the vmalloc area.
pub(crate) fn is_vmalloc_addr<T>(addr: *const T) -> bool {
    // SAFETY: Only compares the address with the area's bounds.
    unsafe { sys::rdh_kunit_is_vmalloc_addr(addr.cast()) }
}

/// Whether the kernel page-table entry of `addr` is write-combined; `None`
/// where the walk is not implemented (architectures other than arm64).
///
/// `addr` must be mapped in the kernel's address space.
pub(crate) fn kernel_mapping_is_writecombine<T>(addr: *const T) -> Option<bool> {
    // SAFETY: The walk reads the kernel's page tables for `addr`.
    match unsafe { sys::rdh_kunit_kernel_mapping_is_writecombine(addr.cast()) } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// Waits until `done` holds, polling every 10 ms for at most a second
/// (the page pool's worker wakes one tick after a free); returns whether
/// it held.
pub(crate) fn within_a_second(done: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        fsleep(Delta::from_millis(10));
    }
    done()
}

/// Fills every page of `blocks` with `byte`.
pub(crate) fn fill<B: AsRef<PageBlock>>(blocks: &[B], byte: u8) {
    for block in blocks.iter().map(AsRef::as_ref) {
        for n in 0..block.page_count() {
            block.fill_page(n, byte);
        }
    }
}

/// The number of pages of `blocks` with a byte that is not zero.
pub(crate) fn nonzero_pages<B: AsRef<PageBlock>>(blocks: &[B]) -> Result<usize> {
    let mut page = KBox::new([0xffu8; PAGE_SIZE], GFP_KERNEL)?;
    let mut nonzero = 0;
    for block in blocks.iter().map(AsRef::as_ref) {
        for n in 0..block.page_count() {
            block.read_page(n, &mut page);
            if page.iter().any(|&b| b != 0) {
                nonzero += 1;
            }
        }
    }
    Ok(nonzero)
}
