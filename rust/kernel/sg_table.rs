// SPDX-License-Identifier: GPL-2.0

//! Scatter-gather tables over page blocks that their owner keeps, with
//! entries no longer than a device can map.
//!
//! C header: [`include/linux/scatterlist.h`](srctree/include/linux/scatterlist.h)
//!
//! [`kernel::scatterlist::SGTable<Owned>`] owns its pages and maps them for
//! a bound device at once; a buffer shared through dma-buf needs one table
//! per importer, over pages it keeps itself, mapped and unmapped as the
//! importer asks (TODO(sg-borrowed-pages) in `rust/todo.rst`). A
//! [`BlockTable`] is that table; it dereferences to the kernel crate's
//! [`SGTable`].

use crate::bindings;
use crate::page_block::PageBlock;
use core::{cell::UnsafeCell, ops::Deref};
use kernel::{error::to_result, page::PAGE_SIZE, prelude::*, scatterlist::SGTable};

/// A `struct sg_table` over page blocks, freed on drop.
///
/// # Invariants
///
/// `table` was allocated by `sg_alloc_table` and every entry points into
/// blocks that the owner of this value keeps allocated for as long as it
/// exists. The DMA API writes device addresses into it while it is mapped.
pub struct BlockTable {
    table: UnsafeCell<bindings::sg_table>,
}

// SAFETY: The table is plain memory owned by one object.
unsafe impl Send for BlockTable {}
// SAFETY: Shared references read only the fields that never change; the
// DMA fields are written by the DMA API, serialised by the table's owner.
unsafe impl Sync for BlockTable {}

impl BlockTable {
    /// A table of `blocks`, in order, each split into entries of at most
    /// `max_segment` bytes (rounded down to whole pages, at least one).
    /// The caller keeps the blocks for as long as the table exists.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{
    ///     page::PAGE_SIZE,
    ///     page_block::{Gfp, PageBlock},
    ///     sg_table::BlockTable,
    /// };
    ///
    /// let blocks = [
    ///     PageBlock::alloc(Gfp::HIGHUSER, 4).ok_or(ENOMEM)?,
    ///     PageBlock::alloc(Gfp::HIGHUSER, 0).ok_or(ENOMEM)?,
    /// ];
    /// let whole = BlockTable::new(&blocks, usize::MAX)?;
    /// assert_eq!(whole.len(), 2);
    /// // At most 4 pages an entry: the 16-page block takes four.
    /// let split = BlockTable::new(&blocks, 4 * PAGE_SIZE)?;
    /// assert_eq!(split.len(), 5);
    /// assert_eq!(split.entry_lengths().sum::<usize>(), 17 * PAGE_SIZE);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new<B: AsRef<PageBlock>>(blocks: &[B], max_segment: usize) -> Result<Self> {
        let max_segment = max_segment.max(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE;
        let pieces = |block: &PageBlock| block.size().div_ceil(max_segment);
        let table = Self::alloc(blocks.iter().map(|b| pieces(b.as_ref())).sum())?;
        let mut entries = table.entries();
        for block in blocks.iter().map(AsRef::as_ref) {
            for piece in 0..pieces(block) {
                let offset = piece * max_segment;
                let size = (block.size() - offset).min(max_segment);
                let sg = entries.next().ok_or(EINVAL)?;
                // SAFETY: `sg` is an entry of our table; the `size` bytes at
                // page `offset / PAGE_SIZE` of the block lie inside it.
                unsafe {
                    bindings::sg_set_page(sg, block.nth_page(offset / PAGE_SIZE), size as u32, 0)
                };
            }
        }
        drop(entries);
        Ok(table)
    }

    fn alloc(nents: usize) -> Result<Self> {
        let nents: u32 = nents.try_into().map_err(|_| ENOMEM)?;
        // SAFETY: All zeroes is a valid empty `sg_table`.
        let mut table: bindings::sg_table = unsafe { core::mem::zeroed() };
        // SAFETY: `table` is a valid, empty table to fill.
        to_result(unsafe { bindings::sg_alloc_table(&mut table, nents, bindings::GFP_KERNEL) })?;
        // INVARIANT: `sg_alloc_table` succeeded.
        Ok(Self {
            table: UnsafeCell::new(table),
        })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        // SAFETY: `orig_nents` never changes after construction.
        unsafe { (*self.table.get()).orig_nents as usize }
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries (CPU side: `orig_nents` of them).
    fn entries(&self) -> impl Iterator<Item = *mut bindings::scatterlist> + '_ {
        // SAFETY: `sgl` never changes after construction.
        let mut sg = unsafe { (*self.table.get()).sgl };
        (0..self.len()).map(move |_| {
            let current = sg;
            // SAFETY: `current` is one of the table's `orig_nents` entries;
            // `sg_next` follows chain links.
            sg = unsafe { bindings::sg_next(current) };
            current
        })
    }

    /// The length of each entry, in bytes (CPU side).
    pub fn entry_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        // SAFETY: Every entry yielded by `entries` is valid to read.
        self.entries().map(|sg| unsafe { (*sg).length as usize })
    }

    /// The page frame number of each entry's first page (CPU side).
    pub fn entry_pfns(&self) -> impl Iterator<Item = usize> + '_ {
        // SAFETY: Every entry yielded by `entries` is valid and points to a
        // page of the blocks the table's owner keeps.
        self.entries()
            .map(|sg| unsafe { bindings::page_to_pfn(bindings::sg_page(sg)) })
    }

    /// The C table, for the DMA API.
    pub(crate) fn as_raw(&self) -> *mut bindings::sg_table {
        self.table.get()
    }
}

impl Deref for BlockTable {
    type Target = SGTable;

    fn deref(&self) -> &SGTable {
        // SAFETY: The table is valid for as long as `self`, and only the DMA
        // API changes it (its DMA fields), as `SGTable` allows.
        unsafe { SGTable::from_raw(self.as_raw()) }
    }
}

impl Drop for BlockTable {
    fn drop(&mut self) {
        // SAFETY: Allocated by `sg_alloc_table` (type invariant); whoever
        // mapped it unmapped it first (a `DeviceTable` owns its mapping).
        unsafe { bindings::sg_free_table(self.table.get_mut()) };
    }
}
