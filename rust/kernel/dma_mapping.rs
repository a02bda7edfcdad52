// SPDX-License-Identifier: GPL-2.0

//! Streaming DMA mappings of page blocks for any device, and what the DMA
//! layer says of a device's mappings.
//!
//! C header: [`include/linux/dma-mapping.h`](srctree/include/linux/dma-mapping.h)
//!
//! The kernel crate maps tables for a bound device it drives
//! ([`kernel::scatterlist::SGTable<Owned>`]); an exporter maps its pages
//! for importers' devices, which it only holds references on
//! ([`ARef<Device>`]), and syncs those mappings when ownership of the
//! buffer moves (TODO(dma-any-device) in `rust/todo.rst`).

use crate::bindings;
use crate::{page_block::PageBlock, sg_table::BlockTable};
use kernel::{device::Device, dma::DataDirection, error::to_result, prelude::*, sync::aref::ARef};

/// Why a device's DMA mappings may bounce through swiotlb slots: then the
/// DMA API copies between the pages and the slot, in the mapping's own map,
/// unmap and sync calls, and only when they sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounce {
    /// Every mapping bounces: `swiotlb=force`, a restricted DMA pool, a
    /// confidential guest.
    Forced,
    /// The DMA mask cannot reach all of RAM (e.g. 32 bits, RAM above 4 GiB).
    AddressingLimited,
    /// The DMA layer limits the mapping size, which it does where it may
    /// bounce (e.g. an untrusted device behind an IOMMU).
    LimitedMapping,
}

/// The C device of `dev` (TODO(device-as-raw) in `rust/todo.rst`:
/// `Device::as_raw` is private to the kernel crate).
pub fn raw(dev: &Device) -> *mut bindings::device {
    // `Device` is a transparent wrapper of `struct device`.
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// Whether `dev` snoops the CPU caches (its mappings need no maintenance).
pub fn is_coherent(dev: &Device) -> bool {
    // SAFETY: `dev` is a live device.
    unsafe { bindings::dev_is_dma_coherent(raw(dev)) }
}

/// Whether (and why) mappings for `dev` may bounce through swiotlb.
pub fn bounce(dev: &Device) -> Option<Bounce> {
    let dev = raw(dev);
    // SAFETY: `dev` is a live device for all three calls.
    unsafe {
        if bindings::is_swiotlb_force_bounce(dev) {
            Some(Bounce::Forced)
        } else if bindings::dma_addressing_limited(dev) {
            Some(Bounce::AddressingLimited)
        } else if bindings::dma_max_mapping_size(dev) != usize::MAX {
            Some(Bounce::LimitedMapping)
        } else {
            None
        }
    }
}

/// Whether mappings for `dev` of memory below physical address `end`
/// never bounce, though [`bounce`] may say that its mappings in general
/// may (a 32-bit device and memory below 4 GiB). `false` where unsure:
/// only direct mappings without bus offsets are judged
/// (TODO(dma-reach) in `rust/todo.rst`).
pub fn reaches(dev: &Device, end: u64) -> bool {
    // SAFETY: `dev` is a live device.
    unsafe { bindings::dma_direct_reaches(raw(dev), end) }
}

/// The longest scatter-gather entry `dev` can map, in whole pages.
pub fn max_segment(dev: &Device) -> usize {
    let dev = raw(dev);
    // SAFETY: `dev` is a live device.
    let max = unsafe {
        bindings::dma_max_mapping_size(dev).min(bindings::dma_get_max_seg_size(dev) as usize)
    };
    (max & !(kernel::page::PAGE_SIZE - 1)).max(kernel::page::PAGE_SIZE)
}

/// Writes `block` back from the CPU caches to memory, by mapping it for
/// `dev` (which must not be coherent, nor bounce) and unmapping it
/// without a sync; `false` if the DMA layer could not map it.
pub fn clean_block(dev: &Device, block: &PageBlock) -> bool {
    map_and_unmap(dev, block, DataDirection::ToDevice, true)
}

/// Writes `block` back and drops it from the CPU caches (the map cleans,
/// the unmap of a bidirectional mapping invalidates); `false` if the DMA
/// layer could not map it.
pub fn flush_block(dev: &Device, block: &PageBlock) -> bool {
    map_and_unmap(dev, block, DataDirection::Bidirectional, false)
}

fn map_and_unmap(
    dev: &Device,
    block: &PageBlock,
    dir: DataDirection,
    skip_unmap_sync: bool,
) -> bool {
    let (dev, dir) = (raw(dev), dir.into());
    // SAFETY: `dev` is live, the block is ours for the call.
    let addr = unsafe { bindings::dma_map_page_attrs(dev, block.head(), 0, block.size(), dir, 0) };
    // SAFETY: As above.
    if unsafe { bindings::dma_mapping_error(dev, addr) } != 0 {
        return false;
    }
    let attrs = if skip_unmap_sync { skip_cpu_sync() } else { 0 };
    // SAFETY: Mapped just above with these arguments.
    unsafe { bindings::dma_unmap_page_attrs(dev, addr, block.size(), dir, attrs) };
    true
}

/// `DMA_ATTR_SKIP_CPU_SYNC` for C (TODO(dma-attrs-raw) in `rust/todo.rst`).
fn skip_cpu_sync() -> usize {
    bindings::DMA_ATTR_SKIP_CPU_SYNC as usize
}

/// A [`BlockTable`] for one device, mapped for it or not.
///
/// # Invariants
///
/// If `mapped` is set, `table` is mapped for `dev` with that direction,
/// syncing the CPU caches or not as it says; it is unmapped before the
/// table is freed.
pub struct DeviceTable {
    dev: ARef<Device>,
    table: BlockTable,
    mapped: Option<(DataDirection, bool)>,
}

impl DeviceTable {
    /// `table`, not mapped yet, for `dev`.
    pub fn new(dev: ARef<Device>, table: BlockTable) -> Self {
        // INVARIANT: Not mapped.
        Self {
            dev,
            table,
            mapped: None,
        }
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The table (with the device addresses while mapped).
    pub fn table(&self) -> &BlockTable {
        &self.table
    }

    /// The direction of the mapping, if mapped.
    pub fn mapped(&self) -> Option<DataDirection> {
        self.mapped.map(|(dir, _)| dir)
    }

    /// Maps the table in direction `dir`; with `skip_cpu_sync`, the map and
    /// unmap leave the CPU caches alone (`DMA_ATTR_SKIP_CPU_SYNC`).
    /// `EBUSY` if mapped already.
    pub fn map(&mut self, dir: DataDirection, skip_cpu_sync: bool) -> Result {
        if self.mapped.is_some() {
            return Err(EBUSY);
        }
        let attrs = if skip_cpu_sync {
            self::skip_cpu_sync()
        } else {
            0
        };
        // SAFETY: The device is live (we hold a reference); the table is
        // allocated, over pages its owner keeps, and not mapped.
        to_result(unsafe {
            bindings::dma_map_sgtable(raw(&self.dev), self.table.as_raw(), dir.into(), attrs)
        })?;
        // INVARIANT: Mapped just above.
        self.mapped = Some((dir, skip_cpu_sync));
        Ok(())
    }

    /// Unmaps the table, if mapped.
    pub fn unmap(&mut self) {
        if let Some((dir, skip_cpu_sync)) = self.mapped.take() {
            let attrs = if skip_cpu_sync {
                self::skip_cpu_sync()
            } else {
                0
            };
            // SAFETY: Mapped for this device with these arguments (type
            // invariant).
            unsafe {
                bindings::dma_unmap_sgtable(raw(&self.dev), self.table.as_raw(), dir.into(), attrs)
            };
        }
    }

    /// Makes device writes visible to the CPU (invalidates, unless `dir` is
    /// to the device); nothing if not mapped.
    pub fn sync_for_cpu(&self, dir: DataDirection) {
        if self.mapped.is_some() {
            // SAFETY: Mapped for this device (type invariant).
            unsafe {
                bindings::dma_sync_sgtable_for_cpu(raw(&self.dev), self.table.as_raw(), dir.into())
            };
        }
    }

    /// Makes CPU writes visible to the device (cleans); nothing if not
    /// mapped.
    pub fn sync_for_device(&self, dir: DataDirection) {
        if self.mapped.is_some() {
            // SAFETY: Mapped for this device (type invariant).
            unsafe {
                bindings::dma_sync_sgtable_for_device(
                    raw(&self.dev),
                    self.table.as_raw(),
                    dir.into(),
                )
            };
        }
    }

    /// Cleans (`for_device`) or invalidates bytes `offset..offset + len` of
    /// what the table maps; nothing if not mapped. The DMA segments hold
    /// the bytes in order, however the mapping merged them.
    pub fn sync_range(&self, offset: usize, len: usize, for_device: bool) {
        if self.mapped.is_none() {
            return;
        }
        let end = offset.saturating_add(len);
        let dev = raw(&self.dev);
        let mut at = 0usize;
        for entry in self.table.iter() {
            if at >= end {
                break;
            }
            let seg_len = entry.dma_len() as usize;
            let (from, to) = (offset.max(at), end.min(at + seg_len));
            if from < to {
                let (addr, skip, size) = (entry.dma_address(), from - at, to - from);
                // SAFETY: The segment is mapped for this device (type
                // invariant) and `skip..skip + size` lies inside it.
                unsafe {
                    if for_device {
                        bindings::dma_sync_single_range_for_device(
                            dev,
                            addr,
                            skip,
                            size,
                            DataDirection::ToDevice.into(),
                        )
                    } else {
                        bindings::dma_sync_single_range_for_cpu(
                            dev,
                            addr,
                            skip,
                            size,
                            DataDirection::FromDevice.into(),
                        )
                    }
                };
            }
            at += seg_len;
        }
    }
}

impl Drop for DeviceTable {
    fn drop(&mut self) {
        self.unmap();
    }
}
