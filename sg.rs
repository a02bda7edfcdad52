// SPDX-License-Identifier: GPL-2.0

//! Scatter-gather tables over a buffer's chunks: one per attachment and
//! one for the maintenance mapping, each made from the chunks, because a
//! DMA mapping writes the device addresses into the table it maps.

use crate::{
    pages::{PageChunk, PAGE_SIZE},
    sys,
};
use core::cell::UnsafeCell;
use kernel::{error::to_result, prelude::*};

/// An allocated `struct sg_table` with one entry per chunk.
///
/// # Invariants
///
/// `table` was set up by `sg_alloc_table` and is freed on drop. Its entries
/// point into chunks that outlive the table (the buffer owns both and drops
/// the tables first). The DMA API writes device addresses into the table
/// while it is mapped, hence the `UnsafeCell`; the page entries and
/// `orig_nents` never change after construction.
pub(crate) struct SgTable {
    table: UnsafeCell<sys::sg_table>,
}

// SAFETY: The table is plain memory owned by one object.
unsafe impl Send for SgTable {}
// SAFETY: Shared references read only the fields that never change; the DMA
// fields are written by the DMA API under the owner's lock.
unsafe impl Sync for SgTable {}

impl SgTable {
    /// A table over `chunks`, in order, whose entries are at most
    /// `max_segment` bytes (rounded down to whole pages): longer chunks are
    /// split, so that a device that can map only short segments (swiotlb:
    /// 256 KiB) can map the whole buffer. With `usize::MAX`, one entry per
    /// chunk.
    pub(crate) fn new(chunks: &[PageChunk], max_segment: usize) -> Result<Self> {
        let max_segment = max_segment.max(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE;
        let pieces = |chunk: &PageChunk| chunk.size().div_ceil(max_segment);
        let table = Self::alloc(chunks.iter().map(pieces).sum())?;
        let mut entries = table.entries();
        for chunk in chunks {
            for piece in 0..pieces(chunk) {
                let offset = piece * max_segment;
                let size = (chunk.size() - offset).min(max_segment);
                let sg = entries.next().ok_or(EINVAL)?;
                // SAFETY: `sg` is an entry of our table; the `size` bytes
                // at page `offset / PAGE_SIZE` of the chunk lie inside it.
                unsafe {
                    sys::rdh_sg_set_page(sg, chunk.nth_page(offset / PAGE_SIZE), size as u32, 0)
                };
            }
        }
        drop(entries);
        Ok(table)
    }

    fn alloc(nents: usize) -> Result<Self> {
        let nents: u32 = nents.try_into().map_err(|_| ENOMEM)?;
        // SAFETY: All zeroes is a valid empty `sg_table`.
        let mut table: sys::sg_table = unsafe { core::mem::zeroed() };
        // SAFETY: `table` is a valid, empty table to fill.
        to_result(unsafe { sys::sg_alloc_table(&mut table, nents, sys::GFP_KERNEL) })?;
        // INVARIANT: `sg_alloc_table` succeeded.
        Ok(Self {
            table: UnsafeCell::new(table),
        })
    }

    /// Number of entries (chunks).
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `orig_nents` never changes after construction.
        unsafe { (*self.table.get()).orig_nents as usize }
    }

    /// Iterates over the raw entries of the table.
    pub(crate) fn entries(&self) -> impl Iterator<Item = *mut sys::scatterlist> + '_ {
        // SAFETY: `sgl` never changes after construction.
        let mut sg = unsafe { (*self.table.get()).sgl };
        (0..self.len()).map(move |_| {
            let current = sg;
            // SAFETY: `current` is one of the table's `orig_nents` entries;
            // `sg_next` follows chain links.
            sg = unsafe { sys::sg_next(current) };
            current
        })
    }

    /// Lengths in bytes of the entries.
    #[cfg(rdh_kunit)]
    pub(crate) fn entry_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        // SAFETY: Every entry yielded by `entries` is valid to read.
        self.entries().map(|sg| unsafe { (*sg).length as usize })
    }

    /// The raw table, for the DMA API and for returning to the dma-buf core.
    pub(crate) fn as_raw(&self) -> *mut sys::sg_table {
        self.table.get()
    }

    /// The same, never null (it is the address of a field).
    pub(crate) fn as_non_null(&self) -> core::ptr::NonNull<sys::sg_table> {
        core::ptr::NonNull::from(&self.table).cast()
    }
}

impl Drop for SgTable {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the table was allocated by
        // `sg_alloc_table` and is not mapped any more (callers unmap first).
        unsafe { sys::sg_free_table(self.table.get_mut()) };
    }
}
