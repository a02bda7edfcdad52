// SPDX-License-Identifier: GPL-2.0

//! User mappings of page blocks as PFN mappings: filled at `mmap`, or by a
//! fault handler one access window at a time.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! [`kernel::mm::virt`] lets a driver set up a vma ([`VmaNew`]) and insert
//! `struct page`s into a mixed map; an exporter whose faults must see every
//! user access maps PFNs, from a fault handler, read-only or writable, and
//! zaps them again (TODO(vma-pfnmap) in `rust/todo.rst`).

use crate::bindings;
use crate::page_block::PageBlock;
use kernel::{
    mm::virt::{VmaNew, VmaRef},
    page::PAGE_SIZE,
    prelude::*,
};

/// What a fault handler returns (`vm_fault_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFault(bindings::vm_fault_t);

impl VmFault {
    /// The handler mapped the page itself (`VM_FAULT_NOPAGE`).
    pub const NOPAGE: VmFault = VmFault(bindings::vm_fault_reason_VM_FAULT_NOPAGE);
    /// The access is outside what can be mapped (`VM_FAULT_SIGBUS`).
    pub const SIGBUS: VmFault = VmFault(bindings::vm_fault_reason_VM_FAULT_SIGBUS);

    /// The C value.
    pub fn as_raw(self) -> bindings::vm_fault_t {
        self.0
    }
}

/// A vma being set up as a PFN mapping (`VM_PFNMAP | VM_IO`, never
/// copy-on-write).
pub struct PfnMap<'a> {
    vma: &'a VmaNew,
}

impl<'a> PfnMap<'a> {
    /// A PFN mapping filled now, by [`Self::remap`].
    pub fn now(vma: &'a VmaNew) -> Self {
        Self { vma }
    }

    /// A PFN mapping without entries, whose faults `ops` handles.
    ///
    /// # Safety
    ///
    /// `ops` must be a table whose handlers may be called for this vma for
    /// as long as it exists.
    pub unsafe fn with_faults(
        vma: &'a VmaNew,
        ops: &'static bindings::vm_operations_struct,
    ) -> Self {
        vma.set_io();
        vma.set_dontexpand();
        vma.set_dontdump();
        // SAFETY: During `mmap` (the mmap lock is held for writing); the
        // flags make the vma a PFN mapping that cannot grow, as its ops
        // expect; the ops are valid for its lifetime (the caller's promise).
        unsafe {
            bindings::vm_flags_set(vma.as_ptr(), bindings::VM_PFNMAP);
            (*vma.as_ptr()).vm_ops = ops;
        }
        Self { vma }
    }

    /// Refuses a copy-on-write mapping, which a PFN mapping cannot be:
    /// `vmf_insert_pfn` refuses it, and `remap_pfn_range` would store the
    /// first PFN in `vm_pgoff` and refuse to map part of the vma. A
    /// read-only private one loses `VM_MAYWRITE`, so it can never become
    /// writable; a writable private one, whose writes could never reach a
    /// device anyway, is refused (`EINVAL`).
    pub fn forbid_cow(&self) -> Result {
        let flags = self.vma.flags();
        let (shared, maywrite) = (bindings::VM_SHARED, bindings::VM_MAYWRITE);
        if flags & (shared | maywrite) != maywrite {
            return Ok(());
        }
        if self.vma.writable() {
            return Err(EINVAL);
        }
        self.vma.try_clear_maywrite()
    }

    /// Makes CPU access through the mapping write-combined (before it has
    /// entries).
    pub fn write_combine(&self) {
        // SAFETY: During `mmap`, before the vma has entries: the protection
        // may change.
        unsafe {
            let vma = self.vma.as_ptr();
            (*vma).vm_page_prot = bindings::pgprot_writecombine((*vma).vm_page_prot);
        }
    }

    /// Maps the pages of `blocks` (the buffer, from its first page) that
    /// the vma covers, from its page offset on. The caller keeps the blocks
    /// allocated while the vma exists.
    pub fn remap<B: AsRef<PageBlock>>(&self, blocks: &[B]) -> Result {
        let (start, end, pgoff) = (self.vma.start(), self.vma.end(), pgoff(self.vma));
        let mut addr = start;
        for (block, first) in block_pages(blocks, pgoff) {
            if addr >= end {
                break;
            }
            let size = ((block.page_count() - first) * PAGE_SIZE).min(end - addr);
            // SAFETY: During `mmap` (mmap lock held for writing); the range
            // lies in the vma, and the pages stay allocated while it exists
            // (the caller's promise).
            let ret = unsafe {
                bindings::remap_pfn_range(
                    self.vma.as_ptr(),
                    addr,
                    block.pfn(first),
                    size,
                    (*self.vma.as_ptr()).vm_page_prot,
                )
            };
            kernel::error::to_result(ret)?;
            addr += size;
        }
        Ok(())
    }
}

/// The page offset of `vma` (the buffer page its start maps).
pub fn pgoff(vma: &VmaRef) -> usize {
    // SAFETY: `vm_pgoff` is stable while the vma is locked, as a `&VmaRef`
    // requires.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}

/// Maps buffer pages `first..end` of `blocks` into `vma` (of a
/// [`PfnMap::with_faults`] mapping), as far as the vma covers them,
/// writable or read-only. Called from its fault handler; the caller keeps
/// the blocks allocated while the vma exists. Returns the result and how
/// many page-table entries were written.
pub fn insert_pages<B: AsRef<PageBlock>>(
    vma: &VmaRef,
    blocks: &[B],
    first: usize,
    end: usize,
    writable: bool,
) -> (VmFault, usize) {
    let (start, vma_end, pgoff) = (vma.start(), vma.end(), pgoff(vma));
    let first = first.max(pgoff);
    let end = end.min(pgoff + (vma_end - start) / PAGE_SIZE);
    if first >= end {
        return (VmFault::NOPAGE, 0);
    }
    let mut written = 0;
    let mut page = first;
    let mut addr = start + (page - pgoff) * PAGE_SIZE;
    // SAFETY: The vma is live and locked (`&VmaRef`).
    let prot = unsafe {
        if writable {
            bindings::vma_write_prot(vma.as_ptr())
        } else {
            (*vma.as_ptr()).vm_page_prot
        }
    };
    for (block, from) in block_pages(blocks, page) {
        for n in from..block.page_count() {
            if page >= end {
                return (VmFault::NOPAGE, written);
            }
            let (raw, pfn) = (vma.as_ptr(), block.pfn(n));
            // SAFETY: `addr` lies inside the vma, a PFN mapping that is not
            // copy-on-write (`PfnMap`); the page stays allocated while the
            // vma exists (the caller's promise).
            let ret = unsafe { bindings::vmf_insert_pfn_prot(raw, addr, pfn, prot) };
            if ret & !VmFault::NOPAGE.0 != 0 {
                return (VmFault(ret), written);
            }
            written += 1;
            addr += PAGE_SIZE;
            page += 1;
        }
    }
    (VmFault::NOPAGE, written)
}

/// Removes every entry of `vma` (to map it again writable).
pub fn zap(vma: &VmaRef) {
    vma.zap_vma_range(vma.start(), vma.end() - vma.start());
}

/// The blocks from buffer page `page` on, each with the first of its pages
/// to use.
fn block_pages<B: AsRef<PageBlock>>(
    blocks: &[B],
    page: usize,
) -> impl Iterator<Item = (&PageBlock, usize)> {
    let mut skip = page;
    blocks.iter().map(AsRef::as_ref).filter_map(move |block| {
        if skip >= block.page_count() {
            skip -= block.page_count();
            None
        } else {
            let first = skip;
            skip = 0;
            Some((block, first))
        }
    })
}
