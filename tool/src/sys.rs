// SPDX-License-Identifier: GPL-2.0

//! The raw dma-heap / dma-buf ioctls (for inputs the `dma-heap` crate
//! cannot express, and the range SYNC of our control device), user
//! mappings of a dma-buf, and `/proc/meminfo`.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `struct dma_heap_allocation_data` from `<linux/dma-heap.h>`.
#[repr(C)]
#[derive(Default)]
pub struct AllocationData {
    pub len: u64,
    pub fd: u32,
    pub fd_flags: u32,
    pub heap_flags: u64,
}

const fn iowr(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    // _IOWR: direction 3 (read | write) in bits 30..31.
    ((3 << 30)
        | ((size as libc::c_ulong) << 16)
        | ((ty as libc::c_ulong) << 8)
        | nr as libc::c_ulong) as libc::c_ulong
}

const fn iow(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((1 << 30)
        | ((size as libc::c_ulong) << 16)
        | ((ty as libc::c_ulong) << 8)
        | nr as libc::c_ulong) as libc::c_ulong
}

/// `DMA_HEAP_IOCTL_ALLOC`.
pub const DMA_HEAP_IOCTL_ALLOC: libc::c_ulong =
    iowr(b'H', 0, std::mem::size_of::<AllocationData>());
/// `DMA_BUF_IOCTL_SYNC`.
pub const DMA_BUF_IOCTL_SYNC: libc::c_ulong = iow(b'b', 0, 8);
pub const DMA_BUF_SYNC_READ: u64 = 1;
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
pub const DMA_BUF_SYNC_RW: u64 = 3;
pub const DMA_BUF_SYNC_START: u64 = 0;
pub const DMA_BUF_SYNC_END: u64 = 4;

/// Issues `DMA_HEAP_IOCTL_ALLOC` with an argument of `arg.len()` bytes
/// (older or newer struct layouts): `len` at offset 0, the fd comes back at
/// offset 8.
pub fn heap_alloc_sized(heap: &File, arg: &mut [u8]) -> io::Result<OwnedFd> {
    let cmd = iowr(b'H', 0, arg.len());
    // SAFETY: `arg` is a writable buffer of the size encoded in `cmd`.
    cvt(unsafe { libc::ioctl(heap.as_raw_fd(), cmd as libc::Ioctl, arg.as_mut_ptr()) })?;
    let fd = u32::from_ne_bytes([arg[8], arg[9], arg[10], arg[11]]);
    // SAFETY: On success the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Issues `DMA_HEAP_IOCTL_ALLOC` with exactly the given fields.
pub fn heap_alloc_raw(heap: &File, data: &mut AllocationData) -> io::Result<OwnedFd> {
    // SAFETY: `data` is a valid `dma_heap_allocation_data` for the ioctl.
    cvt(unsafe {
        libc::ioctl(
            heap.as_raw_fd(),
            DMA_HEAP_IOCTL_ALLOC as libc::Ioctl,
            data as *mut AllocationData,
        )
    })?;
    // SAFETY: On success the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(data.fd as RawFd) })
}

/// Issues `DMA_BUF_IOCTL_SYNC` with the given flags.
pub fn dma_buf_sync(buf: &impl AsRawFd, flags: u64) -> io::Result<()> {
    let mut flags = flags;
    // SAFETY: `flags` is a valid `struct dma_buf_sync` (one u64).
    cvt(unsafe {
        libc::ioctl(
            buf.as_raw_fd(),
            DMA_BUF_IOCTL_SYNC as libc::Ioctl,
            &mut flags as *mut u64,
        )
    })
    .map(drop)
}

/// The heap's control device (`control.rs`).
pub const CONTROL_DEVICE: &str = "/dev/rust_dmabuf_heap";
/// `RDH_IOCTL_SYNC_RANGE` (`include/uapi/linux/rust_dmabuf_heap.h`).
pub const RDH_IOCTL_SYNC_RANGE: libc::c_ulong = iow(b'R', 0x30, 24);

/// `struct rdh_sync_range`.
#[repr(C)]
pub struct SyncRange {
    pub fd: i32,
    pub flags: u32,
    pub offset: u64,
    pub len: u64,
}

/// Issues `RDH_IOCTL_SYNC_RANGE` on the control device `control` for
/// dma-buf fd `fd` (any number, for misuse tests).
pub fn sync_range(
    control: &impl AsRawFd,
    fd: RawFd,
    flags: u64,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut request = SyncRange {
        fd,
        flags: flags as u32,
        offset,
        len,
    };
    // SAFETY: `request` is a valid `struct rdh_sync_range`.
    cvt(unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            RDH_IOCTL_SYNC_RANGE as libc::Ioctl,
            &mut request as *mut SyncRange,
        )
    })
    .map(drop)
}

/// A shared read/write mapping of a dma-buf.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: The mapping is plain process memory; any thread may use it, and
// `bytes_mut` needs `&mut self`.
unsafe impl Send for Mapping {}
// SAFETY: Shared references only read.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes at page offset `pgoff` of `buf`.
    pub fn new(buf: &impl AsRawFd, len: usize, pgoff: usize) -> io::Result<Self> {
        let offset = pgoff
            .checked_mul(4096)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or(io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        Self::at_offset(buf, len, offset)
    }

    /// Maps `len` bytes at byte offset `offset` (any value, for misuse
    /// tests) of `buf`.
    pub fn at_offset(buf: &impl AsRawFd, len: usize, offset: libc::off_t) -> io::Result<Self> {
        // SAFETY: A fresh shared mapping; the kernel validates the range.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                buf.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapping's address, for system calls on it (`mprotect`, a
    /// partial `munmap`); dropping the value unmaps the whole range.
    pub fn as_ptr(&self) -> *mut libc::c_void {
        self.ptr.cast()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: The mapping is `len` bytes long and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: As above, and we hold the only Rust reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping made by `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Size of a dma-buf, as the kernel reports it through `lseek`.
pub fn dma_buf_size(buf: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: Plain lseek on a valid fd.
    let end = unsafe { libc::lseek(buf.as_raw_fd(), 0, libc::SEEK_END) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end as u64)
}

/// Total RAM in bytes.
pub fn total_ram() -> u64 {
    // SAFETY: `info` is a valid out-parameter.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: As above.
    unsafe { libc::sysinfo(&mut info) };
    info.totalram as u64 * info.mem_unit as u64
}

/// A value from /proc/meminfo, in KiB.
pub fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}
