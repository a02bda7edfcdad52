// SPDX-License-Identifier: GPL-2.0

//! The uncached heap (`<heap_name>-uncached`) seen from user space, in
//! every boot: it exists unless turned off (or DMA bounces), its buffers
//! are flushed once at allocation (fresh chunks; pooled ones the pool
//! cleaned already) and then cost nothing with non-coherent
//! importers, with or without SYNC, and a coherent importer costs one
//! invalidate at its map and per CPU write, none per read. (With `rdh_heap=uncached` the
//! whole suite runs on it too.)

use crate::{
    checks::{
        buffer_file_in, debugfs_dir_of, debugfs_number, dma_bounces_everywhere, ensure, heap_path,
    },
    importer::{self, Dir, Session},
    ktap::{Outcome, SKIP},
    pipelines::{cpu_access, importer_err, map_three_noncoherent, sync},
    pool, sys, uncached_heap_name,
};
use dma_heap::{Heap, HeapKind};
use std::os::fd::{AsRawFd, OwnedFd};

const MIB: u64 = 1 << 20;
const PARAM: &str = "/sys/module/rust_dmabuf_heap/parameters/uncached_heap";

/// Whether the module was loaded with the uncached heap on.
pub fn turned_on() -> Result<bool, String> {
    let value = std::fs::read_to_string(PARAM).map_err(|e| format!("read {PARAM}: {e}"))?;
    Ok(value.trim() == "Y")
}

/// Whether the uncached heap should exist on this boot; `Err` with a skip
/// reason if not.
fn expected() -> Outcome {
    if dma_bounces_everywhere() {
        return Err(format!(
            "{SKIP}DMA mappings bounce on this boot: no uncached heap"
        ));
    }
    if !turned_on()? {
        return Err(format!("{SKIP}uncached_heap=N"));
    }
    Ok(())
}

fn stats_number(key: &str) -> Result<u64, String> {
    debugfs_number(
        &format!("{}/stats", debugfs_dir_of(&uncached_heap_name())),
        key,
    )
}

fn allocate(len: u64) -> Result<OwnedFd, String> {
    allocate_from(&uncached_heap_name(), len)
}

/// Allocates `len` bytes from the heap named `name`.
pub fn allocate_from(name: &str, len: u64) -> Result<OwnedFd, String> {
    Heap::new(HeapKind::Custom(heap_path(name)))
        .and_then(|heap| heap.allocate(len as usize))
        .map_err(|e| format!("allocate {len} from {name}: {e}"))
}

/// (cleans, invalidates) of the uncached buffer behind `fd` so far.
pub fn ops(fd: &OwnedFd) -> Result<(u64, u64), String> {
    let file = buffer_file_in(&debugfs_dir_of(&uncached_heap_name()), fd)?;
    Ok((
        debugfs_number(&file, "cleans")?,
        debugfs_number(&file, "invalidates")?,
    ))
}

/// The heap is there exactly when the parameter says so and DMA does not
/// bounce, with policy `uncached` and write-combined mappings never
/// trapped; the cached heap's name plus `-uncached`.
pub fn uncached_heap_is_registered_unless_turned_off_or_bouncing() -> Outcome {
    let path = heap_path(&uncached_heap_name());
    let want = !dma_bounces_everywhere() && turned_on()?;
    ensure(path.exists() == want, || {
        format!("{} exists: {}, want {want}", path.display(), path.exists())
    })?;
    if !want {
        return Ok(());
    }
    let stats = format!("{}/stats", debugfs_dir_of(&uncached_heap_name()));
    let text = std::fs::read_to_string(&stats).map_err(|e| format!("read {stats}: {e}"))?;
    ensure(
        text.contains("policy: uncached\n") && text.contains("unbracketed_cpu: trust\n"),
        || format!("{stats}: {text}"),
    )
}

/// One 1 MiB buffer through the cached heap's pipelines: allocation of
/// fresh pages (the pool off) flushes it (1 MiB, counted apart); then three
/// non-coherent importers
/// mapped across a CPU read-write, camera → GPU → display with a CPU
/// readback for 8 frames, and 6 CPU fills for a display cost nothing.
/// The data goes through: user space writes a pattern the kernel's
/// (write-combined) mapping verifies, and the other way round.
pub fn uncached_buffer_is_flushed_once_then_costs_nothing_with_noncoherent_importers() -> Outcome {
    expected()?;
    pool::turn_off()?;
    let flushed = stats_number("allocation_flush_bytes")?;
    let fd = allocate(MIB);
    pool::set_limit_mib(-1)?;
    let fd = fd?;
    let flush = stats_number("allocation_flush_bytes")? - flushed;
    ensure(flush == MIB, || {
        format!("allocation flushed {flush} bytes, want {MIB}")
    })?;
    let before = (
        stats_number("clean_bytes")?,
        stats_number("invalidate_bytes")?,
    );
    let session = Session::open().map_err(importer_err)?;
    map_three_noncoherent(&session, &fd)?;
    cpu_access(&fd, sys::DMA_BUF_SYNC_RW)?;
    let devices: Vec<_> = (0..3)
        .map(|_| session.device(false).map_err(importer_err))
        .collect::<Result<_, _>>()?;
    for _ in 0..8 {
        for (device, dir) in
            devices
                .iter()
                .zip([Dir::FromDevice, Dir::Bidirectional, Dir::ToDevice])
        {
            session
                .job(*device, fd.as_raw_fd(), dir)
                .map_err(importer_err)?;
        }
        cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    }
    for _ in 0..6 {
        cpu_access(&fd, sys::DMA_BUF_SYNC_WRITE)?;
        session
            .job(devices[2], fd.as_raw_fd(), Dir::ToDevice)
            .map_err(importer_err)?;
    }
    // The data, both ways, through the two write-combined mappings.
    let mut map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    sync(&fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_WRITE)?;
    importer::fill_pattern(map.bytes_mut(), 0, 0x5151);
    sync(&fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)?;
    let kernel = session.vmap(fd.as_raw_fd()).map_err(importer_err)?;
    let seen = session.verify(kernel, 0x5151).map_err(importer_err)?;
    ensure(seen.is_none(), || {
        format!("the kernel mapping differs at byte {seen:?}")
    })?;
    session.fill(kernel, 0x6262).map_err(importer_err)?;
    sync(&fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
    let wrong = importer::pattern_mismatch(map.bytes(), 0, 0x6262);
    sync(&fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)?;
    ensure(wrong.is_none(), || {
        format!("the user mapping differs at byte {wrong:?}")
    })?;
    let got = ops(&fd)?;
    let after = (
        stats_number("clean_bytes")?,
        stats_number("invalidate_bytes")?,
    );
    ensure(got == (0, 0) && after == before, || {
        format!(
            "the buffer cost {got:?} operations, the heap {before:?} -> {after:?} bytes; want none"
        )
    })
}

/// An uncached buffer of pooled chunks is not flushed: the pool's worker
/// zeroed and cleaned them (the cache model's `uncached, pooled` rows show
/// that a clean, present line is no worse than a speculative fill). It
/// reads zero through its write-combined mapping after a patterned free,
/// and what user space writes, the kernel's mapping reads.
pub fn uncached_buffer_from_the_pool_is_not_flushed() -> Outcome {
    expected()?;
    if !pool::cleans()? {
        return Err(format!("{SKIP}the pool does not clean on this boot"));
    }
    let accounting = std::fs::read_to_string("/sys/module/dma_heap/parameters/mem_accounting")
        .is_ok_and(|v| v.trim() == "Y");
    if accounting {
        return Err(format!("{SKIP}mem_accounting bypasses the pool"));
    }
    pool::set_limit_mib(-1)?;
    let len = MIB + 64 * 1024;
    {
        let fd = allocate(len)?;
        let mut map = sys::Mapping::new(&fd, len as usize, 0).map_err(|e| format!("mmap: {e}"))?;
        map.bytes_mut().fill(0xa5);
    }
    pool::wait_idle()?;
    let (flushed, hits) = (
        stats_number("allocation_flush_bytes")?,
        pool::number("hit_bytes")?,
    );
    let fd = allocate(len)?;
    let (flush, hit) = (
        stats_number("allocation_flush_bytes")? - flushed,
        pool::number("hit_bytes")? - hits,
    );
    ensure(hit == len && flush == 0, || {
        format!("{hit} bytes from the pool, {flush} flushed; want {len} and 0")
    })?;
    let mut map = sys::Mapping::new(&fd, len as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    let nonzero = map.bytes().iter().filter(|&&b| b != 0).count();
    ensure(nonzero == 0, || {
        format!("{nonzero} bytes of a pooled uncached buffer are not zero")
    })?;
    importer::fill_pattern(map.bytes_mut(), 0, 0x7171);
    let session = Session::open().map_err(importer_err)?;
    let kernel = session.vmap(fd.as_raw_fd()).map_err(importer_err)?;
    let seen = session.verify(kernel, 0x7171).map_err(importer_err)?;
    ensure(seen.is_none(), || {
        format!("the kernel mapping differs at byte {seen:?}")
    })
}

/// A coherent GPU keeps the buffer mapped: its snoops must not find lines
/// a speculative fill left older than the CPU's write-combined writes, so
/// its map (user space may have written without SYNC) and each CPU write
/// cost one invalidate; CPU reads cost nothing.
pub fn uncached_coherent_importer_costs_an_invalidate_per_map_and_cpu_write_only() -> Outcome {
    expected()?;
    let fd = allocate(MIB)?;
    let session = Session::open().map_err(importer_err)?;
    let gpu = session.device(true).map_err(importer_err)?;
    let a = session.attach(gpu, fd.as_raw_fd()).map_err(importer_err)?;
    session.map(a, Dir::ToDevice).map_err(importer_err)?;
    let mapped = ops(&fd)?;
    for _ in 0..4 {
        cpu_access(&fd, sys::DMA_BUF_SYNC_WRITE)?;
    }
    let written = ops(&fd)?;
    for _ in 0..4 {
        cpu_access(&fd, sys::DMA_BUF_SYNC_READ)?;
    }
    let read = ops(&fd)?;
    ensure(
        mapped == (0, 1) && written == (0, 5) && read == written,
        || {
            format!("map {mapped:?}, 4 writes {written:?}, 4 reads {read:?}: want (0, 1), (0, 5), (0, 5)")
        },
    )
}

/// User space that never calls SYNC: it writes through the mmap, a
/// non-coherent display reads, a camera writes, the CPU reads. Nothing is
/// trapped (no fault, no revocation) and nothing is maintained: the CPU's
/// mapping writes and reads memory.
pub fn uncached_access_without_sync_is_never_trapped_and_costs_nothing() -> Outcome {
    expected()?;
    let fd = allocate(MIB)?;
    let mut map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    let session = Session::open().map_err(importer_err)?;
    let display = session.device(false).map_err(importer_err)?;
    let camera = session.device(false).map_err(importer_err)?;
    for frame in 0..4u8 {
        map.bytes_mut()[..4096].fill(frame);
        session
            .job(display, fd.as_raw_fd(), Dir::ToDevice)
            .map_err(importer_err)?;
        session
            .job(camera, fd.as_raw_fd(), Dir::FromDevice)
            .map_err(importer_err)?;
        std::hint::black_box(map.bytes()[4095]);
    }
    let file = buffer_file_in(&debugfs_dir_of(&uncached_heap_name()), &fd)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("read {file}: {e}"))?;
    let faults = debugfs_number(&file, "user_faults")?;
    let got = ops(&fd)?;
    ensure(
        got == (0, 0)
            && faults == 0
            && text.contains("write_combined: true\n")
            && text.contains("traps_user_access: false\n"),
        || format!("{got:?} operations, {faults} user faults: want none ({text})"),
    )
}

/// The user mapping of an uncached buffer is write-combined, in every
/// chunk (the importer driver reads this process's page-table entries);
/// the cached heap's is not.
pub fn uncached_user_mapping_is_write_combined() -> Outcome {
    expected()?;
    let len = 2 * MIB + 4096;
    let session = Session::open().map_err(importer_err)?;
    let fd = allocate(len)?;
    let map = sys::Mapping::new(&fd, len as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    let cached = allocate_from(&crate::cached_heap_name(), 4096)?;
    let cached_map = sys::Mapping::new(&cached, 4096, 0).map_err(|e| format!("mmap: {e}"))?;
    // The cached heap's entries may come from a fault: touch it first.
    cpu_access_touching(&cached, &cached_map)?;
    let mut got = Vec::new();
    for (map, offset) in [(&map, 0), (&map, len - 4096), (&cached_map, 0)] {
        let addr = map.bytes()[offset as usize..].as_ptr();
        got.push(
            session
                .user_mapping_is_write_combined(addr)
                .map_err(importer_err)?,
        );
    }
    ensure(got == [true, true, false], || {
        format!("write-combined (uncached first page, last page; cached): {got:?}")
    })
}

/// A read bracket that reads the first byte through `map`.
fn cpu_access_touching(fd: &OwnedFd, map: &sys::Mapping) -> Outcome {
    sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
    std::hint::black_box(map.bytes()[0]);
    sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)
}
