// SPDX-License-Identifier: GPL-2.0

//! What the dma-buf core lets through to the exporter: other struct sizes,
//! unbalanced and mismatched SYNC brackets, closing an fd that is still
//! mapped or attached. Each must work or fail cleanly and leave nothing
//! behind (the dma-buf core's `bufinfo` back to where it was).

use crate::{
    checks::{allocate, ensure, exported_bytes, open_heap},
    heap_name,
    importer::{Dir, Session},
    ktap::Outcome,
    sys,
};
use std::os::fd::AsRawFd;

const MIB: u64 = 1 << 20;
const PAGE: usize = 4096;

fn exported() -> Result<u64, String> {
    exported_bytes(&heap_name())
}

/// The older struct without `heap_flags` (16 bytes) and a newer one with
/// trailing garbage (40 bytes) both allocate, as the upstream selftest
/// expects.
pub fn older_and_newer_allocation_structs_work() -> Outcome {
    let heap = open_heap().map_err(|e| format!("open heap: {e}"))?;
    let flags = ((libc::O_RDWR | libc::O_CLOEXEC) as u32).to_ne_bytes();
    for size in [16usize, 40] {
        let mut arg = vec![0xffu8; size];
        arg[..8].copy_from_slice(&(64 * 1024u64).to_ne_bytes());
        arg[8..12].copy_from_slice(&0u32.to_ne_bytes());
        arg[12..16].copy_from_slice(&flags);
        if size >= 24 {
            arg[16..24].copy_from_slice(&0u64.to_ne_bytes());
        }
        let fd = sys::heap_alloc_sized(&heap, &mut arg)
            .map_err(|e| format!("{size}-byte struct: {e}"))?;
        let len = sys::dma_buf_size(&fd).map_err(|e| e.to_string())?;
        ensure(len == 64 * 1024, || {
            format!("{size}-byte struct: size {len}")
        })?;
    }
    Ok(())
}

/// END without START, nested START, and a direction that differs between
/// START and END are accepted, and the data written through them is intact.
pub fn unbalanced_and_mismatched_syncs_keep_the_data() -> Outcome {
    let before = exported()?;
    let fd = allocate(MIB)?;
    let mut map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    let sync = |flags| sys::dma_buf_sync(&fd, flags).map_err(|e| format!("sync {flags:#x}: {e}"));
    sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_RW)?; // END without START
    sync(sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
    sync(sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)?; // nested
    map.bytes_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 251) as u8);
    sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)?; // mismatched
    sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)?;
    sync(sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
    let bad = map
        .bytes()
        .iter()
        .enumerate()
        .filter(|(i, &b)| b != (i % 251) as u8)
        .count();
    sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)?;
    ensure(bad == 0, || format!("{bad} bytes differ"))?;
    drop(map);
    drop(fd);
    let after = exported()?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} bytes")
    })
}

/// Closing the fd while it is mmapped keeps the buffer alive (the mapping
/// holds it) and usable; the munmap frees it.
pub fn close_while_mapped_frees_at_munmap() -> Outcome {
    let before = exported()?;
    let fd = allocate(MIB)?;
    let mut map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    drop(fd);
    map.bytes_mut()[PAGE] = 0x5a;
    ensure(map.bytes()[PAGE] == 0x5a, || {
        "the mapping lost a write".into()
    })?;
    let during = exported()?;
    drop(map);
    let after = exported()?;
    ensure(during == before + MIB, || {
        format!("bufinfo {before} -> {during} while mapped")
    })?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} after munmap")
    })
}

/// An importer may unmap and detach after user space closed the fd: its
/// reference keeps the buffer alive until then, and then nothing remains.
pub fn importer_may_detach_after_the_fd_is_closed() -> Outcome {
    let before = exported()?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let device = session
        .device(false)
        .map_err(|e| format!("importer: {e}"))?;
    let fd = allocate(MIB)?;
    let a = session
        .attach(device, fd.as_raw_fd())
        .map_err(|e| format!("attach: {e}"))?;
    session
        .map(a, Dir::FromDevice)
        .map_err(|e| format!("map: {e}"))?;
    drop(fd);
    let during = exported()?;
    session.unmap(a).map_err(|e| format!("unmap: {e}"))?;
    session.detach(a).map_err(|e| format!("detach: {e}"))?;
    let after = exported()?;
    ensure(during == before + MIB, || {
        format!("bufinfo {before} -> {during} while attached")
    })?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} after detach")
    })
}

/// mmap offsets far beyond the buffer fail with EINVAL (the dma-buf core's
/// range check), up to the largest the system call takes; a negative one,
/// whose page offset wraps, with EOVERFLOW (the mm core's). Nothing is
/// mapped.
pub fn mmap_with_a_huge_offset_fails() -> Outcome {
    let fd = allocate(MIB)?;
    for (offset, errno) in [
        (1 << 40, libc::EINVAL),
        (i64::MAX & !0xfff, libc::EINVAL),
        (-(PAGE as i64), libc::EOVERFLOW),
    ] {
        match sys::Mapping::at_offset(&fd, PAGE, offset) {
            Ok(_) => return Err(format!("offset {offset:#x}: mapped")),
            Err(e) if e.raw_os_error() == Some(errno) => {}
            Err(e) => return Err(format!("offset {offset:#x}: {e}, expected errno {errno}")),
        }
    }
    Ok(())
}

/// The allocation struct's `fd` is output only: a non-zero value on input
/// is EINVAL, and nothing is allocated.
pub fn nonzero_fd_on_input_is_einval() -> Outcome {
    let before = exported()?;
    let heap = open_heap().map_err(|e| format!("open heap: {e}"))?;
    let mut data = sys::AllocationData {
        len: MIB,
        fd: 3,
        fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        heap_flags: 0,
    };
    match sys::heap_alloc_raw(&heap, &mut data) {
        Ok(_) => return Err("allocated".into()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(format!("{e}, expected EINVAL")),
    }
    let after = exported()?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} bytes")
    })
}

/// A kernel mapping (`dma_buf_vmap`) keeps the buffer and its data after
/// user space closed the fd; the vunmap frees it.
pub fn close_while_vmapped_frees_at_vunmap() -> Outcome {
    let before = exported()?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let fd = allocate(MIB)?;
    let vmap = session
        .vmap(fd.as_raw_fd())
        .map_err(|e| format!("vmap: {e}"))?;
    session
        .fill(vmap, 7)
        .map_err(|e| format!("kernel fill: {e}"))?;
    drop(fd);
    let during = exported()?;
    let intact = session
        .verify(vmap, 7)
        .map_err(|e| format!("kernel check: {e}"))?;
    session.vunmap(vmap).map_err(|e| format!("vunmap: {e}"))?;
    let after = exported()?;
    ensure(intact.is_none(), || {
        format!("byte {intact:?} changed after close")
    })?;
    ensure(during == before + MIB, || {
        format!("bufinfo {before} -> {during} while vmapped")
    })?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} after vunmap")
    })
}
