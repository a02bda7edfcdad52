// SPDX-License-Identifier: GPL-2.0

//! Where cache maintenance happens: the only driver module that maps for
//! the maintenance device and syncs (through `rust/kernel/dma_mapping.rs`).
//!
//! `ownership.rs` decides; this module acts. Under the `tracked` policy
//! importer mappings are made with `DMA_ATTR_SKIP_CPU_SYNC`, and the
//! decisions run on the heap's own maintenance device, to which every
//! buffer is mapped once (see `rdh_maintenance_device_create`): a clean is
//! `dma_sync_sgtable_for_device(DMA_TO_DEVICE)`, an invalidate
//! `dma_sync_sgtable_for_cpu(DMA_FROM_DEVICE)`, each over the whole buffer.
//! Under `always` the mappings sync as the DMA API does by default and CPU
//! brackets sync every mapped attachment, like the upstream system heap.
//!
//! Mappings that may bounce through swiotlb ([`Bounce`]) sync themselves
//! under either policy: the DMA API moves their data only in their own sync
//! calls. If the maintenance device itself would bounce, buffers are not
//! mapped to it at all and every buffer gets the `always` policy
//! ([`MaintenanceDevice::bounce`]).

use crate::{
    dma_mapping::{self, Bounce, DeviceTable},
    glue::MaintenanceDeviceRegistration,
    ownership::{self, Decision},
    page_block::PageBlock,
    sg_table::BlockTable,
    stats::bounce_name,
};
use kernel::{device::Device, dma::DataDirection, prelude::*, sync::aref::ARef};

/// The state machine's name for a direction. Anything else is taken as
/// both ways, which can only cost maintenance, never correctness.
pub(crate) fn direction(dir: DataDirection) -> ownership::Direction {
    match dir {
        DataDirection::ToDevice => ownership::Direction::ToDevice,
        DataDirection::FromDevice => ownership::Direction::FromDevice,
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
    /// Whether the mapping skips the CPU sync.
    pub(crate) fn skips(self) -> bool {
        self == MapSync::Skip
    }
}

/// The heap's maintenance device: every buffer is mapped to it once, so
/// that cache maintenance can run whenever ownership changes. arm64 cleans
/// and invalidates by physical address, so the device used does not matter
/// for non-coherent importers.
///
/// Every table mapped to it is unmapped before it goes: each buffer holds
/// the heap context that owns it.
pub(crate) struct MaintenanceDevice {
    registration: MaintenanceDeviceRegistration,
    bounce: Option<Bounce>,
}

impl MaintenanceDevice {
    /// Creates the device (a driverless platform device).
    pub(crate) fn new() -> Result<Self> {
        let registration = MaintenanceDeviceRegistration::new()?;
        let bounce = dma_mapping::bounce(registration.device());
        if let Some(reason) = bounce {
            // A bouncing maintenance mapping would copy instead of
            // maintaining the cache, take swiotlb slots for as long as each
            // buffer lives, and fail for 1 MiB chunks (swiotlb maps at most
            // 256 KiB).
            pr_warn!(
                "DMA mappings bounce ({}): ownership tracking is off, every buffer syncs like the system heap (sync_policy=always)\n",
                bounce_name(reason)
            );
        }
        Ok(Self {
            registration,
            bounce,
        })
    }

    /// If the device's mappings would bounce, why: then buffers are not
    /// mapped to it and all of them use the `always` policy.
    pub(crate) fn bounce(&self) -> Option<Bounce> {
        self.bounce
    }

    /// What cleans the page pool's chunks, unless this device's mappings
    /// would bounce (then a map copies instead of cleaning).
    pub(crate) fn cleaner(&self) -> Option<Cleaner> {
        // INVARIANT: Checked just here.
        self.bounce.is_none().then(|| Cleaner {
            dev: self.registration.device().clone(),
        })
    }
}

/// Cleans pages to the point of coherency on the maintenance device: the
/// page pool's background clean of zeroed chunks, and the uncached heap's
/// flush at allocation.
///
/// # Invariants
///
/// `dev` is the maintenance device, whose mappings do not bounce.
#[derive(Clone)]
pub(crate) struct Cleaner {
    dev: ARef<Device>,
}

impl Cleaner {
    /// Cleans the whole chunk; `false` if the DMA layer could not map it.
    pub(crate) fn clean(&self, chunk: &PageBlock) -> bool {
        dma_mapping::clean_block(&self.dev, chunk)
    }

    /// Cleans and invalidates the whole chunk (no line of it stays cached);
    /// `false` if the DMA layer could not map it.
    pub(crate) fn flush(&self, chunk: &PageBlock) -> bool {
        dma_mapping::flush_block(&self.dev, chunk)
    }
}

/// A copy of a buffer's table, mapped (without syncing) to the maintenance
/// device from the first moment maintenance may be needed until the buffer
/// goes, unless that device's mappings would bounce
/// ([`MaintenanceDevice::bounce`]): then it is not mapped, and performs
/// nothing.
pub(crate) struct MaintainedTable {
    table: Option<DeviceTable>,
}

impl MaintainedTable {
    /// Maps `table` to `maintenance`, if it can be used.
    pub(crate) fn new(table: BlockTable, maintenance: &MaintenanceDevice) -> Result<Self> {
        if maintenance.bounce().is_some() {
            return Ok(Self { table: None });
        }
        let mut table = DeviceTable::new(maintenance.registration.device().clone(), table);
        table.map(DataDirection::Bidirectional, MapSync::Skip.skips())?;
        Ok(Self { table: Some(table) })
    }

    /// Performs what `decision` asks for: cleans first, then invalidates,
    /// each over its spans of pages (a span of the whole buffer in one
    /// call). Only `tracked` buffers ask for any, and those exist only when
    /// the maintenance device is mapped.
    pub(crate) fn perform(&self, decision: &Decision, whole: ownership::Range) {
        let Some(table) = &self.table else {
            return;
        };
        let page = kernel::page::PAGE_SIZE;
        let sync = |span: ownership::Range, for_device: bool| match (span == whole, for_device) {
            (true, true) => table.sync_for_device(DataDirection::ToDevice),
            (true, false) => table.sync_for_cpu(DataDirection::FromDevice),
            (false, _) => {
                let offset = span.start as usize * page;
                let len = span.len() as usize * page;
                table.sync_range(offset, len, for_device)
            }
        };
        for (spans, for_device) in [(&decision.clean, true), (&decision.invalidate, false)] {
            for _ in 0..spans.passes() {
                spans.iter().for_each(|span| sync(span, for_device));
            }
        }
    }
}
