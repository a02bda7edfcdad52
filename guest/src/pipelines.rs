// SPDX-License-Identifier: GPL-2.0

//! Ownership tracking seen from user space: the importer driver's fake
//! devices play device pipelines on our buffers, the CPU brackets its
//! accesses with DMA_BUF_IOCTL_SYNC, and the buffer's debugfs counters must
//! show exactly the maintenance the ownership rules promise — next to what
//! `sync_policy=always` (the system heap's behaviour) does for the same
//! sequence. On the uncached heap (`rdh_heap=uncached`), whose CPU mappings
//! write around the cache and which `sync_policy` does not change, the
//! same pipelines must cost nothing but the invalidates a coherent
//! importer's snoops need.

use crate::{
    checks::{allocate, buffer_file, debugfs_number, ensure},
    importer::{Attachment, Dir, Session, Sync},
    ktap::Outcome,
    sys, uncached_boot,
};
use std::os::fd::{AsRawFd, OwnedFd};

const MIB: u64 = 1 << 20;
const POLICY: &str = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";

/// Loads the importer test driver.
pub fn importer_driver_loads() -> Outcome {
    // The edu device's DMA mask must match QEMU's `dma_mask` property.
    let params = std::env::var("rdh_edu_dma_bits")
        .map(|bits| format!("edu_dma_bits={bits}"))
        .unwrap_or_default();
    sys::load_module(crate::importer::MODULE_PATH, &params)
        .map_err(|e| format!("finit_module: {e}"))?;
    Session::open()
        .map(drop)
        .map_err(|e| format!("open /dev/rdh_importer: {e}"))
}

/// Cache operations counted by debugfs: (cleans, invalidates).
type Ops = (u64, u64);

/// What CPU accesses and non-coherent devices cost on the heap under test,
/// given what they cost on the cached heap: on the uncached heap, nothing.
fn on_heap(cached: Ops) -> Ops {
    if uncached_boot() {
        (0, 0)
    } else {
        cached
    }
}

/// The operations on the buffer behind `fd` so far.
fn ops(fd: &OwnedFd) -> Result<Ops, String> {
    let file = buffer_file(fd)?;
    Ok((
        debugfs_number(&file, "cleans")?,
        debugfs_number(&file, "invalidates")?,
    ))
}

/// Allocates a buffer under `policy` (the parameter applies to new buffers).
fn allocate_with(policy: &str) -> Result<OwnedFd, String> {
    std::fs::write(POLICY, policy).map_err(|e| format!("set sync_policy={policy}: {e}"))?;
    let fd = allocate(MIB);
    std::fs::write(POLICY, "tracked").map_err(|e| format!("reset sync_policy: {e}"))?;
    fd
}

/// The cleans the zeroed pages of the buffer behind `fd` still need: 1 for
/// fresh pages, 0 for pages from the page pool (cleaned by its worker).
fn zeroes_to_clean(fd: &OwnedFd) -> Result<u64, String> {
    let text = std::fs::read_to_string(buffer_file(fd)?).map_err(|e| format!("read: {e}"))?;
    Ok(u64::from(text.contains("maybe_dirty: true")))
}

/// `DMA_BUF_IOCTL_SYNC` with `flags`.
pub fn sync(fd: &OwnedFd, flags: u64) -> Result<(), String> {
    sys::dma_buf_sync(fd, flags).map_err(|e| format!("DMA_BUF_IOCTL_SYNC {flags:#x}: {e}"))
}

/// One CPU access bracket in direction `dir` (SYNC START, then END).
pub fn cpu_access(fd: &OwnedFd, dir: u64) -> Result<(), String> {
    sync(fd, sys::DMA_BUF_SYNC_START | dir)?;
    sync(fd, sys::DMA_BUF_SYNC_END | dir)
}

/// An importer driver error, for a check's message.
pub fn importer_err(e: std::io::Error) -> String {
    format!("importer: {e}")
}

/// Three new non-coherent devices of `session` map the buffer behind `fd`
/// both ways and keep it mapped (the display/GPU pattern).
pub fn map_three_noncoherent(session: &Session, fd: &OwnedFd) -> Outcome {
    for _ in 0..3 {
        let device = session.device(false).map_err(importer_err)?;
        let a = session
            .attach(device, fd.as_raw_fd())
            .map_err(importer_err)?;
        session.map(a, Dir::Bidirectional).map_err(importer_err)?;
    }
    Ok(())
}

/// Three non-coherent devices keep the buffer mapped (the display/GPU
/// pattern); one CPU read-write bracket. Returns the operations of the
/// bracket alone, and those of the three maps.
fn three_mapped_then_cpu_access(policy: &str) -> Result<(Ops, Ops, u64), String> {
    let fd = allocate_with(policy)?;
    let zeroes = zeroes_to_clean(&fd)?;
    let session = Session::open().map_err(importer_err)?;
    map_three_noncoherent(&session, &fd)?;
    let maps = ops(&fd)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_RW)?;
    let after = ops(&fd)?;
    Ok(((after.0 - maps.0, after.1 - maps.1), maps, zeroes))
}

pub fn three_mapped_importers_cost_one_invalidate_and_one_clean_per_cpu_access() -> Outcome {
    let (tracked, tracked_maps, zeroes) = three_mapped_then_cpu_access("tracked")?;
    let (always, always_maps, _) = three_mapped_then_cpu_access("always")?;
    let (want, want_maps) = (on_heap((1, 1)), on_heap((zeroes, 0)));
    ensure(tracked == want && tracked_maps == want_maps, || {
        format!("tracked: maps cost {tracked_maps:?}, the CPU access {tracked:?} (want {want_maps:?} and {want:?})")
    })?;
    let (want, want_maps) = (on_heap((3, 3)), on_heap((3, 0)));
    ensure(always == want && always_maps == want_maps, || {
        format!(
            "always: maps cost {always_maps:?}, the CPU access {always:?} (want {want_maps:?} and {want:?})"
        )
    })
}

/// `frames` camera → GPU → display jobs (map/unmap per job), the CPU
/// reading every frame back. Returns (cleans, invalidates).
fn camera_gpu_display(policy: &str, frames: u64, coherent: bool) -> Result<(Ops, u64), String> {
    let fd = allocate_with(policy)?;
    let zeroes = zeroes_to_clean(&fd)?;
    let session = Session::open().map_err(importer_err)?;
    let camera = session.device(coherent).map_err(importer_err)?;
    let gpu = session.device(coherent).map_err(importer_err)?;
    let display = session.device(coherent).map_err(importer_err)?;
    for _ in 0..frames {
        session
            .job(camera, fd.as_raw_fd(), Dir::FromDevice)
            .map_err(importer_err)?;
        session
            .job(gpu, fd.as_raw_fd(), Dir::Bidirectional)
            .map_err(importer_err)?;
        session
            .job(display, fd.as_raw_fd(), Dir::ToDevice)
            .map_err(importer_err)?;
        cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    }
    Ok((ops(&fd)?, zeroes))
}

pub fn camera_gpu_display_with_cpu_readback_invalidates_once_per_frame() -> Outcome {
    let frames = 8;
    let (tracked, zeroes) = camera_gpu_display("tracked", frames, false)?;
    let (always, _) = camera_gpu_display("always", frames, false)?;
    // Tracked: the zeroed pages once (unless pooled, so clean already),
    // then one invalidate per readback.
    let want = on_heap((zeroes, frames));
    ensure(tracked == want, || {
        format!("tracked: {tracked:?}, want {want:?}")
    })?;
    // Always: a clean per map, an invalidate per unmap of a writer.
    let want = on_heap((3 * frames, 2 * frames));
    ensure(always == want, || {
        format!("always: {always:?}, want {want:?}")
    })
}

/// Coherent devices cost nothing; on the uncached heap each one's map
/// drops every line (user space may have written around the cache
/// without SYNC): three per frame.
pub fn coherent_pipeline_costs_nothing() -> Outcome {
    let frames = 4;
    let (tracked, _) = camera_gpu_display("tracked", frames, true)?;
    let want = if uncached_boot() {
        (0, 3 * frames)
    } else {
        (0, 0)
    };
    ensure(tracked == want, || {
        format!("coherent devices cost {tracked:?}, want {want:?}")
    })
}

/// A non-coherent camera writes each frame, a coherent GPU reads it: its
/// snoop may be served by clean CPU lines older than the camera's frame,
/// so its map invalidates once per frame (and cleans the zeroed pages the
/// first time, unless pooled); the CPU's readback after it costs nothing.
pub fn coherent_reader_after_a_noncoherent_writer_invalidates_at_its_map() -> Outcome {
    let frames = 4;
    let fd = allocate_with("tracked")?;
    let zeroes = zeroes_to_clean(&fd)?;
    let session = Session::open().map_err(importer_err)?;
    let camera = session.device(false).map_err(importer_err)?;
    let gpu = session.device(true).map_err(importer_err)?;
    for _ in 0..frames {
        session
            .job(camera, fd.as_raw_fd(), Dir::FromDevice)
            .map_err(importer_err)?;
        session
            .job(gpu, fd.as_raw_fd(), Dir::ToDevice)
            .map_err(importer_err)?;
        cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    }
    let got = ops(&fd)?;
    ensure(got == (zeroes, frames), || {
        format!("{got:?}, want ({zeroes}, {frames})")
    })
}

/// The CPU fills each frame (SYNC WRITE) for a non-coherent display: one
/// clean per frame is the minimum, and both policies do exactly that.
pub fn cpu_fill_for_display_cleans_once_per_frame() -> Outcome {
    let frames = 6;
    for policy in ["tracked", "always"] {
        let fd = allocate_with(policy)?;
        let session = Session::open().map_err(importer_err)?;
        let display = session.device(false).map_err(importer_err)?;
        for _ in 0..frames {
            cpu_access(&fd, sys::DMA_BUF_SYNC_WRITE)?;
            session
                .job(display, fd.as_raw_fd(), Dir::ToDevice)
                .map_err(importer_err)?;
        }
        let (got, want) = (ops(&fd)?, on_heap((frames, 0)));
        ensure(got == want, || format!("{policy}: {got:?}, want {want:?}"))?;
    }
    Ok(())
}

/// A writer device mapped once (the GPU/display pattern) reports each frame
/// with a write fence through the explicit API; the CPU reads every 3rd of
/// 30 frames: 10 invalidates. Two CPU reads with no fence signalled in
/// between: the second costs nothing.
pub fn fenced_writer_costs_one_invalidate_per_cpu_read_after_its_frames() -> Outcome {
    let fd = allocate_with("tracked")?;
    let session = Session::open().map_err(importer_err)?;
    let gpu = session.device(false).map_err(importer_err)?;
    let a = session.attach(gpu, fd.as_raw_fd()).map_err(importer_err)?;
    session.map(a, Dir::Bidirectional).map_err(importer_err)?;
    let start = ops(&fd)?;
    for frame in 1..=30 {
        let fence = session
            .fence(a, Sync::Explicit, Dir::FromDevice)
            .map_err(importer_err)?;
        session.signal(fence, 0).map_err(importer_err)?;
        if frame % 3 == 0 {
            cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
        }
    }
    let frames = ops(&fd)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    let idle = ops(&fd)?;
    let want = on_heap((0, 10)).1;
    ensure(frames.1 - start.1 == want, || {
        format!(
            "{} invalidates for 10 CPU reads of 30 fenced frames (want {want})",
            frames.1 - start.1
        )
    })?;
    ensure(idle == frames, || {
        format!("a read with no new fence cost {frames:?} -> {idle:?}")
    })
}

/// Implicit sync: the device's write fence is in the reservation object and
/// signals 50 ms later; SYNC START waits for it, and the CPU read that
/// follows is invalidated once (a new write fence counts however late or
/// early it signals: see the next check).
/// A camera that declared one write through the explicit API (so its
/// attachment counts as fenced) and stays mapped, its frame read once:
/// the buffer, the session and the attachment.
fn fenced_camera_after_one_read() -> Result<(OwnedFd, Session, Attachment), String> {
    let fd = allocate_with("tracked")?;
    let session = Session::open().map_err(importer_err)?;
    let camera = session.device(false).map_err(importer_err)?;
    let a = session
        .attach(camera, fd.as_raw_fd())
        .map_err(importer_err)?;
    let first = session
        .fence(a, Sync::Explicit, Dir::FromDevice)
        .map_err(importer_err)?;
    session.signal(first, 0).map_err(importer_err)?;
    session.map(a, Dir::FromDevice).map_err(importer_err)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    Ok((fd, session, a))
}

pub fn cpu_read_waits_for_an_implicit_write_fence() -> Outcome {
    // Fenced once, then implicit.
    let (fd, session, a) = fenced_camera_after_one_read()?;
    let before = ops(&fd)?;
    let fence = session
        .fence(a, Sync::Implicit, Dir::FromDevice)
        .map_err(importer_err)?;
    session.signal(fence, 50).map_err(importer_err)?;
    let started = std::time::Instant::now();
    cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    let waited = started.elapsed();
    let after = ops(&fd)?;
    ensure(waited >= std::time::Duration::from_millis(40), || {
        format!("SYNC START returned after {waited:?}, before the fence signalled")
    })?;
    let want = on_heap((0, 1)).1;
    ensure(after.1 - before.1 == want, || {
        format!("{before:?} -> {after:?}: want {want} invalidate")
    })
}

/// A fenced attachment's job reported only through an implicit write fence
/// that signalled before the CPU reads: the fence is new since the last CPU
/// access (the heap remembers write fences by context and seqno), so the
/// read is invalidated once; a second read, with no new fence, costs
/// nothing. No timing involved.
pub fn implicit_write_fence_signalled_before_the_read_counts_once() -> Outcome {
    let (fd, session, a) = fenced_camera_after_one_read()?;
    let before = ops(&fd)?;
    let fence = session
        .fence(a, Sync::Implicit, Dir::FromDevice)
        .map_err(importer_err)?;
    session.signal(fence, 0).map_err(importer_err)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    let read = ops(&fd)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    let again = ops(&fd)?;
    let want = on_heap((0, 1)).1;
    ensure(read.1 - before.1 == want && again == read, || {
        format!("{before:?} -> {read:?} -> {again:?}: want {want} invalidate, then none")
    })
}
