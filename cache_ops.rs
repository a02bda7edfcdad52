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
//!
//! Mappings that may bounce through swiotlb ([`Bounce`]) sync themselves
//! under either policy: the DMA API moves their data only in their own sync
//! calls. If the maintenance device itself would bounce, buffers are not
//! mapped to it at all and every buffer gets the `always` policy
//! ([`MaintenanceDevice::bounce`]).

use crate::{
    ownership::{self, Decision},
    pages::{KernelAddress, PageChunk, PAGE_SIZE},
    sg::SgTable,
    sys,
};
use kernel::{
    dma::DataDirection,
    error::{from_err_ptr, to_result},
    prelude::*,
};

/// Direction of a DMA transfer, as the dma-buf core passes it: the kernel
/// crate's binding of `enum dma_data_direction`. Only that binding carries
/// the C type for kCFI, which checks every indirect call into our
/// `dma_buf_ops`; its Rust shape differs between releases (an integer in
/// 7.2, a newtype in 7.3), so values are made through [`DataDirection`].
pub(crate) type Direction = sys::dma_data_direction;

/// The state machine's name for a direction. Anything unknown is taken as
/// both ways, which can only cost maintenance, never correctness.
pub(crate) fn direction(dir: Direction) -> ownership::Direction {
    if dir == DataDirection::ToDevice.into() {
        ownership::Direction::ToDevice
    } else if dir == DataDirection::FromDevice.into() {
        ownership::Direction::FromDevice
    } else {
        ownership::Direction::Bidirectional
    }
}

/// The C value of a direction.
pub(crate) fn raw(dir: ownership::Direction) -> Direction {
    match dir {
        ownership::Direction::ToDevice => DataDirection::ToDevice,
        ownership::Direction::FromDevice => DataDirection::FromDevice,
        ownership::Direction::Bidirectional => DataDirection::Bidirectional,
    }
    .into()
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

/// Why a device's DMA mappings may bounce through swiotlb slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bounce {
    /// Every mapping bounces: `swiotlb=force`, a restricted DMA pool, a
    /// confidential guest.
    Forced,
    /// The DMA mask cannot reach all of RAM (e.g. 32 bits, RAM above 4 GiB).
    AddressingLimited,
    /// The DMA layer limits the mapping size, which it does where it may
    /// bounce (e.g. an untrusted device behind an IOMMU).
    LimitedMapping,
}

impl Bounce {
    /// Every reason, in display order (and in declaration order: the
    /// discriminant indexes per-reason counters).
    pub(crate) const ALL: [Bounce; 3] = [
        Bounce::Forced,
        Bounce::AddressingLimited,
        Bounce::LimitedMapping,
    ];

    /// The reason's name in debugfs and the kernel log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bounce::Forced => "swiotlb_forced",
            Bounce::AddressingLimited => "addressing_limited",
            Bounce::LimitedMapping => "limited_mapping_size",
        }
    }

    fn from_raw(reason: i32) -> Option<Self> {
        match reason as u32 {
            sys::RDH_BOUNCE_FORCED => Some(Bounce::Forced),
            sys::RDH_BOUNCE_ADDRESSING_LIMITED => Some(Bounce::AddressingLimited),
            sys::RDH_BOUNCE_LIMITED_MAPPING => Some(Bounce::LimitedMapping),
            _ => None,
        }
    }
}

/// A device that DMA-maps buffers: an importer's, or the heap's own.
///
/// # Invariants
///
/// `dev` points to a live `struct device` for as long as this value exists:
/// the dma-buf core keeps an attachment's device alive until detach, and the
/// maintenance device outlives every buffer mapped to it.
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

    /// Whether (and why) the device's mappings may bounce through swiotlb.
    pub(crate) fn bounce(&self) -> Option<Bounce> {
        // SAFETY: By the type invariant `dev` is valid.
        Bounce::from_raw(unsafe { sys::rdh_dma_bounce_reason(self.dev) })
    }

    /// The longest scatterlist segment the device can map (whole pages).
    pub(crate) fn max_segment(&self) -> usize {
        // SAFETY: By the type invariant `dev` is valid.
        unsafe { sys::rdh_dma_max_segment(self.dev) }
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

    /// Cleans (`for_device`) or invalidates bytes `offset..offset + len` of
    /// what `table` maps.
    fn sync_range(&self, table: &SgTable, offset: usize, len: usize, for_device: bool) {
        let dir = if for_device {
            ownership::Direction::ToDevice
        } else {
            ownership::Direction::FromDevice
        };
        // SAFETY: `table` is mapped for this device; the helper syncs only
        // what lies inside the mapping.
        unsafe {
            sys::rdh_dma_sync_sgtable_range(
                self.dev,
                table.as_raw(),
                offset,
                len,
                raw(dir),
                for_device,
            )
        };
    }
}

/// The heap's maintenance device: every buffer is mapped to it once, so
/// that cache maintenance can run whenever ownership changes.
///
/// # Invariants
///
/// `dev` was created by `rdh_maintenance_device_create` and is removed on
/// drop; every table mapped to it is unmapped before (each buffer holds
/// the heap that owns this device).
pub(crate) struct MaintenanceDevice {
    dev: DmaDevice,
    bounce: Option<Bounce>,
}

impl MaintenanceDevice {
    /// Creates the device (a driverless platform device).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Process context.
        let raw = from_err_ptr(unsafe { sys::rdh_maintenance_device_create() })?;
        // SAFETY: Just created; removed only on drop.
        let dev = unsafe { DmaDevice::new(raw) };
        let bounce = dev.bounce();
        if let Some(reason) = bounce {
            // A bouncing maintenance mapping would copy instead of
            // maintaining the cache, take swiotlb slots for as long as each
            // buffer lives, and fail for 1 MiB chunks (swiotlb maps at most
            // 256 KiB).
            pr_warn!(
                "DMA mappings bounce ({}): ownership tracking is off, every buffer syncs like the system heap (sync_policy=always)\n",
                reason.name()
            );
        }
        // INVARIANT: Created above.
        Ok(Self { dev, bounce })
    }

    /// If the device's mappings would bounce, why: then buffers are not
    /// mapped to it and all of them use the `always` policy.
    pub(crate) fn bounce(&self) -> Option<Bounce> {
        self.bounce
    }

    /// What cleans the page pool's chunks, unless this device's mappings
    /// would bounce (then a map copies instead of cleaning). It must not be
    /// used after the device is gone (the pool's worker stops first).
    pub(crate) fn cleaner(&self) -> Option<Cleaner> {
        // INVARIANT: Valid while the device lives, as the caller ensures.
        self.bounce.is_none().then_some(Cleaner { dev: self.dev })
    }
}

/// Cleans pages to the point of coherency on the maintenance device: the
/// page pool's background clean of zeroed chunks, and the uncached heap's
/// flush at allocation.
///
/// # Invariants
///
/// `dev` is the maintenance device, live for as long as this value is used,
/// and its mappings do not bounce.
#[derive(Clone, Copy)]
pub(crate) struct Cleaner {
    dev: DmaDevice,
}

impl Cleaner {
    /// Cleans the whole chunk; `false` if the DMA layer could not map it.
    pub(crate) fn clean(&self, chunk: &PageChunk) -> bool {
        // SAFETY: By the type invariant `dev` is live; the chunk is a valid
        // block of `chunk.size()` bytes.
        unsafe { sys::rdh_dma_clean_pages(self.dev.dev, chunk.head(), chunk.size()) }
    }

    /// Cleans and invalidates the whole chunk (no line of it stays cached);
    /// `false` if the DMA layer could not map it.
    pub(crate) fn flush(&self, chunk: &PageChunk) -> bool {
        // SAFETY: As in `clean`.
        unsafe { sys::rdh_dma_flush_pages(self.dev.dev, chunk.head(), chunk.size()) }
    }
}

impl Drop for MaintenanceDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariant; nothing is mapped to it any more.
        unsafe { sys::rdh_maintenance_device_destroy(self.dev.dev) };
    }
}

/// A copy of a buffer's table, mapped (without syncing) to the maintenance
/// device from the first moment maintenance may be needed until the buffer
/// goes, unless that device's mappings would bounce
/// ([`MaintenanceDevice::bounce`]).
///
/// # Invariants
///
/// If `dev` is set, `table` is mapped for it with `DMA_BIDIRECTIONAL`; it
/// is unmapped on drop, before the table itself is freed.
pub(crate) struct MaintainedTable {
    dev: Option<DmaDevice>,
    table: SgTable,
}

impl MaintainedTable {
    /// Maps `table` to `maintenance`, if it can be used; the device must
    /// outlive the value.
    pub(crate) fn new(table: SgTable, maintenance: &MaintenanceDevice) -> Result<Self> {
        let dev = maintenance.dev;
        if maintenance.bounce().is_some() {
            // INVARIANT: Not mapped, and `dev` is unset.
            return Ok(Self { dev: None, table });
        }
        dev.map(
            &table,
            raw(ownership::Direction::Bidirectional),
            MapSync::Skip,
        )?;
        // INVARIANT: Mapped just above.
        Ok(Self {
            dev: Some(dev),
            table,
        })
    }

    /// Performs what `decision` asks for: cleans first, then invalidates,
    /// each over its spans of pages (a span of the whole buffer in one
    /// call). Only `tracked` buffers ask for any, and those exist only when
    /// the maintenance device is mapped.
    pub(crate) fn perform(&self, decision: &Decision, whole: ownership::Range) {
        let Some(dev) = &self.dev else {
            return;
        };
        let sync = |span: ownership::Range, for_device: bool| match (span == whole, for_device) {
            (true, true) => dev.sync_for_device(&self.table, raw(ownership::Direction::ToDevice)),
            (true, false) => dev.sync_for_cpu(&self.table, raw(ownership::Direction::FromDevice)),
            (false, _) => {
                let offset = span.start as usize * PAGE_SIZE;
                let len = span.len() as usize * PAGE_SIZE;
                dev.sync_range(&self.table, offset, len, for_device)
            }
        };
        for (spans, for_device) in [(&decision.clean, true), (&decision.invalidate, false)] {
            for _ in 0..spans.passes() {
                spans.iter().for_each(|span| sync(span, for_device));
            }
        }
    }
}

impl Drop for MaintainedTable {
    fn drop(&mut self) {
        if let Some(dev) = &self.dev {
            dev.unmap(
                &self.table,
                raw(ownership::Direction::Bidirectional),
                MapSync::Skip,
            );
        }
    }
}

/// Invalidates aliases of the buffer in the kernel mapping before the CPU
/// reads through it (needed on aliasing caches; a no-op on arm64).
pub(crate) fn invalidate_kernel_alias(vaddr: KernelAddress, len: usize) {
    for (start, size) in int_steps(vaddr, len) {
        // SAFETY: `start..start + size` lies in the `len` bytes `vaddr` maps.
        unsafe { sys::rdh_invalidate_kernel_vmap_range(start, size) };
    }
}

/// Writes back the kernel mapping's aliases after the CPU wrote through it.
pub(crate) fn flush_kernel_alias(vaddr: KernelAddress, len: usize) {
    for (start, size) in int_steps(vaddr, len) {
        // SAFETY: `start..start + size` lies in the `len` bytes `vaddr` maps.
        unsafe { sys::rdh_flush_kernel_vmap_range(start, size) };
    }
}

/// `len` bytes from `vaddr` in pieces whose size fits the `int` that the
/// kernel's vmap range helpers take (buffers may be 2 GiB or more).
fn int_steps(
    vaddr: KernelAddress,
    len: usize,
) -> impl Iterator<Item = (*mut core::ffi::c_void, i32)> {
    const STEP: i32 = 1 << 30;
    (0..len).step_by(STEP as usize).map(move |offset| {
        let size = i32::try_from(len - offset).unwrap_or(STEP).min(STEP);
        (vaddr.as_ptr().wrapping_byte_add(offset), size)
    })
}
