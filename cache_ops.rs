// SPDX-License-Identifier: GPL-2.0

//! Where cache maintenance happens: the only module that calls the DMA
//! mapping and sync API.
//!
//! The policy implemented here is the upstream system heap's: every map
//! cleans, every unmap invalidates (for directions the device may write),
//! and CPU access brackets sync every mapped attachment. It is correct but
//! repeats work; ownership tracking will decide when an operation is needed
//! and keep this policy as the `always` baseline.

use crate::{sg::SgTable, sys};
use kernel::{error::to_result, prelude::*};

/// Direction of a DMA transfer, as the dma-buf core passes it.
pub(crate) type Direction = sys::dma_data_direction;

/// A device that an importer attached, as the dma-buf core passes it.
///
/// # Invariants
///
/// `dev` points to a live `struct device` for as long as this value exists:
/// the dma-buf core keeps the attachment's device alive until detach.
#[derive(Clone, Copy)]
pub(crate) struct DmaDevice {
    dev: *mut sys::device,
}

// SAFETY: A device pointer may be used from any thread.
unsafe impl Send for DmaDevice {}
// SAFETY: The DMA API is thread safe for a device.
unsafe impl Sync for DmaDevice {}

impl DmaDevice {
    /// Wraps an attachment's device.
    ///
    /// # Safety
    ///
    /// `dev` must stay valid for the lifetime of the returned value (until
    /// the attachment is detached).
    pub(crate) unsafe fn new(dev: *mut sys::device) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { dev }
    }

    /// Maps `table` for the device; the DMA API cleans the CPU cache for
    /// non-coherent devices as part of the mapping.
    pub(crate) fn map(&self, table: &SgTable, dir: Direction) -> Result {
        // SAFETY: `dev` is valid; the table is allocated and not mapped.
        to_result(unsafe { sys::rdh_dma_map_sgtable(self.dev, table.as_raw(), dir, 0) })
    }

    /// Unmaps `table`; for directions the device may write, the DMA API
    /// invalidates the CPU cache.
    pub(crate) fn unmap(&self, table: &SgTable, dir: Direction) {
        // SAFETY: `table` was mapped for this device with `dir` by `map`.
        unsafe { sys::rdh_dma_unmap_sgtable(self.dev, table.as_raw(), dir, 0) };
    }

    /// Makes device writes visible to the CPU (invalidate).
    pub(crate) fn sync_for_cpu(&self, table: &SgTable, dir: Direction) {
        // SAFETY: `table` is mapped for this device.
        unsafe { sys::rdh_dma_sync_sgtable_for_cpu(self.dev, table.as_raw(), dir) };
    }

    /// Makes CPU writes visible to the device (clean).
    pub(crate) fn sync_for_device(&self, table: &SgTable, dir: Direction) {
        // SAFETY: `table` is mapped for this device.
        unsafe { sys::rdh_dma_sync_sgtable_for_device(self.dev, table.as_raw(), dir) };
    }
}

/// Invalidates aliases of the buffer in the kernel mapping before the CPU
/// reads through it (needed on aliasing caches; a no-op on arm64).
pub(crate) fn invalidate_kernel_alias(vaddr: core::ptr::NonNull<core::ffi::c_void>, len: usize) {
    // SAFETY: `vaddr` maps `len` bytes of the buffer.
    unsafe { sys::rdh_invalidate_kernel_vmap_range(vaddr.as_ptr(), len as i32) };
}

/// Writes back the kernel mapping's aliases after the CPU wrote through it.
pub(crate) fn flush_kernel_alias(vaddr: core::ptr::NonNull<core::ffi::c_void>, len: usize) {
    // SAFETY: `vaddr` maps `len` bytes of the buffer.
    unsafe { sys::rdh_flush_kernel_vmap_range(vaddr.as_ptr(), len as i32) };
}
