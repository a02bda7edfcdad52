// SPDX-License-Identifier: GPL-2.0

//! The importer test driver (`/dev/rdh_importer`, module `rdh_importer`):
//! fake DMA devices that attach to and map our dma-bufs.

use crate::sys::RawIoctl;
use rustix::ioctl::{opcode, Opcode};
use std::{fs::File, io, os::fd::RawFd};

/// Where the initramfs keeps the module.
pub const MODULE_PATH: &str = "/rdh_importer.ko";

/// `_IO('R', nr)`: every argument is passed by value.
const fn io(nr: u8) -> Opcode {
    opcode::none(b'R', nr)
}
const CREATE_DEVICE: Opcode = io(1);
const ATTACH: Opcode = io(2);
const MAP: Opcode = io(3);
const UNMAP: Opcode = io(4);
const DETACH: Opcode = io(5);
const FENCE: Opcode = io(6);
const SIGNAL: Opcode = io(7);
const COUNTERS_RESET: Opcode = io(8);
const CLEANED_KIB: Opcode = io(9);
const INVALIDATED_KIB: Opcode = io(10);
const VMAP: Opcode = io(11);
const VUNMAP: Opcode = io(12);
const FILL: Opcode = io(13);
const VERIFY: Opcode = io(14);
const EDU_ATTACH: Opcode = io(15);
const EDU_WRITE: Opcode = io(16);
const EDU_READ: Opcode = io(17);
const EDU_INFO: Opcode = io(18);
const USER_WRITECOMBINE: Opcode = io(19);
const SEGMENTS: Opcode = io(20);

/// The driver's test pattern: the little-endian 64-bit word at word index
/// `index` of a buffer filled with `seed` (splitmix64, as in the driver).
pub fn pattern_word(seed: u32, index: u64) -> u64 {
    let mut z =
        (seed as u64).wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `bytes` (a whole buffer or a page-aligned part at `offset`) with
/// the pattern of `seed`.
pub fn fill_pattern(bytes: &mut [u8], offset: usize, seed: u32) {
    for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
        let index = ((offset / 8) + i) as u64;
        word.copy_from_slice(&pattern_word(seed, index).to_le_bytes());
    }
}

/// The byte offset of the first word of `bytes` that differs from the
/// pattern of `seed`, if any.
pub fn pattern_mismatch(bytes: &[u8], offset: usize, seed: u32) -> Option<usize> {
    bytes.chunks_exact(8).enumerate().find_map(|(i, word)| {
        let index = ((offset / 8) + i) as u64;
        (word != pattern_word(seed, index).to_le_bytes()).then_some(offset + i * 8)
    })
}

/// How a fence is made known to the heap.
#[derive(Clone, Copy, Debug)]
pub enum Sync {
    /// Declared through `rdh_dma_buf_access_until`.
    Explicit = 1,
    /// Added to the buffer's reservation object (implicit sync).
    Implicit = 2,
}

/// DMA direction of a mapping, as the driver numbers them.
#[derive(Clone, Copy, Debug)]
pub enum Dir {
    Bidirectional = 0,
    ToDevice = 1,
    FromDevice = 2,
}

/// A session: its devices and attachments go away when it is dropped.
pub struct Session(File);

/// An attachment index within a session.
#[derive(Clone, Copy, Debug)]
pub struct Attachment(u64);

/// A fence index within a session.
#[derive(Clone, Copy, Debug)]
pub struct Fence(u64);

/// A kernel mapping (`dma_buf_vmap`) index within a session.
#[derive(Clone, Copy, Debug)]
pub struct KernelMapping(u64);

/// A device index within a session.
#[derive(Clone, Copy, Debug)]
pub struct Device(u64);

impl Session {
    pub fn open() -> io::Result<Self> {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/rdh_importer")
            .map(Self)
    }

    fn ioctl(&self, cmd: Opcode, arg: u64) -> io::Result<u64> {
        let by_value = RawIoctl::new(cmd, std::ptr::without_provenance_mut(arg as usize));
        // SAFETY: The driver takes its arguments by value (an address only
        // to look up its page-table entry) and returns a non-negative
        // number; its fake devices may write to our buffers' pages, as a
        // real device would.
        let ret = unsafe { rustix::ioctl::ioctl(&self.0, by_value) }?;
        Ok(ret as u64)
    }

    /// A new fake device.
    pub fn device(&self, coherent: bool) -> io::Result<Device> {
        self.ioctl(CREATE_DEVICE, coherent as u64).map(Device)
    }

    /// Attaches `device` to the dma-buf `fd`.
    pub fn attach(&self, device: Device, fd: RawFd) -> io::Result<Attachment> {
        self.ioctl(ATTACH, (device.0 << 32) | fd as u64)
            .map(Attachment)
    }

    pub fn map(&self, a: Attachment, dir: Dir) -> io::Result<()> {
        self.ioctl(MAP, (a.0 << 8) | dir as u64).map(drop)
    }

    pub fn unmap(&self, a: Attachment) -> io::Result<()> {
        self.ioctl(UNMAP, a.0).map(drop)
    }

    pub fn detach(&self, a: Attachment) -> io::Result<()> {
        self.ioctl(DETACH, a.0).map(drop)
    }

    /// A new fence for a job of attachment `a` in direction `dir`.
    pub fn fence(&self, a: Attachment, sync: Sync, dir: Dir) -> io::Result<Fence> {
        self.ioctl(FENCE, (a.0 << 16) | ((sync as u64) << 8) | dir as u64)
            .map(Fence)
    }

    /// Signals a fence now (`delay_ms == 0`) or after a delay.
    pub fn signal(&self, f: Fence, delay_ms: u32) -> io::Result<()> {
        self.ioctl(SIGNAL, (f.0 << 32) | delay_ms as u64).map(drop)
    }

    /// Maps the whole dma-buf `fd` into the kernel; the mapping holds a
    /// reference to the buffer until [`Session::vunmap`] or the session ends.
    pub fn vmap(&self, fd: RawFd) -> io::Result<KernelMapping> {
        self.ioctl(VMAP, fd as u64).map(KernelMapping)
    }

    pub fn vunmap(&self, m: KernelMapping) -> io::Result<()> {
        self.ioctl(VUNMAP, m.0).map(drop)
    }

    /// Writes the pattern of `seed` through the kernel mapping (inside
    /// `dma_buf_begin/end_cpu_access`).
    pub fn fill(&self, m: KernelMapping, seed: u32) -> io::Result<()> {
        self.ioctl(FILL, (m.0 << 32) | seed as u64).map(drop)
    }

    /// Checks the pattern of `seed` through the kernel mapping: `Ok(None)`
    /// if intact, else the byte offset of the first wrong word.
    pub fn verify(&self, m: KernelMapping, seed: u32) -> io::Result<Option<u64>> {
        self.ioctl(VERIFY, (m.0 << 32) | seed as u64)
            .map(|r| r.checked_sub(1))
    }

    /// Attaches QEMU's edu device (a real DMA engine) to the dma-buf `fd`.
    pub fn edu_attach(&self, fd: RawFd) -> io::Result<Attachment> {
        self.ioctl(EDU_ATTACH, fd as u64).map(Attachment)
    }

    /// The edu engine writes the page-relative pattern of `seed` into
    /// sampled pages of its mapping; returns how many.
    pub fn edu_write(&self, a: Attachment, seed: u32) -> io::Result<u64> {
        self.ioctl(EDU_WRITE, (a.0 << 32) | seed as u64)
    }

    /// The edu engine reads sampled pages of its mapping and compares them
    /// with the buffer-wide pattern of `seed`: (pages read, pages wrong).
    pub fn edu_read(&self, a: Attachment, seed: u32) -> io::Result<(u64, u64)> {
        self.ioctl(EDU_READ, (a.0 << 32) | seed as u64)
            .map(|r| (r & 0xffff_ffff, r >> 32))
    }

    /// What the DMA layer made of the edu device: (coherent, behind an
    /// IOMMU).
    pub fn edu_info(&self) -> io::Result<(bool, bool)> {
        self.ioctl(EDU_INFO, 0).map(|r| (r & 1 != 0, r & 2 != 0))
    }

    /// The segments of mapped attachment `a`: (CPU segments, which an
    /// IOMMU maps one by one; DMA segments; the smallest CPU segment in
    /// bytes).
    pub fn segments(&self, a: Attachment) -> io::Result<(u64, u64, u64)> {
        let what = |n: u64| self.ioctl(SEGMENTS, (a.0 << 8) | n);
        Ok((what(0)?, what(1)?, what(2)? << 10))
    }

    /// Whether this process's page-table entry at `addr` (a mapped page of
    /// a dma-buf mmap) is write-combined.
    pub fn user_mapping_is_write_combined(&self, addr: *const u8) -> io::Result<bool> {
        self.ioctl(USER_WRITECOMBINE, addr as u64).map(|r| r == 1)
    }

    /// Zeroes the heap-independent maintenance counters.
    pub fn reset_counters(&self) -> io::Result<()> {
        self.ioctl(COUNTERS_RESET, 0).map(drop)
    }

    /// Bytes (cleaned, invalidated) by the arch code since the reset.
    pub fn counters(&self) -> io::Result<(u64, u64)> {
        Ok((
            self.ioctl(CLEANED_KIB, 0)? * 1024,
            self.ioctl(INVALIDATED_KIB, 0)? * 1024,
        ))
    }

    /// Attaches, maps in `dir`, unmaps and detaches: one device job.
    pub fn job(&self, device: Device, fd: RawFd, dir: Dir) -> io::Result<()> {
        let a = self.attach(device, fd)?;
        self.map(a, dir)?;
        self.unmap(a)?;
        self.detach(a)
    }
}

#[cfg(test)]
mod tests {
    /// The driver's numbers: `('R' << 8) | nr`, no size, no direction.
    #[test]
    fn opcodes_are_plain_io_numbers() {
        assert_eq!(super::CREATE_DEVICE as u64, 0x5201);
        assert_eq!(super::USER_WRITECOMBINE as u64, 0x5213);
    }
}
