// SPDX-License-Identifier: GPL-2.0

//! Kernel virtual mappings of page blocks (`vmap`), and the cache
//! maintenance of their aliases.
//!
//! C header: [`include/linux/vmalloc.h`](srctree/include/linux/vmalloc.h)

use crate::bindings;
use crate::page_block::PageBlock;
use core::{ffi::c_void, ptr::NonNull};
use kernel::{
    alloc::{flags::GFP_KERNEL, KVVec},
    prelude::*,
};

/// The address of a kernel mapping, as handed to importers by `vmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAddress(NonNull<c_void>);

impl KernelAddress {
    /// The address.
    pub fn as_ptr(self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// A contiguous kernel mapping of page blocks, unmapped on drop.
///
/// # Invariants
///
/// `addr` was returned by `vmap` for `len` bytes, and the pages stay
/// allocated while the mapping exists (their owner keeps it).
pub struct KernelMapping {
    addr: KernelAddress,
    len: usize,
}

// SAFETY: A kernel mapping may be torn down from any thread.
unsafe impl Send for KernelMapping {}
// SAFETY: Shared access only reads the address.
unsafe impl Sync for KernelMapping {}

impl KernelMapping {
    /// Maps `blocks` in order, write-combined if `write_combined`. The
    /// caller keeps the blocks until the mapping is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{
    ///     page::PAGE_SIZE,
    ///     page_block::{Gfp, PageBlock},
    ///     vmap::KernelMapping,
    /// };
    ///
    /// let blocks = [
    ///     PageBlock::alloc(Gfp::HIGHUSER | Gfp::ZERO, 0).ok_or(ENOMEM)?,
    ///     PageBlock::alloc(Gfp::HIGHUSER | Gfp::ZERO, 0).ok_or(ENOMEM)?,
    /// ];
    /// blocks[1].fill_page(0, 7);
    /// let mapping = KernelMapping::new(&blocks, false)?;
    /// // SAFETY: The mapping covers both pages.
    /// let byte = unsafe { mapping.addr().as_ptr().cast::<u8>().add(PAGE_SIZE).read() };
    /// assert_eq!(byte, 7);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new<B: AsRef<PageBlock>>(blocks: &[B], write_combined: bool) -> Result<Self> {
        let count = blocks.iter().map(|b| b.as_ref().page_count()).sum();
        // One pointer per page: 4 MiB for 2 GiB, so vmalloc-backed.
        let mut pages = KVVec::with_capacity(count, GFP_KERNEL)?;
        for block in blocks.iter().map(AsRef::as_ref) {
            for n in 0..block.page_count() {
                pages.push(block.nth_page(n), GFP_KERNEL)?;
            }
        }
        let count: u32 = pages.len().try_into().map_err(|_| ENOMEM)?;
        // SAFETY: `pages` holds `count` valid pages; `vmap` copies the
        // array.
        let vaddr = unsafe {
            bindings::vmap(
                pages.as_mut_ptr(),
                count,
                bindings::VM_MAP as usize,
                bindings::pgprot_kernel(write_combined),
            )
        };
        let addr = KernelAddress(NonNull::new(vaddr).ok_or(ENOMEM)?);
        // INVARIANT: Just returned by `vmap`.
        Ok(Self {
            addr,
            len: count as usize * kernel::page::PAGE_SIZE,
        })
    }

    /// The mapping's address.
    pub fn addr(&self) -> KernelAddress {
        self.addr
    }

    /// Invalidates aliases of the mapping before the CPU reads through it
    /// (needed on aliasing caches; a no-op on most).
    pub fn invalidate_aliases(&self) {
        for (start, size) in self.int_steps() {
            // SAFETY: `start..start + size` lies in the mapping.
            unsafe { bindings::invalidate_kernel_vmap_range(start, size) };
        }
    }

    /// Writes back the mapping's aliases after the CPU wrote through it.
    pub fn flush_aliases(&self) {
        for (start, size) in self.int_steps() {
            // SAFETY: `start..start + size` lies in the mapping.
            unsafe { bindings::flush_kernel_vmap_range(start, size) };
        }
    }

    /// The mapping in pieces whose size fits the `int` that the alias
    /// helpers take (a mapping may be 2 GiB or more).
    fn int_steps(&self) -> impl Iterator<Item = (*mut c_void, i32)> + '_ {
        const STEP: i32 = 1 << 30;
        (0..self.len).step_by(STEP as usize).map(move |offset| {
            let size = i32::try_from(self.len - offset).unwrap_or(STEP).min(STEP);
            (self.addr.as_ptr().wrapping_byte_add(offset), size)
        })
    }
}

impl Drop for KernelMapping {
    fn drop(&mut self) {
        // SAFETY: The address came from `vmap` (type invariant).
        unsafe { bindings::vunmap(self.addr.as_ptr()) };
    }
}
