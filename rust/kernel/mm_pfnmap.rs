// SPDX-License-Identifier: GPL-2.0

//! User mappings of page blocks as PFN mappings: filled at `mmap`, or by a
//! fault handler one access window at a time.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! [`kernel::mm::virt`] lets a driver set up a vma ([`VmaNew`]) and insert
//! `struct page`s into a mixed map; an exporter whose faults must see every
//! user access maps PFNs, from a fault handler, read-only or writable, and
//! zaps them again (TODO(vma-pfnmap) in `rust/todo.rst`). Where the kernel
//! maps PFNs with PMD entries (transparent huge pages), a naturally aligned
//! run of [`HUGE_PAGES`] contiguous pages at a matching user address is
//! left to the `huge_fault` handler ([`HugeEntry`]), which maps it with one
//! entry.

use crate::bindings;
use crate::page_block::PageBlock;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    mm::virt::{VmaNew, VmaRef},
    page::PAGE_SIZE,
    prelude::*,
};

/// Whether this kernel maps PFNs with PMD entries (`huge_fault` at PMD
/// order; `vmf_insert_pfn_pmd`).
pub const HUGE_ENTRIES: bool = cfg!(all(
    CONFIG_TRANSPARENT_HUGEPAGE,
    CONFIG_ARCH_SUPPORTS_PMD_PFNMAP
));

/// The pages one PMD entry maps (512 of 4 KiB: 2 MiB).
pub const HUGE_PAGES: usize = 1 << bindings::PMD_ORDER;

/// What a fault handler returns (`vm_fault_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFault(bindings::vm_fault_t);

impl VmFault {
    /// The handler maps no huge entry here: the mm core maps PTEs instead
    /// (`VM_FAULT_FALLBACK`).
    pub const FALLBACK: VmFault = VmFault(bindings::vm_fault_reason_VM_FAULT_FALLBACK);
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

/// Maps buffer `pages` of `blocks` into `vma` (of a
/// [`PfnMap::with_faults`] mapping), as far as the vma covers them,
/// writable or read-only. Called from its fault handler for an access to
/// buffer page `accessed`; the caller keeps the blocks allocated while the
/// vma exists. A run that one PMD entry can map, other than the accessed
/// page's, is left for its own fault, which maps it with one entry (a
/// page-table page filled with PTEs would keep it from ever getting one).
/// Returns the result and how many page-table entries were written.
pub fn insert_pages<B: AsRef<PageBlock>>(
    vma: &VmaRef,
    blocks: &[B],
    pages: core::ops::Range<usize>,
    accessed: usize,
    writable: bool,
) -> (VmFault, usize) {
    let (start, vma_end, pgoff) = (vma.start(), vma.end(), pgoff(vma));
    let first = pages.start.max(pgoff);
    let end = pages.end.min(pgoff + (vma_end - start) / PAGE_SIZE);
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
        let mut n = from;
        while n < block.page_count() {
            if page >= end {
                return (VmFault::NOPAGE, written);
            }
            let own_run = page / HUGE_PAGES == accessed / HUGE_PAGES;
            if !own_run && addr + HUGE_PAGES * PAGE_SIZE <= vma_end && huge_run(addr, block, n) {
                n += HUGE_PAGES;
                page += HUGE_PAGES;
                addr += HUGE_PAGES * PAGE_SIZE;
                continue;
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
            n += 1;
            addr += PAGE_SIZE;
            page += 1;
        }
    }
    (VmFault::NOPAGE, written)
}

/// Whether user address `addr` and page `n` of `block` start a run that
/// one PMD entry can map: the kernel maps PFNs with them, the address is
/// aligned to one, and the block holds [`HUGE_PAGES`] pages from `n` on at
/// a physical address aligned like it (an order-9 chunk is).
fn huge_run(addr: usize, block: &PageBlock, n: usize) -> bool {
    HUGE_ENTRIES
        && addr % (HUGE_PAGES * PAGE_SIZE) == 0
        && n + HUGE_PAGES <= block.page_count()
        && block.pfn(n) % HUGE_PAGES == 0
}

/// A `huge_fault` at PMD order: the mm core asks for one entry mapping
/// the naturally aligned [`HUGE_PAGES`] pages of address space around an
/// access. It does not check that they lie in the vma (a vma split in the
/// middle of an entry by `mprotect` or `munmap` leaves them partly
/// outside); [`HugeEntry::new`] does.
///
/// # Invariants
///
/// `vmf` is such a fault, valid and with the vma locked for `'a`, and the
/// entry's address range lies in the vma.
pub struct HugeEntry<'a> {
    vmf: NonNull<bindings::vm_fault>,
    _fault: PhantomData<&'a bindings::vm_fault>,
}

impl<'a> HugeEntry<'a> {
    /// The entry `vmf` asks for, if its address range lies in the vma.
    ///
    /// # Safety
    ///
    /// `vmf` is a `huge_fault` at PMD order of a [`PfnMap::with_faults`]
    /// mapping, valid and with its vma locked for `'a`.
    pub unsafe fn new(vmf: NonNull<bindings::vm_fault>) -> Option<Self> {
        // SAFETY: The fault is valid, its vma locked (the caller's promise).
        let (vma, address) = unsafe {
            let vmf = vmf.as_ptr();
            let vma = VmaRef::from_raw((*vmf).__bindgen_anon_1.vma);
            (vma, (*vmf).__bindgen_anon_1.address)
        };
        let (start, end) = (vma.start(), vma.end());
        let first = address & !(HUGE_PAGES * PAGE_SIZE - 1);
        // INVARIANT: The caller's promise, and the range just checked.
        (start <= first && first + HUGE_PAGES * PAGE_SIZE <= end).then_some(Self {
            vmf,
            _fault: PhantomData,
        })
    }

    /// The vma.
    fn vma(&self) -> &'a VmaRef {
        // SAFETY: The fault is valid, its vma locked for `'a` (type
        // invariant).
        unsafe { VmaRef::from_raw((*self.vmf.as_ptr()).__bindgen_anon_1.vma) }
    }

    /// The entry's first address.
    fn addr(&self) -> usize {
        // SAFETY: The fault is valid (type invariant).
        let address = unsafe { (*self.vmf.as_ptr()).__bindgen_anon_1.address };
        address & !(HUGE_PAGES * PAGE_SIZE - 1)
    }

    /// The buffer page the entry's first address maps.
    pub fn first_page(&self) -> usize {
        let vma = self.vma();
        let (start, pgoff) = (vma.start(), pgoff(vma));
        // The address lies in the vma (type invariant).
        pgoff + (self.addr() - start) / PAGE_SIZE
    }

    /// Whether the access hit an entry that was mapped read-only (else
    /// there was none).
    pub fn upgrade(&self) -> bool {
        // SAFETY: The fault is valid (type invariant); `orig_pmd` is what
        // the mm core read of the entry (zero if it found none).
        !unsafe { bindings::pmd_none((*self.vmf.as_ptr()).__bindgen_anon_2.orig_pmd) }
    }

    /// Maps pages `first_page()..` of `blocks` (the buffer, from its first
    /// page) with one entry, writable or read-only, if one entry can map
    /// them (they lie in one block, physically aligned like the address);
    /// else returns [`VmFault::FALLBACK`]. The caller keeps the blocks
    /// allocated while the vma exists.
    pub fn insert<B: AsRef<PageBlock>>(&self, blocks: &[B], writable: bool) -> VmFault {
        match block_pages(blocks, self.first_page()).next() {
            // Without huge entries `huge_run` is never true, and the kernel
            // has no `vmf_insert_pfn_pmd`.
            #[cfg(all(CONFIG_TRANSPARENT_HUGEPAGE, CONFIG_ARCH_SUPPORTS_PMD_PFNMAP))]
            Some((block, n)) if huge_run(self.addr(), block, n) => {
                let (vmf, pfn) = (self.vmf.as_ptr(), block.pfn(n));
                // SAFETY: A PMD-order fault of a PFN mapping that is not
                // copy-on-write (type invariant, `PfnMap`); the run's pages
                // stay allocated while the vma exists (the caller's
                // promise). An entry already there is made writable or
                // left as it is.
                let ret = unsafe { bindings::vmf_insert_pfn_pmd(vmf, pfn, writable) };
                VmFault(ret)
            }
            _ => VmFault::FALLBACK,
        }
    }
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
