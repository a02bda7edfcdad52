// SPDX-License-Identifier: GPL-2.0

//! Plays the benchmark scenarios (`bench/scenarios.rs`) on a heap through
//! the importer test driver's fake devices, counting cache maintenance with
//! its kprobes (the same counter for every heap). The CPU touches a word of
//! every page through a user mapping at each CPU step: inside SYNC
//! brackets, or without them (user space that skips SYNC; then it first
//! unmaps the non-coherent devices that are mapped, and maps them again
//! after, since no heap can serve an unbracketed access while a device may
//! be using the buffer). `make bench` (the guest) and `rdh bench pipeline`
//! both play them here.

use crate::{
    debugfs,
    importer::{self, Session},
    scenarios::{Dir, Op, Scenario, BUFFER_BYTES},
    sys,
};
use dma_heap::{Heap, HeapKind};
use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
};

/// The module's `sync_policy` parameter (applies to new buffers).
pub const POLICY: &str = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";

/// A heap as the scenarios use it.
pub struct Target {
    /// Its name under `/dev/dma_heap`.
    pub name: String,
    /// The `sync_policy` our cached heap's buffers are allocated under.
    pub sync_policy: Option<&'static str>,
    /// The policy its buffers get, as reported (`-` for a foreign heap).
    pub policy: &'static str,
}

impl Target {
    /// The upstream system heap.
    pub fn system() -> Self {
        Self {
            name: "system".into(),
            sync_policy: None,
            policy: "-",
        }
    }

    /// Our cached heap `name`, its buffers under `policy`.
    pub fn ours(name: &str, policy: &'static str) -> Self {
        Self {
            name: name.into(),
            sync_policy: Some(policy),
            policy,
        }
    }

    /// Our uncached heap `name`.
    pub fn uncached(name: &str) -> Self {
        Self {
            name: name.into(),
            sync_policy: None,
            policy: "uncached",
        }
    }

    /// Whether the heap is the module's (it has our debugfs counters and
    /// explicit fence API).
    pub fn is_ours(&self) -> bool {
        self.policy != "-"
    }

    /// Allocates `len` bytes.
    pub fn allocate(&self, len: u64) -> Result<OwnedFd, String> {
        if let Some(policy) = self.sync_policy {
            std::fs::write(POLICY, policy).map_err(|e| format!("sync_policy: {e}"))?;
        }
        let path = PathBuf::from(format!("/dev/dma_heap/{}", self.name));
        Heap::new(HeapKind::Custom(path))
            .and_then(|h| h.allocate(len as usize))
            .map_err(|e| format!("allocate from {}: {e}", self.name))
    }
}

/// Bytes (cleaned, invalidated).
pub type Bytes = (u64, u64);

/// What one play of a scenario cost.
pub struct Played {
    /// Bytes the arch code maintained (kprobes; `None` on a kernel without
    /// `CONFIG_KPROBES`).
    pub arch: Option<Bytes>,
    /// For our heaps with per-buffer debugfs files: their own count, and
    /// the user faults outside brackets.
    pub own: Option<(Bytes, u64)>,
}

fn dir(d: Dir) -> importer::Dir {
    match d {
        Dir::ToDevice => importer::Dir::ToDevice,
        Dir::FromDevice => importer::Dir::FromDevice,
        Dir::Bidirectional => importer::Dir::Bidirectional,
    }
}

fn sync_flags(d: Dir) -> u64 {
    match d {
        Dir::ToDevice => sys::DMA_BUF_SYNC_WRITE,
        Dir::FromDevice => sys::DMA_BUF_SYNC_READ,
        Dir::Bidirectional => sys::DMA_BUF_SYNC_RW,
    }
}

/// A word of every page of bytes `offset..offset + len`, read and/or
/// written as `how` lets the CPU.
fn touch_range(mapping: &mut sys::Mapping, how: Dir, round: u8, offset: u64, len: u64) {
    let bytes = &mut mapping.bytes_mut()[offset as usize..(offset + len) as usize];
    for page in bytes.chunks_mut(4096) {
        if how != Dir::ToDevice {
            std::hint::black_box(page[0]);
        }
        if how != Dir::FromDevice {
            page[0] = round;
        }
    }
    std::hint::black_box(bytes);
}

/// Plays `s` on a fresh buffer of `target`, with SYNC brackets or
/// (`brackets` false) without.
pub fn play(s: &Scenario, target: &Target, brackets: bool) -> Result<Played, String> {
    let e = |e: std::io::Error| format!("{}: importer: {e}", s.name);
    let fd = target.allocate(BUFFER_BYTES)?;
    let mut mapping =
        sys::Mapping::new(&fd, BUFFER_BYTES as usize, 0).map_err(|x| format!("mmap: {x}"))?;
    let mut mapped = vec![None; s.devices.len()];
    let session = Session::open().map_err(e)?;
    let mut attachments = Vec::new();
    for device in s.devices {
        let d = session.device(device.coherent).map_err(e)?;
        attachments.push(session.attach(d, fd.as_raw_fd()).map_err(e)?);
    }
    // Our explicit fence API exists only for our buffers.
    let fence_sync = if target.is_ours() {
        importer::Sync::Explicit
    } else {
        importer::Sync::Implicit
    };
    let control = std::fs::File::open(sys::CONTROL_DEVICE).ok();
    // The pool's worker cleans what the previous play freed: not this
    // play's maintenance.
    debugfs::wait_pool_idle();
    session.reset_counters().map_err(e)?;
    for (round, op) in s.steps().enumerate() {
        let round = round as u8;
        match *op {
            Op::Map(d, how) => {
                session.map(attachments[d], dir(how)).map_err(e)?;
                mapped[d] = Some(how);
            }
            Op::Unmap(d) => {
                session.unmap(attachments[d]).map_err(e)?;
                mapped[d] = None;
            }
            Op::Cpu(how) if brackets => {
                sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START | sync_flags(how))
                    .map_err(|x| x.to_string())?;
                touch_range(&mut mapping, how, round, 0, BUFFER_BYTES);
                sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sync_flags(how))
                    .map_err(|x| x.to_string())?;
            }
            Op::CpuRange(how, offset, len) if brackets && !target.is_ours() => {
                sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START | sync_flags(how))
                    .map_err(|x| x.to_string())?;
                touch_range(&mut mapping, how, round, offset, len);
                sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sync_flags(how))
                    .map_err(|x| x.to_string())?;
            }
            Op::CpuRange(how, offset, len) if brackets => {
                let control = control.as_ref().ok_or("no control device")?;
                let range = |flags: u64| {
                    sys::sync_range(
                        control,
                        fd.as_raw_fd(),
                        flags | sync_flags(how),
                        offset,
                        len,
                    )
                    .map_err(|x| format!("SYNC_RANGE: {x}"))
                };
                range(sys::DMA_BUF_SYNC_START)?;
                touch_range(&mut mapping, how, round, offset, len);
                range(sys::DMA_BUF_SYNC_END)?;
            }
            Op::Cpu(how) | Op::CpuRange(how, ..) => {
                let (offset, len) = match *op {
                    Op::CpuRange(_, offset, len) => (offset, len),
                    _ => (0, BUFFER_BYTES),
                };
                let away: Vec<(usize, Dir)> = (0..s.devices.len())
                    .filter(|&d| !s.devices[d].coherent)
                    .filter_map(|d| Some((d, mapped[d]?)))
                    .collect();
                for &(d, _) in &away {
                    session.unmap(attachments[d]).map_err(e)?;
                }
                touch_range(&mut mapping, how, round, offset, len);
                for &(d, how) in &away {
                    session.map(attachments[d], dir(how)).map_err(e)?;
                }
            }
            Op::Job(d, how) => {
                let fence = session
                    .fence(attachments[d], fence_sync, dir(how))
                    .map_err(e)?;
                session.signal(fence, 0).map_err(e)?;
            }
        }
    }
    let arch = match session.counters() {
        Ok(bytes) => Some(bytes),
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => None,
        Err(err) => return Err(e(err)),
    };
    let file = debugfs::buffer_file_in(&debugfs::dir_of(&target.name), &fd)?;
    // Per-buffer debugfs files exist with `debugfs_buffers=Y` only.
    let own = if target.is_ours() && std::path::Path::new(&file).exists() {
        Some((
            (
                debugfs::number(&file, "clean_bytes")?,
                debugfs::number(&file, "invalidate_bytes")?,
            ),
            debugfs::number(&file, "unbracketed_faults")?,
        ))
    } else {
        None
    };
    Ok(Played { arch, own })
}
