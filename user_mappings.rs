// SPDX-License-Identifier: GPL-2.0

//! User mappings of a buffer whose page-table entries come from a fault
//! handler, so that the heap sees every user access that is not bracketed
//! by `DMA_BUF_IOCTL_SYNC` (`unbracketed_cpu=trap`, see `ownership.rs`,
//! "User space that skips SYNC").
//!
//! Every dma-buf has its own file and so its own address space: revoking
//! the entries of all its user mappings, in every process, is one
//! `unmap_mapping_range`. A fault maps the whole vma at once (one fault per
//! access window, not per page), or, inside a range bracket only, that
//! range: read-only for a read, writable for a write; a write to a
//! read-only entry comes in through `pfn_mkwrite`.

use crate::{
    ownership::Range,
    pages::{PageChunk, PAGE_SIZE},
    sys,
};
use kernel::prelude::*;

/// What a fault handler returns (`vm_fault_t`).
pub(crate) type VmFault = sys::vm_fault_t;

/// A user vma being set up by `mmap`, or faulting.
///
/// # Invariants
///
/// `vma` is a valid vma whose mmap lock (or vma lock) is held for as long
/// as this value exists; `ops` are the handlers of the exporter it maps.
pub(crate) struct Vma {
    vma: *mut sys::vm_area_struct,
    ops: &'static sys::vm_operations_struct,
}

impl Vma {
    /// Wraps `vma`, whose faults `ops` would handle.
    ///
    /// # Safety
    ///
    /// `vma` must be valid, with its mmap lock or vma lock held, for the
    /// lifetime of the returned value.
    pub(crate) unsafe fn from_raw(
        vma: *mut sys::vm_area_struct,
        ops: &'static sys::vm_operations_struct,
    ) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { vma, ops }
    }

    /// Start and end address and first buffer page of the vma.
    pub(crate) fn range(&self) -> (usize, usize, usize) {
        // SAFETY: By the type invariant the vma is valid.
        unsafe {
            let range = &(*self.vma).__bindgen_anon_1.__bindgen_anon_1;
            (range.vm_start, range.vm_end, (*self.vma).vm_pgoff)
        }
    }

    /// Makes a private mapping read-only for good, so that it is not
    /// copy-on-write (a pfn mapping cannot be); fails with `EINVAL` for a
    /// private writable one. First thing in `mmap`.
    pub(crate) fn forbid_cow(&self) -> Result {
        // SAFETY: By the type invariant; the core calls `mmap` with the mmap
        // lock held for writing, as changing the flags requires.
        kernel::error::to_result(unsafe { sys::rdh_vma_forbid_cow(self.vma) })
    }

    /// Sets up the vma for mapping on faults (the exporter's handlers);
    /// after [`Self::forbid_cow`].
    pub(crate) fn trap(&self) {
        // SAFETY: By the type invariant; the core calls `mmap` with the mmap
        // lock held for writing, as changing the flags requires.
        unsafe { sys::rdh_vma_trap(self.vma, self.ops) }
    }

    /// Makes the mapping write-combined (the uncached heap's buffers);
    /// before any entry exists, so before [`Self::remap`].
    pub(crate) fn write_combine(&self) {
        // SAFETY: By the type invariant; the core calls `mmap` with the mmap
        // lock held for writing, before the vma has entries.
        unsafe { sys::rdh_vma_set_writecombine(self.vma) }
    }

    /// Maps all pages of `chunks` that the vma covers at once (no faults
    /// ever); after [`Self::forbid_cow`], so that no PFN lands in
    /// `vm_pgoff`.
    pub(crate) fn remap(&self, chunks: &[PageChunk]) -> Result {
        let (start, end, pgoff) = self.range();
        let mut addr = start;
        for (chunk, first) in chunk_pages(chunks, pgoff) {
            if addr >= end {
                break;
            }
            let size = ((chunk.page_count() - first) * PAGE_SIZE).min(end - addr);
            // SAFETY: `nth_page(first)` is a page of this chunk.
            let pfn = unsafe { sys::rdh_page_to_pfn(chunk.nth_page(first)) };
            // SAFETY: The vma is valid (type invariant).
            let prot = unsafe { (*self.vma).vm_page_prot };
            // SAFETY: During `mmap` (mmap lock held for writing); the range
            // lies in the vma, whose dma-buf file keeps the pages allocated.
            let ret = unsafe { sys::remap_pfn_range(self.vma, addr, pfn, size, prot) };
            kernel::error::to_result(ret)?;
            addr += size;
        }
        Ok(())
    }

    /// Maps buffer pages `pages` of `chunks` where the vma covers them;
    /// writable if `writable` (and the vma allows it). An entry that exists
    /// already is left as it is.
    pub(crate) fn insert(&self, chunks: &[PageChunk], pages: Range, writable: bool) -> VmFault {
        let (start, end, pgoff) = self.range();
        let vma_pages = Range::new(pgoff as u64, (pgoff + (end - start) / PAGE_SIZE) as u64);
        let pages = pages.intersect(vma_pages);
        if pages.is_empty() {
            return sys::vm_fault_reason_VM_FAULT_NOPAGE;
        }
        let mut page = pages.start as usize;
        let mut addr = start + (page - pgoff) * PAGE_SIZE;
        for (chunk, first) in chunk_pages(chunks, page) {
            for n in first..chunk.page_count() {
                if page as u64 >= pages.end {
                    return sys::vm_fault_reason_VM_FAULT_NOPAGE;
                }
                // SAFETY: `nth_page(n)` is a page of this chunk.
                let pfn = unsafe { sys::rdh_page_to_pfn(chunk.nth_page(n)) };
                // SAFETY: By the type invariant; `addr` lies inside the vma,
                // which `trap` made a non-COW pfn mapping. The pages stay
                // allocated while the vma exists (it holds the dma-buf file).
                let ret = unsafe { sys::rdh_vma_insert_pfn(self.vma, addr, pfn, writable) };
                if ret & !sys::vm_fault_reason_VM_FAULT_NOPAGE != 0 {
                    return ret;
                }
                addr += PAGE_SIZE;
                page += 1;
            }
        }
        sys::vm_fault_reason_VM_FAULT_NOPAGE
    }

    /// The user mappings of the dma-buf this vma maps (its file is the
    /// dma-buf's, also for `dma_buf_mmap`, which switches it): for the
    /// buffer to keep, which the dma-buf outlives.
    pub(crate) fn user_mappings(&self) -> UserMappings {
        // SAFETY: By the type invariant the vma is valid; its file is a
        // dma-buf's, whose `private_data` is the dma-buf.
        let dmabuf = unsafe { (*(*self.vma).vm_file).private_data.cast::<sys::dma_buf>() };
        // SAFETY: The dma-buf owns the buffer that keeps the value.
        unsafe { UserMappings::new(dmabuf) }
    }

    /// Removes the vma's entries (to map them again writable).
    pub(crate) fn zap(&self) {
        // SAFETY: By the type invariant.
        unsafe { sys::rdh_vma_zap(self.vma) };
    }
}

/// The chunks from buffer page `pgoff` on, each with its first page.
fn chunk_pages(chunks: &[PageChunk], pgoff: usize) -> impl Iterator<Item = (&PageChunk, usize)> {
    let mut skip = pgoff;
    chunks.iter().filter_map(move |chunk| {
        if skip >= chunk.page_count() {
            skip -= chunk.page_count();
            None
        } else {
            let first = skip;
            skip = 0;
            Some((chunk, first))
        }
    })
}

/// The user mappings of one exported buffer.
///
/// # Invariants
///
/// `dmabuf` is the buffer's live dma-buf: it outlives the buffer's state.
pub(crate) struct UserMappings {
    dmabuf: *mut sys::dma_buf,
}

// SAFETY: The dma-buf may be used from any thread; the buffer lock
// serialises what this type does with it.
unsafe impl Send for UserMappings {}

impl UserMappings {
    /// The mappings of the buffer exported as `dmabuf`.
    ///
    /// # Safety
    ///
    /// `dmabuf` must be live until the value is dropped (it is kept in the
    /// state of the buffer the dma-buf owns).
    pub(crate) unsafe fn new(dmabuf: *mut sys::dma_buf) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { dmabuf }
    }

    /// Removes every user entry of the buffer: the next user access
    /// faults.
    pub(crate) fn revoke(&self) {
        // SAFETY: By the type invariant.
        unsafe { sys::rdh_revoke_user_mappings(self.dmabuf) };
    }

    /// Logs (rate-limited) that the current process accessed the buffer
    /// outside a bracket.
    pub(crate) fn report_unbracketed(&self, write: bool) {
        // SAFETY: By the type invariant.
        unsafe { sys::rdh_report_unbracketed(self.dmabuf, write) };
    }
}
