// SPDX-License-Identifier: GPL-2.0

//! CPU access to a range of a buffer (`RDH_IOCTL_SYNC_RANGE` on the heap's
//! control device): only the range's pages are maintained, whole-buffer
//! SYNC composes with it, and bad requests fail cleanly, changing nothing.

use crate::{
    checks::{allocate, buffer_file, debugfs_number, ensure},
    importer::{Dir, Session},
    ktap::Outcome,
    sys::{self, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START, DMA_BUF_SYNC_WRITE},
};
use dma_heap::{Heap, HeapKind};
use std::{
    fs::File,
    os::fd::{AsRawFd, IntoRawFd, OwnedFd},
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Bytes cleaned and invalidated for the buffer behind `fd` so far.
fn maintained(fd: &OwnedFd) -> Result<(u64, u64), String> {
    let file = buffer_file(fd)?;
    Ok((
        debugfs_number(&file, "clean_bytes")?,
        debugfs_number(&file, "invalidate_bytes")?,
    ))
}

fn control() -> Result<File, String> {
    File::open(sys::CONTROL_DEVICE).map_err(|e| format!("open {}: {e}", sys::CONTROL_DEVICE))
}

fn range(control: &File, fd: &OwnedFd, flags: u64, offset: u64, len: u64) -> Result<(), String> {
    sys::sync_range(control, fd.as_raw_fd(), flags, offset, len)
        .map_err(|e| format!("SYNC_RANGE {flags:#x} {offset}+{len}: {e}"))
}

/// Runs `step` and checks that it maintained exactly `want` bytes
/// (cleaned, invalidated).
fn costs(
    fd: &OwnedFd,
    what: &str,
    want: (u64, u64),
    step: impl FnOnce() -> Result<(), String>,
) -> Outcome {
    // All devices here are non-coherent: on the uncached heap, nothing.
    let want = if crate::uncached_boot() { (0, 0) } else { want };
    let before = maintained(fd)?;
    step()?;
    let after = maintained(fd)?;
    let got = (after.0 - before.0, after.1 - before.1);
    ensure(got == want, || {
        format!("{what}: cleaned + invalidated {got:?} bytes, want {want:?}")
    })
}

/// Range brackets belong to the control file that began them: a process
/// killed with eight open (the most one buffer takes) leaves none behind
/// once its file is released, and another process can begin one at once
/// (before, every range START on that buffer failed with EBUSY for ever).
pub fn range_brackets_of_a_killed_process_are_ended() -> Outcome {
    let fd = allocate(MIB)?;
    let file = buffer_file(&fd)?;
    let open = crate::child::in_child(
        || {
            let control = control()?;
            for page in 0..8 {
                range(
                    &control,
                    &fd,
                    DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
                    page * 4096,
                    4096,
                )?;
            }
            let open = debugfs_number(&file, "open_ranges")?;
            // The file must stay open until the process dies.
            std::mem::forget(control);
            Ok(open.to_string())
        },
        true,
    )?;
    let left = debugfs_number(&file, "open_ranges")?;
    let control = control()?;
    let again = range(
        &control,
        &fd,
        DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
        0,
        4096,
    )
    .and_then(|()| range(&control, &fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, 0, 4096));
    ensure(open == "8" && left == 0, || {
        format!("open range brackets: {open} while the process lived, {left} after it was killed; want 8, 0")
    })?;
    again
}

/// A camera (non-coherent) writes a 1 MiB frame; the CPU reads 64 KiB of
/// it through the mmap (faulting, by default, inside the range bracket),
/// then 10 bytes at offset 100 (a page), then the whole frame; then it
/// patches 4 KiB while a non-coherent display keeps the frame mapped.
pub fn range_sync_maintains_only_its_pages() -> Outcome {
    let fd = allocate(MIB)?;
    let control = control()?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let camera = session
        .device(false)
        .map_err(|e| format!("importer: {e}"))?;
    session
        .job(camera, fd.as_raw_fd(), Dir::FromDevice)
        .map_err(|e| format!("camera job: {e}"))?;
    let map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    let roi = (256 * KIB) as usize..(320 * KIB) as usize;
    costs(&fd, "64 KiB region", (0, 64 * KIB), || {
        range(
            &control,
            &fd,
            DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
            256 * KIB,
            64 * KIB,
        )?;
        let sum: u64 = map.bytes()[roi.clone()].iter().map(|&b| u64::from(b)).sum();
        std::hint::black_box(sum);
        range(
            &control,
            &fd,
            DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ,
            256 * KIB,
            64 * KIB,
        )
    })?;
    costs(&fd, "10 bytes at offset 100", (0, 4 * KIB), || {
        range(
            &control,
            &fd,
            DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
            100,
            10,
        )?;
        range(&control, &fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, 100, 10)
    })?;
    costs(
        &fd,
        "the rest, by a whole-buffer SYNC",
        (0, MIB - 68 * KIB),
        || {
            sys::dma_buf_sync(&fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)
                .and_then(|()| sys::dma_buf_sync(&fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ))
                .map_err(|e| format!("SYNC: {e}"))
        },
    )?;
    let display = session
        .device(false)
        .map_err(|e| format!("importer: {e}"))?;
    let attachment = session
        .attach(display, fd.as_raw_fd())
        .map_err(|e| format!("attach: {e}"))?;
    session
        .map(attachment, Dir::ToDevice)
        .map_err(|e| format!("map: {e}"))?;
    let mut map = map;
    let patch = (512 * KIB) as usize..(516 * KIB) as usize;
    costs(
        &fd,
        "a 4 KiB patch for a mapped display",
        (4 * KIB, 0),
        || {
            range(
                &control,
                &fd,
                DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE,
                512 * KIB,
                4 * KIB,
            )?;
            map.bytes_mut()[patch.clone()].fill(0x5a);
            range(
                &control,
                &fd,
                DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE,
                512 * KIB,
                4 * KIB,
            )
        },
    )?;
    session
        .unmap(attachment)
        .map_err(|e| format!("unmap: {e}"))?;
    session
        .detach(attachment)
        .map_err(|e| format!("detach: {e}"))
}

/// With user access trapped (the default): inside a range bracket, a read
/// through the mmap outside the range is a read without SYNC, and its
/// fault invalidates what a device may have written there (the range's
/// own pages were invalidated by the START).
pub fn read_outside_a_range_bracket_is_handled_as_unbracketed() -> Outcome {
    let fd = allocate(MIB)?;
    let file = buffer_file(&fd)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    if !text.contains("traps_user_access: true") {
        return Err(format!(
            "{}user access is trusted on this boot",
            crate::ktap::SKIP
        ));
    }
    let control = control()?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let camera = session
        .device(false)
        .map_err(|e| format!("importer: {e}"))?;
    let map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    session
        .job(camera, fd.as_raw_fd(), Dir::FromDevice)
        .map_err(|e| format!("camera job: {e}"))?;
    let flags = DMA_BUF_SYNC_READ;
    costs(&fd, "the range's START", (0, 64 * KIB), || {
        range(
            &control,
            &fd,
            DMA_BUF_SYNC_START | flags,
            256 * KIB,
            64 * KIB,
        )
    })?;
    costs(&fd, "a read outside the range", (0, MIB - 64 * KIB), || {
        std::hint::black_box(map.bytes()[0]);
        Ok(())
    })?;
    costs(&fd, "the range's END", (0, 0), || {
        range(&control, &fd, DMA_BUF_SYNC_END | flags, 256 * KIB, 64 * KIB)
    })
}

/// Every bad request fails with its errno and changes nothing: no
/// maintenance, no bracket left open, and the buffer still works.
pub fn range_sync_bad_requests_are_clean_errnos() -> Outcome {
    let fd = allocate(MIB)?;
    let control = control()?;
    let file = buffer_file(&fd)?;
    let state = || -> Result<(u64, u64, u64, u64), String> {
        let (clean, invalidate) = maintained(&fd)?;
        Ok((
            clean,
            invalidate,
            debugfs_number(&file, "open_ranges")?,
            debugfs_number(&file, "cpu_depth")?,
        ))
    };
    let before = state()?;
    let system = Heap::new(HeapKind::System)
        .and_then(|heap| heap.allocate(MIB as usize))
        .map_err(|e| format!("system heap: {e}"))?;
    let not_a_dmabuf = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let closed = File::open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?
        .into_raw_fd();
    // SAFETY: `closed` was just opened and is ours; closed here, its number
    // stays unused until the next open.
    unsafe { libc::close(closed) };
    let start_read = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;
    let ours = fd.as_raw_fd();
    let cases: [(&str, i32, u64, u64, u64, i32); 10] = [
        (
            "a system heap buffer",
            system.as_raw_fd(),
            start_read,
            0,
            4096,
            libc::EINVAL,
        ),
        (
            "a file that is no dma-buf",
            not_a_dmabuf.as_raw_fd(),
            start_read,
            0,
            4096,
            libc::EINVAL,
        ),
        ("a closed fd", closed, start_read, 0, 4096, libc::EBADF),
        (
            "a range past the end",
            ours,
            start_read,
            MIB - 4096,
            8192,
            libc::EINVAL,
        ),
        (
            "a range starting at the end",
            ours,
            start_read,
            MIB,
            1,
            libc::EINVAL,
        ),
        (
            "offset + len overflowing",
            ours,
            start_read,
            u64::MAX - 10,
            100,
            libc::EINVAL,
        ),
        ("zero length", ours, start_read, 0, 0, libc::EINVAL),
        (
            "an unknown flag",
            ours,
            start_read | 0x8,
            0,
            4096,
            libc::EINVAL,
        ),
        (
            "neither READ nor WRITE",
            ours,
            DMA_BUF_SYNC_START,
            0,
            4096,
            libc::EINVAL,
        ),
        (
            "END with neither",
            ours,
            DMA_BUF_SYNC_END,
            0,
            4096,
            libc::EINVAL,
        ),
    ];
    // In the drop-in boot the system heap is this one: no foreign buffer.
    let foreign = |what: &str| what == "a system heap buffer";
    for (what, target, flags, offset, len, errno) in cases
        .into_iter()
        .filter(|c| !(crate::standing_in() && foreign(c.0)))
    {
        let got = sys::sync_range(&control, target, flags, offset, len);
        ensure(
            got.as_ref().err().and_then(|e| e.raw_os_error()) == Some(errno),
            || format!("{what}: {got:?}, want errno {errno}"),
        )?;
        let now = state()?;
        ensure(now == before, || {
            format!("{what}: the buffer changed: {before:?} -> {now:?}")
        })?;
    }
    // One bracket more than the rules keep apart: EBUSY, then all close.
    let mut opened = 0;
    let busy = loop {
        match sys::sync_range(&control, ours, start_read, opened * 4096, 4096) {
            Ok(()) => opened += 1,
            Err(e) => break e,
        }
        if opened > 64 {
            return Err("64 range brackets opened without EBUSY".into());
        }
    };
    ensure(busy.raw_os_error() == Some(libc::EBUSY), || {
        format!("bracket {} of one buffer: {busy}, want EBUSY", opened + 1)
    })?;
    ensure(debugfs_number(&file, "open_ranges")? == opened, || {
        format!("{opened} brackets opened, debugfs disagrees")
    })?;
    for i in 0..opened {
        range(
            &control,
            &fd,
            DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ,
            i * 4096,
            4096,
        )?;
    }
    ensure(debugfs_number(&file, "open_ranges")? == 0, || {
        "brackets left open after their ends".to_string()
    })?;
    // The buffer still works.
    range(
        &control,
        &fd,
        DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE,
        0,
        MIB,
    )?;
    range(&control, &fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, 0, MIB)
}
