// SPDX-License-Identifier: GPL-2.0

//! The raw dma-heap / dma-buf ioctls (for inputs the `dma-heap` crate
//! cannot express, and the range SYNC of our control device), user
//! mappings of a dma-buf, and `/proc/meminfo`: through `rustix`, which
//! checks the return values and turns them into `io::Error`s.

use rustix::{
    fs::SeekFrom,
    ioctl::{self, opcode, Direction, Ioctl, IoctlOutput, Opcode, Setter, Updater},
    mm::{MapFlags, ProtFlags},
};
use std::{
    ffi::c_void,
    fs::File,
    io,
    os::fd::{AsFd, FromRawFd, OwnedFd, RawFd},
};

/// `struct dma_heap_allocation_data` from `<linux/dma-heap.h>`.
#[repr(C)]
#[derive(Default)]
pub struct AllocationData {
    pub len: u64,
    pub fd: u32,
    pub fd_flags: u32,
    pub heap_flags: u64,
}

/// `DMA_HEAP_IOCTL_ALLOC`.
pub const DMA_HEAP_IOCTL_ALLOC: Opcode = opcode::read_write::<AllocationData>(b'H', 0);
/// `DMA_BUF_IOCTL_SYNC` (`struct dma_buf_sync` is one u64).
pub const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<u64>(b'b', 0);
pub const DMA_BUF_SYNC_READ: u64 = 1;
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
pub const DMA_BUF_SYNC_RW: u64 = 3;
pub const DMA_BUF_SYNC_START: u64 = 0;
pub const DMA_BUF_SYNC_END: u64 = 4;

/// An ioctl the `rustix` patterns cannot express: an opcode known at run
/// time, an argument passed as is (a pointer or a number), and the
/// ioctl's return value as the result. Assumed to write to user memory.
pub(crate) struct RawIoctl {
    opcode: Opcode,
    arg: *mut c_void,
}

impl RawIoctl {
    pub(crate) fn new(opcode: Opcode, arg: *mut c_void) -> Self {
        Self { opcode, arg }
    }
}

// SAFETY: `ioctl::ioctl`'s callers vouch for the opcode and argument (it
// is an unsafe function); this only hands them over, says that the call
// may write to user memory, and returns the return value.
unsafe impl Ioctl for RawIoctl {
    type Output = IoctlOutput;

    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// Issues `DMA_HEAP_IOCTL_ALLOC` with an argument of `arg.len()` bytes
/// (older or newer struct layouts): `len` at offset 0, the fd comes back at
/// offset 8.
pub fn heap_alloc_sized(heap: &File, arg: &mut [u8]) -> io::Result<OwnedFd> {
    let cmd = opcode::from_components(Direction::ReadWrite, b'H', 0, arg.len());
    // SAFETY: `arg` is a writable buffer of the size encoded in `cmd`,
    // which is all the kernel reads or writes.
    unsafe { ioctl::ioctl(heap, RawIoctl::new(cmd, arg.as_mut_ptr().cast())) }?;
    let fd = u32::from_ne_bytes([arg[8], arg[9], arg[10], arg[11]]);
    // SAFETY: On success the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Issues `DMA_HEAP_IOCTL_ALLOC` with exactly the given fields.
pub fn heap_alloc_raw(heap: &File, data: &mut AllocationData) -> io::Result<OwnedFd> {
    // SAFETY: `AllocationData` is `struct dma_heap_allocation_data`, the
    // argument `DMA_HEAP_IOCTL_ALLOC` reads and writes.
    unsafe {
        ioctl::ioctl(
            heap,
            Updater::<DMA_HEAP_IOCTL_ALLOC, AllocationData>::new(data),
        )
    }?;
    // SAFETY: On success the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(data.fd as RawFd) })
}

/// Issues `DMA_BUF_IOCTL_SYNC` with the given flags.
pub fn dma_buf_sync(buf: &impl AsFd, flags: u64) -> io::Result<()> {
    // SAFETY: `struct dma_buf_sync` is one u64, which the ioctl only reads.
    unsafe { ioctl::ioctl(buf, Setter::<DMA_BUF_IOCTL_SYNC, u64>::new(flags)) }?;
    Ok(())
}

/// The heap's control device (`control.rs`).
pub const CONTROL_DEVICE: &str = "/dev/rust_dmabuf_heap";
/// `RDH_IOCTL_SYNC_RANGE` (`include/uapi/linux/rust_dmabuf_heap.h`).
pub const RDH_IOCTL_SYNC_RANGE: Opcode = opcode::write::<SyncRange>(b'R', 0x30);

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
    control: &impl AsFd,
    fd: RawFd,
    flags: u64,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let request = SyncRange {
        fd,
        flags: flags as u32,
        offset,
        len,
    };
    // SAFETY: `SyncRange` is `struct rdh_sync_range`, which the ioctl only
    // reads; the fd in it is just a number to the kernel.
    unsafe {
        ioctl::ioctl(
            control,
            Setter::<RDH_IOCTL_SYNC_RANGE, SyncRange>::new(request),
        )
    }?;
    Ok(())
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
    pub fn new(buf: &impl AsFd, len: usize, pgoff: usize) -> io::Result<Self> {
        let offset = pgoff
            .checked_mul(4096)
            .and_then(|o| i64::try_from(o).ok())
            .ok_or(io::Error::from(rustix::io::Errno::OVERFLOW))?;
        Self::at_offset(buf, len, offset)
    }

    /// Maps `len` bytes at byte offset `offset` (any value, negative ones
    /// too, for misuse tests) of `buf`.
    pub fn at_offset(buf: &impl AsFd, len: usize, offset: i64) -> io::Result<Self> {
        // SAFETY: A fresh shared mapping at an address the kernel picks,
        // so no memory of ours is replaced; the kernel validates the range.
        // The offset's bits go to the system call as they are.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                buf,
                offset as u64,
            )
        }?;
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Maps the first `len` bytes of `buf` at an address aligned to
    /// `align` (a power of two): what a page-table entry bigger than a page
    /// needs, and an address the kernel picks for a dma-buf is not (its
    /// file has no `get_unmapped_area`).
    pub fn aligned(buf: &impl AsFd, len: usize, align: usize) -> io::Result<Self> {
        Self::placed(buf, len, align, 0)
    }

    /// Maps the first `len` bytes of `buf` at `skew` bytes past a multiple
    /// of `align` (a power of two). Reserves `len + 2 * align` bytes of address
    /// space, maps the buffer over the chosen part, and gives the rest
    /// back.
    pub fn placed(buf: &impl AsFd, len: usize, align: usize, skew: usize) -> io::Result<Self> {
        let span = len + 2 * align;
        // SAFETY: A fresh reservation at an address the kernel picks,
        // inaccessible, so no memory of ours is replaced.
        let reserved = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                span,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let base = reserved as usize;
        let start = base.next_multiple_of(align) + skew % align;
        // SAFETY: `start..start + len` lies in the reservation made above,
        // which only this function uses; `FIXED` replaces that part.
        let mapped = unsafe {
            rustix::mm::mmap(
                start as *mut c_void,
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                buf,
                0,
            )
        };
        // SAFETY: What is left of the reservation around the mapping (all
        // of it if mapping failed); nothing else uses it.
        unsafe {
            let ends = match &mapped {
                Ok(_) => [
                    (base, start - base),
                    (start + len, base + span - start - len),
                ],
                Err(_) => [(base, span), (0, 0)],
            };
            for (addr, size) in ends.into_iter().filter(|&(_, size)| size > 0) {
                let _ = rustix::mm::munmap(addr as *mut c_void, size);
            }
        }
        Ok(Self {
            ptr: mapped?.cast(),
            len,
        })
    }

    /// The mapping's address, for system calls on it (`mprotect`, a
    /// partial `munmap`); dropping the value unmaps the whole range.
    pub fn as_ptr(&self) -> *mut c_void {
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
        // SAFETY: `ptr`/`len` describe a mapping made by `at_offset`, and
        // no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// Size of a dma-buf, as the kernel reports it through `lseek`.
pub fn dma_buf_size(buf: &impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::seek(buf, SeekFrom::End(0))?)
}

/// Total RAM in bytes.
pub fn total_ram() -> u64 {
    let info = rustix::system::sysinfo();
    info.totalram as u64 * info.mem_unit as u64
}

/// A value from /proc/meminfo, in KiB.
pub fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The opcodes as `<linux/dma-heap.h>`, `<linux/dma-buf.h>` and our
    /// uapi header give them (`_IOWR('H', 0, 24)`, `_IOW('b', 0, 8)`,
    /// `_IOW('R', 0x30, 24)`).
    #[test]
    fn opcodes_match_the_uapi_headers() {
        assert_eq!(DMA_HEAP_IOCTL_ALLOC as u64, 0xc018_4800);
        assert_eq!(DMA_BUF_IOCTL_SYNC as u64, 0x4008_6200);
        assert_eq!(RDH_IOCTL_SYNC_RANGE as u64, 0x4018_5230);
        assert_eq!(
            opcode::from_components(Direction::ReadWrite, b'H', 0, 16) as u64,
            0xc010_4800
        );
    }

    /// A memfd stands in for a dma-buf: mmap, lseek and an ioctl it does
    /// not know (ENOTTY, as an `io::Error`).
    #[test]
    fn mappings_seek_and_errors_on_a_memfd() {
        let fd = rustix::fs::memfd_create("rdh-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 2 * 4096).unwrap();
        assert_eq!(dma_buf_size(&fd).unwrap(), 2 * 4096);
        let mut first = Mapping::new(&fd, 2 * 4096, 0).unwrap();
        first.bytes_mut()[4096] = 0x5a;
        let second = Mapping::new(&fd, 4096, 1).unwrap();
        assert_eq!(second.bytes()[0], 0x5a);
        let wrapped = Mapping::at_offset(&fd, 4096, -4096).err().unwrap();
        assert_eq!(
            wrapped.raw_os_error(),
            Some(rustix::io::Errno::OVERFLOW.raw_os_error())
        );
        let err = dma_buf_sync(&fd, DMA_BUF_SYNC_START).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOTTY.raw_os_error())
        );
    }

    #[test]
    fn sysinfo_and_lseek_answer() {
        assert!(total_ram() > 0);
        let file = File::open("/proc/self/exe").unwrap();
        assert!(dma_buf_size(&file).unwrap() > 0);
    }
}
