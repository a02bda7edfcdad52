// SPDX-License-Identifier: GPL-2.0

//! QEMU's `edu` PCI device as an importer that really DMAs: its engine
//! writes a pattern into a mapped dma-buf, or reads the buffer back, at the
//! bus addresses the dma-buf core handed out (IOVAs behind an IOMMU, bounce
//! slots under swiotlb). The PCI plumbing and the single transfer are C
//! (`rdi_edu.c`); this module decides what to transfer and checks it.
//!
//! Each transfer takes 100 ms of QEMU's virtual clock, so not every page is
//! moved: per DMA segment the first, the last and two pages chosen by the
//! seed (the same page is moved once). Segments are walked in order, so a page's offset in
//! the buffer is the DMA length before it.

use super::{pattern_word, sys};
use kernel::{error::to_result, prelude::*};

// `struct device` holds a field-less `lockdep_map` without lockdep; only
// pointers cross, as in the bindgen output.
#[allow(improper_ctypes)]
mod ffi {
    use super::sys::{device, sg_table};
    use kernel::ffi::c_int;

    extern "C" {
        pub(crate) fn rdi_edu_device() -> *mut device;
        pub(crate) fn rdi_edu_info() -> c_int;
        pub(crate) fn rdi_edu_page() -> *mut u64;
        pub(crate) fn rdi_edu_copy(ram: u64, to_ram: bool) -> c_int;
        pub(crate) fn rdi_edu_copy_page(to_page: bool) -> c_int;
        pub(crate) fn rdi_sg_segments(
            table: *mut sg_table,
            cpu: *mut u32,
            dma: *mut u32,
            smallest_cpu: *mut u64,
        );
        pub(crate) fn rdi_sg_dma_segment(
            table: *mut sg_table,
            index: u32,
            addr: *mut u64,
            len: *mut u64,
        ) -> c_int;
    }
}

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

/// The edu device, if the machine has one.
pub(crate) fn device() -> Result<*mut sys::device> {
    // SAFETY: Reads a pointer set by probe; the device stays bound while
    // this module is loaded.
    let dev = unsafe { ffi::rdi_edu_device() };
    if dev.is_null() {
        Err(ENODEV)
    } else {
        Ok(dev)
    }
}

/// The segments of a mapped table: (CPU segments, which an IOMMU maps one
/// by one; DMA segments; the smallest CPU segment in bytes).
///
/// # Safety
///
/// `table` must be a mapped table.
pub(crate) unsafe fn segments(table: *mut sys::sg_table) -> (u32, u32, u64) {
    let (mut cpu, mut dma, mut smallest) = (0u32, 0u32, 0u64);
    // SAFETY: `table` is mapped (the caller's promise); the outputs are
    // valid for writes.
    unsafe { ffi::rdi_sg_segments(table, &mut cpu, &mut dma, &mut smallest) };
    (cpu, dma, smallest)
}

/// What the DMA layer made of the device: bit 0 coherent, bit 1 behind an
/// IOMMU.
pub(crate) fn info() -> Result<isize> {
    // SAFETY: Reads the bound device's DMA setup.
    let info = unsafe { ffi::rdi_edu_info() };
    to_result(info.min(0))?;
    Ok(info as isize)
}

/// A page the engine moves: where it is in the buffer and on the bus.
#[derive(Clone, Copy)]
struct SampledPage {
    offset: usize,
    bus: u64,
}

/// The pages of a mapped table the engine moves (see the module comment).
///
/// # Safety
///
/// `table` must be a table mapped for the edu device.
unsafe fn sampled_pages(table: *mut sys::sg_table, seed: u64) -> Result<KVec<SampledPage>> {
    let mut pages = KVec::new();
    let mut offset = 0;
    for index in 0.. {
        let (mut addr, mut len) = (0u64, 0u64);
        // SAFETY: `table` is mapped (the caller's promise); the outputs are
        // valid for writes.
        if unsafe { ffi::rdi_sg_dma_segment(table, index, &mut addr, &mut len) } != 0 {
            break;
        }
        let count = len as usize / PAGE;
        if count > 0 {
            let random = |n: u64| (pattern_word(seed, u64::from(index) * 2 + n) as usize) % count;
            for page in [0, random(0), random(1), count - 1] {
                let bus = addr + (page * PAGE) as u64;
                if !pages.iter().any(|p: &SampledPage| p.bus == bus) {
                    pages.push(
                        SampledPage {
                            offset: offset + page * PAGE,
                            bus,
                        },
                        GFP_KERNEL,
                    )?;
                }
            }
        }
        offset += len as usize;
    }
    Ok(pages)
}

/// The device writes, into each sampled page of the mapping, the page-relative
/// pattern of `seed` (word `i` of every such page is `pattern_word(seed, i)`).
/// Returns the number of pages written.
///
/// # Safety
///
/// `table` must be a table mapped for the edu device in a direction that
/// lets it write.
pub(crate) unsafe fn write(table: *mut sys::sg_table, seed: u64) -> Result<isize> {
    // SAFETY: Guaranteed by the caller.
    let pages = unsafe { sampled_pages(table, seed) }?;
    // SAFETY: The driver's coherent page is `PAGE` bytes while bound.
    let page = unsafe { ffi::rdi_edu_page() };
    if page.is_null() {
        return Err(ENODEV);
    }
    for i in 0..WORDS {
        // SAFETY: `i < WORDS`: inside the page; coherent memory.
        unsafe {
            page.add(i)
                .write_volatile(pattern_word(seed, i as u64).to_le())
        };
    }
    // SAFETY: Moves our coherent page into the engine's buffer.
    to_result(unsafe { ffi::rdi_edu_copy_page(false) })?;
    for p in pages.iter() {
        // SAFETY: `p.bus` is a page of the mapping, which may be written.
        to_result(unsafe { ffi::rdi_edu_copy(p.bus, true) })?;
    }
    Ok(pages.len() as isize)
}

/// The device reads each sampled page of the mapping and compares it with
/// the buffer-wide pattern of `seed` (word `i` of the buffer is
/// `pattern_word(seed, i)`). Returns `pages compared | pages wrong << 32`.
///
/// # Safety
///
/// `table` must be a table mapped for the edu device in a direction that
/// lets it read.
pub(crate) unsafe fn read(table: *mut sys::sg_table, seed: u64) -> Result<isize> {
    // SAFETY: Guaranteed by the caller.
    let pages = unsafe { sampled_pages(table, seed) }?;
    // SAFETY: As in `write`.
    let page = unsafe { ffi::rdi_edu_page() };
    if page.is_null() {
        return Err(ENODEV);
    }
    let mut wrong = 0;
    for p in pages.iter() {
        // SAFETY: `p.bus` is a page of the mapping, which may be read; then
        // the engine's buffer goes to our page.
        to_result(unsafe { ffi::rdi_edu_copy(p.bus, false) })?;
        // SAFETY: As above.
        to_result(unsafe { ffi::rdi_edu_copy_page(true) })?;
        let first = (p.offset / 8) as u64;
        let intact = (0..WORDS).all(|i| {
            // SAFETY: `i < WORDS`: inside the page; coherent memory.
            let word = u64::from_le(unsafe { page.add(i).read_volatile() });
            word == pattern_word(seed, first + i as u64)
        });
        if !intact {
            wrong += 1;
        }
    }
    Ok((pages.len() | (wrong << 32)) as isize)
}
