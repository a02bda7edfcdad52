// SPDX-License-Identifier: GPL-2.0

//! Where cache maintenance happens: the only module that calls the DMA
//! mapping and sync API.
//!
//! `ownership.rs` decides; this module acts. Under the `tracked` policy
//! importer mappings are made with `DMA_ATTR_SKIP_CPU_SYNC`, and the
//! decisions run on the heap's own maintenance device, to which every
//! buffer is mapped once (see `rdh_maintenance_device_create`): a clean is
//! `dma_sync_sgtable_for_device(DMA_TO_DEVICE)`, an invalidate
//! `dma_sync_sgtable_for_cpu(DMA_FROM_DEVICE)`, each over the whole buffer.
//! Under `always` the mappings sync as the DMA API does by default and CPU
//! brackets sync every mapped attachment, like the upstream system heap.

use crate::{
    ownership::{self, CacheOps},
    sg::SgTable,
    sys,
};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{
    error::{from_err_ptr, to_result},
    prelude::*,
};

/// Direction of a DMA transfer, as the dma-buf core passes it.
pub(crate) type Direction = sys::dma_data_direction;

/// The state machine's name for a direction. Anything unknown is taken as
/// both ways, which can only cost maintenance, never correctness.
pub(crate) fn direction(dir: Direction) -> ownership::Direction {
    match dir {
        sys::dma_data_direction_DMA_TO_DEVICE => ownership::Direction::ToDevice,
        sys::dma_data_direction_DMA_FROM_DEVICE => ownership::Direction::FromDevice,
        _ => ownership::Direction::Bidirectional,
    }
}

/// Whether a mapping syncs the CPU cache itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapSync {
    /// The DMA API's default: clean on map, invalidate on unmap.
    Default,
    /// `DMA_ATTR_SKIP_CPU_SYNC`: maintenance is ours to decide.
    Skip,
}

impl MapSync {
    fn attrs(self) -> usize {
        match self {
            MapSync::Default => 0,
            MapSync::Skip => sys::RDH_DMA_ATTR_SKIP_CPU_SYNC,
        }
    }
}

/// A device that DMA-maps buffers: an importer's, or the heap's own.
///
/// # Invariants
///
/// `dev` points to a live `struct device` for as long as this value exists:
/// the dma-buf core keeps an attachment's device alive until detach, and the
/// maintenance device is never freed.
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

    /// Whether the device snoops the CPU caches (no maintenance needed).
    pub(crate) fn is_coherent(&self) -> bool {
        // SAFETY: By the type invariant `dev` is valid.
        unsafe { sys::rdh_dev_is_dma_coherent(self.dev) }
    }

    /// Maps `table` for the device.
    pub(crate) fn map(&self, table: &SgTable, dir: Direction, sync: MapSync) -> Result {
        // SAFETY: `dev` is valid; the table is allocated and not mapped.
        to_result(unsafe { sys::rdh_dma_map_sgtable(self.dev, table.as_raw(), dir, sync.attrs()) })
    }

    /// Unmaps `table`, mapped by [`Self::map`] with the same arguments.
    pub(crate) fn unmap(&self, table: &SgTable, dir: Direction, sync: MapSync) {
        // SAFETY: `table` was mapped for this device with `dir`.
        unsafe { sys::rdh_dma_unmap_sgtable(self.dev, table.as_raw(), dir, sync.attrs()) };
    }

    /// Makes device writes visible to the CPU (invalidate, unless `dir` is
    /// `DMA_TO_DEVICE`).
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

/// The heap's maintenance device, set once at module init.
static MAINTENANCE_DEVICE: AtomicPtr<sys::device> = AtomicPtr::new(core::ptr::null_mut());

/// Creates the maintenance device. Called once from module init.
pub(crate) fn create_maintenance_device() -> Result {
    // SAFETY: Process context at module init.
    let dev = from_err_ptr(unsafe { sys::rdh_maintenance_device_create() })?;
    MAINTENANCE_DEVICE.store(dev, Ordering::Release);
    Ok(())
}

fn maintenance_device() -> Result<DmaDevice> {
    let dev = MAINTENANCE_DEVICE.load(Ordering::Acquire);
    if dev.is_null() {
        return Err(ENODEV);
    }
    // SAFETY: The maintenance device is registered once and never freed.
    Ok(unsafe { DmaDevice::new(dev) })
}

/// A buffer's own table, mapped (without syncing) to the maintenance
/// device for as long as the buffer lives.
///
/// # Invariants
///
/// `table` is mapped for `dev` with `DMA_BIDIRECTIONAL`; it is unmapped on
/// drop, before the table itself is freed.
pub(crate) struct MaintainedTable {
    dev: DmaDevice,
    table: SgTable,
}

impl MaintainedTable {
    /// Maps `table` to the maintenance device.
    pub(crate) fn new(table: SgTable) -> Result<Self> {
        let dev = maintenance_device()?;
        dev.map(
            &table,
            sys::dma_data_direction_DMA_BIDIRECTIONAL,
            MapSync::Skip,
        )?;
        // INVARIANT: Mapped just above.
        Ok(Self { dev, table })
    }

    /// The table (its page entries; the DMA fields belong to the
    /// maintenance mapping).
    pub(crate) fn table(&self) -> &SgTable {
        &self.table
    }

    /// Performs `ops` over the whole buffer: cleans first, then invalidates.
    pub(crate) fn perform(&self, ops: CacheOps) {
        for _ in 0..ops.clean {
            self.dev
                .sync_for_device(&self.table, sys::dma_data_direction_DMA_TO_DEVICE);
        }
        for _ in 0..ops.invalidate {
            self.dev
                .sync_for_cpu(&self.table, sys::dma_data_direction_DMA_FROM_DEVICE);
        }
    }
}

impl Drop for MaintainedTable {
    fn drop(&mut self) {
        self.dev.unmap(
            &self.table,
            sys::dma_data_direction_DMA_BIDIRECTIONAL,
            MapSync::Skip,
        );
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
