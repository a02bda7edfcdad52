// SPDX-License-Identifier: GPL-2.0

//! The importer test driver (`/dev/rdh_importer`, module `rdh_importer`):
//! fake DMA devices that attach to and map our dma-bufs.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
};

/// Where the initramfs keeps the module.
pub const MODULE_PATH: &str = "/rdh_importer.ko";

const fn io(nr: u64) -> u64 {
    ((b'R' as u64) << 8) | nr
}
const CREATE_DEVICE: u64 = io(1);
const ATTACH: u64 = io(2);
const MAP: u64 = io(3);
const UNMAP: u64 = io(4);
const DETACH: u64 = io(5);
const FENCE: u64 = io(6);
const SIGNAL: u64 = io(7);
const COUNTERS_RESET: u64 = io(8);
const CLEANED_KIB: u64 = io(9);
const INVALIDATED_KIB: u64 = io(10);

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

    fn ioctl(&self, cmd: u64, arg: u64) -> io::Result<u64> {
        // SAFETY: The driver takes its arguments by value.
        let ret =
            unsafe { libc::ioctl(self.0.as_raw_fd(), cmd as libc::Ioctl, arg as libc::c_ulong) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as u64)
        }
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
