// SPDX-License-Identifier: GPL-2.0

//! `make bench`: plays every scenario of `bench/scenarios.rs` on the
//! upstream system heap, on ours under both policies and on our uncached
//! heap, counting cache
//! maintenance with the importer driver's kprobes (the same counter for
//! every heap), then times allocation. The CPU touches a word of every page
//! through a user mapping at each CPU step: inside SYNC brackets, and once
//! more without them (user space that skips SYNC; then it first unmaps the
//! non-coherent devices that are mapped, and maps them again after, since
//! no heap can serve an unbracketed access while a device may be using the
//! buffer). Results are `BENCH {json}` lines,
//! printed while the kernel is quiet; the host turns them into the report.

// Shared with the host report, which uses more of it.
#[allow(dead_code)]
#[path = "../../bench/scenarios.rs"]
mod scenarios;

use crate::{
    checks::{buffer_file_in, debugfs_dir_of, debugfs_number},
    importer::{self, Session},
    pool, sys,
};
use dma_heap::{Heap, HeapKind};
use scenarios::{Dir, Op, Scenario, BUFFER_BYTES, SCENARIOS};
use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    time::Instant,
};

const POLICY: &str = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";

/// A heap as the benchmark uses it: "system", "ours" (under `policy`)
/// or "uncached".
struct Target {
    heap: &'static str,
    policy: Option<&'static str>,
}

impl Target {
    /// The heap's name under `/dev/dma_heap`.
    fn name(&self) -> String {
        match self.heap {
            "system" => "system".into(),
            "uncached" => crate::uncached_heap_name(),
            _ => ours(),
        }
    }

    /// The policy its buffers get.
    fn policy_name(&self) -> &'static str {
        match self.heap {
            "uncached" => "uncached",
            _ => self.policy.unwrap_or("-"),
        }
    }
}

fn ours() -> String {
    crate::cached_heap_name()
}

fn allocate(target: &Target, len: u64) -> Result<OwnedFd, String> {
    if let Some(policy) = target.policy {
        std::fs::write(POLICY, policy).map_err(|e| format!("sync_policy: {e}"))?;
    }
    let path = PathBuf::from(format!("/dev/dma_heap/{}", target.name()));
    Heap::new(HeapKind::Custom(path))
        .and_then(|h| h.allocate(len as usize))
        .map_err(|e| format!("allocate: {e}"))
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

/// Bytes (cleaned, invalidated).
type Bytes = (u64, u64);

/// A word of every page, read and/or written as `how` lets the CPU.
fn touch(mapping: &mut sys::Mapping, how: Dir, round: u8) {
    touch_range(mapping, how, round, 0, BUFFER_BYTES);
}

/// A word of every page of bytes `offset..offset + len`.
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

/// Plays `s` on a fresh buffer, with SYNC brackets or (`brackets` false)
/// without; returns the bytes the arch code maintained, and our debugfs's
/// own count and its faults outside brackets if the heap is ours.
fn play(
    s: &Scenario,
    target: &Target,
    brackets: bool,
) -> Result<(Bytes, Option<(Bytes, u64)>), String> {
    let e = |e: std::io::Error| format!("{}: importer: {e}", s.name);
    let fd = allocate(target, BUFFER_BYTES)?;
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
    let fence_sync = if target.heap == "system" {
        importer::Sync::Implicit
    } else {
        importer::Sync::Explicit
    };
    let control = std::fs::File::open(sys::CONTROL_DEVICE).ok();
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
                touch(&mut mapping, how, round);
                sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sync_flags(how))
                    .map_err(|x| x.to_string())?;
            }
            Op::CpuRange(how, offset, len) if brackets && target.heap == "system" => {
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
    let arch = session.counters().map_err(e)?;
    let own = if target.heap == "system" {
        None
    } else {
        let file = buffer_file_in(&debugfs_dir_of(&target.name()), &fd)?;
        Some((
            (
                debugfs_number(&file, "clean_bytes")?,
                debugfs_number(&file, "invalidate_bytes")?,
            ),
            debugfs_number(&file, "unbracketed_faults")?,
        ))
    };
    Ok((arch, own))
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs the benchmark, printing `BENCH` lines.
pub fn run() {
    if let Err(e) = crate::checks::load_modules() {
        println!("rdh: FAILED to load the modules: {e}");
        return;
    }
    let targets = [
        Target {
            heap: "system",
            policy: None,
        },
        Target {
            heap: "ours",
            policy: Some("tracked"),
        },
        Target {
            heap: "ours",
            policy: Some("always"),
        },
        Target {
            heap: "uncached",
            policy: None,
        },
    ];
    // Without brackets: the system heap, ours tracked (trapping user
    // access, the default) and uncached; `always` is the system heap's
    // behaviour.
    let runs = targets
        .iter()
        .map(|t| (t, true))
        .chain([&targets[0], &targets[1], &targets[3]].map(|t| (t, false)));
    let runs: Vec<_> = runs.collect();
    // `rdh_bench_only=alloc` on the kernel command line: only the
    // allocation timing (for quick experiments; the report then lists the
    // scenarios as missing).
    let scenarios = if std::env::var("rdh_bench_only").as_deref() == Ok("alloc") {
        &[]
    } else {
        SCENARIOS
    };
    // The scenarios start from fresh pages, as the model's minimum does
    // (pooled buffers start clean: `first_map` below shows that), and the
    // pool's worker must not clean in the background while kprobes count.
    if let Err(e) = pool::turn_off() {
        println!("rdh: {e}");
        return;
    }
    for s in scenarios {
        for &(t, brackets) in &runs {
            match play(s, t, brackets) {
                Ok(((clean, inval), own)) => {
                    let own = own.map_or(String::new(), |((c, i), faults)| {
                        format!(",\"debugfs_clean_bytes\":{c},\"debugfs_invalidate_bytes\":{i},\"unbracketed_faults\":{faults}")
                    });
                    println!(
                        "BENCH {{\"scenario\":\"{}\",\"heap\":\"{}\",\"policy\":\"{}\",\"sync\":\"{}\",\"frames\":{},\"clean_bytes\":{clean},\"invalidate_bytes\":{inval}{own}}}",
                        s.name,
                        t.name(),
                        t.policy_name(),
                        if brackets { "brackets" } else { "none" },
                        s.frames,
                    );
                }
                Err(err) => println!(
                    "rdh: {} on {} ({:?}, brackets: {brackets}): FAILED: {err}",
                    s.name, t.heap, t.policy
                ),
            }
        }
    }
    let _ = std::fs::write(POLICY, "tracked");
    if let Err(e) = uncached_flush() {
        println!("rdh: uncached flush: {e}");
        return;
    }
    // Per-buffer debugfs files (on for the cross-check above) are a debug
    // feature that costs a file per allocation: time allocations without.
    if let Err(e) = crate::checks::debugfs_buffers(false) {
        println!("rdh: {e}");
        return;
    }
    // QEMU backs guest RAM with host memory at its first touch, which is
    // not a heap's cost: touch (nearly) all of it once, in a process that
    // then exits, before anything is timed.
    let available = sys::meminfo_kib("MemAvailable").unwrap_or(0) * 1024;
    if let Err(e) = crate::pressure::touch_in_child(available.saturating_sub(256 << 20) as usize) {
        println!("rdh: warming guest memory up: {e}");
        return;
    }
    // Allocation latency: the ioctl and the close, timed apart; the heaps
    // are opened and the policy is set beforehand.
    let heaps = [
        Heap::new(HeapKind::System),
        Heap::new(HeapKind::Custom(PathBuf::from(format!(
            "/dev/dma_heap/{}",
            ours()
        )))),
    ];
    let [Ok(system), Ok(tracked)] = heaps else {
        println!("rdh: cannot open the heaps for the allocation benchmark");
        return;
    };
    // Allocation and `close()` timed apart, each call on its own: rounds
    // of n allocations held, then n closes (the pattern of a pipeline
    // re-allocating its frames), heaps alternating round by round, at
    // least 32 calls each; the first call of a round only warms up. Ours
    // twice: cold (the pool off: fresh pages, freed at once) and warm (the
    // pool on, filled with n buffers' worth before the round; n fits its
    // limit). Between rounds the pool's worker finishes (not timed).
    let default_limit = pool::set_limit_mib(-1).and_then(|()| pool::number("limit_bytes"));
    let Ok(default_limit) = default_limit else {
        println!("rdh: cannot read the pool's limit");
        return;
    };
    for size in [4u64 << 10, 64 << 10, 1 << 20, 8 << 20, 32 << 20] {
        let n = (default_limit / size).saturating_sub(1).clamp(1, 32) as usize;
        for (pool, limit) in [("cold", 0), ("warm", -1)] {
            if let Err(e) = pool::apply_limit_mib(limit).and_then(|()| {
                let mut times: [(Vec<u128>, Vec<u128>); 2] = Default::default();
                while times[0].0.len() < 32 {
                    for (i, heap) in [&system, &tracked].into_iter().enumerate() {
                        timed_round(heap, (size, n), i == 1 && pool == "warm", &mut times[i])?;
                    }
                }
                let [(a, close_a), (b, close_b)] = times;
                for (heap, label, (alloc, close)) in [
                    ("system".to_string(), format!(",\"against\":\"{pool}\""), (a, close_a)),
                    (ours(), format!(",\"pool\":\"{pool}\""), (b, close_b)),
                ] {
                    let (alloc, close) = (median(alloc), median(close));
                    println!(
                        "BENCH {{\"alloc_size\":{size},\"heap\":\"{heap}\"{label},\"median_ns\":{},\"alloc_median_ns\":{alloc},\"close_median_ns\":{close}}}",
                        alloc + close
                    );
                }
                Ok(())
            }) {
                println!("rdh: {e}");
                return;
            }
        }
    }
    if let Err(e) = first_map() {
        println!("rdh: first map: {e}");
        return;
    }
    // Churn, as camera and video pipelines do: 32 x 8 MiB allocated, then
    // all closed, 20 times per heap, the heaps alternating round by round
    // after a warm-up round each (QEMU's first touch of guest memory is not
    // a heap's cost); total time and the peak of memory in use (MemTotal -
    // MemAvailable) above what it was before.
    // Ours with the page pool at its default limit (1/16 of RAM: the
    // benchmark boots with 4 GiB, so the 256 MiB fit).
    if let Err(e) = pool::set_limit_mib(-1) {
        println!("rdh: {e}");
        return;
    }
    let used = || {
        sys::meminfo_kib("MemTotal").unwrap_or(0) - sys::meminfo_kib("MemAvailable").unwrap_or(0)
    };
    let before = used();
    let mut totals = [0u128; 2];
    let mut peaks = [0u64; 2];
    for round in 0..21 {
        for (i, heap) in [&system, &tracked].into_iter().enumerate() {
            let start = Instant::now();
            let mut fds = Vec::with_capacity(32);
            for _ in 0..32 {
                match heap.allocate(8 << 20) {
                    Ok(fd) => fds.push(fd),
                    Err(err) => {
                        println!("rdh: churn allocation failed: {err}");
                        return;
                    }
                }
            }
            peaks[i] = peaks[i].max(used().saturating_sub(before));
            drop(fds);
            if round > 0 {
                totals[i] += start.elapsed().as_nanos();
            }
        }
    }
    for (i, name) in ["system".to_string(), ours()].into_iter().enumerate() {
        println!(
            "BENCH {{\"churn\":\"32x8MiB x20\",\"heap\":\"{name}\",\"total_ns\":{},\"peak_kib\":{}}}",
            totals[i], peaks[i]
        );
    }
    println!("rdh: benchmark done");
}

/// One round of the allocation benchmark (see [`run`]): `n` allocations of
/// `size` bytes from `heap` held, then closed, each call timed (after one
/// untimed call of each); `fill` fills the pool first. Adds the times of
/// the allocations and of the closes to `times`.
fn timed_round(
    heap: &Heap,
    (size, n): (u64, usize),
    fill: bool,
    times: &mut (Vec<u128>, Vec<u128>),
) -> Result<(), String> {
    let allocate = || {
        heap.allocate(size as usize)
            .map_err(|e| format!("allocate {size}: {e}"))
    };
    if fill {
        let fds = (0..=n).map(|_| allocate()).collect::<Result<Vec<_>, _>>()?;
        drop(fds);
    }
    pool::wait_idle()?;
    let mut fds = Vec::with_capacity(n + 1);
    for call in 0..=n {
        let start = Instant::now();
        fds.push(allocate()?);
        if call > 0 {
            times.0.push(start.elapsed().as_nanos());
        }
    }
    for (call, fd) in fds.into_iter().enumerate() {
        let start = Instant::now();
        drop(fd);
        if call > 0 {
            times.1.push(start.elapsed().as_nanos());
        }
    }
    Ok(())
}

/// What allocating an 8 MiB buffer of the uncached heap maintains (its
/// flush), counted by the kprobes.
fn uncached_flush() -> Result<(), String> {
    let e = |e: std::io::Error| format!("importer: {e}");
    let len = 8u64 << 20;
    let session = Session::open().map_err(e)?;
    session.reset_counters().map_err(e)?;
    let fd = allocate(
        &Target {
            heap: "uncached",
            policy: None,
        },
        len,
    )?;
    let (cleaned, invalidated) = session.counters().map_err(e)?;
    drop(fd);
    println!(
        "BENCH {{\"uncached_flush\":{len},\"clean_bytes\":{cleaned},\"invalidate_bytes\":{invalidated}}}"
    );
    Ok(())
}

/// The first map of an 8 MiB buffer by a non-coherent device, fresh (pool
/// off) and from the pool, with the kprobes counting what is cleaned.
fn first_map() -> Result<(), String> {
    let e = |e: std::io::Error| format!("importer: {e}");
    let len = 8u64 << 20;
    let target = Target {
        heap: "ours",
        policy: Some("tracked"),
    };
    let cleans = pool::cleans()?;
    for (start, limit) in [("fresh", 0), ("pooled", -1)] {
        pool::apply_limit_mib(limit)?;
        // Something of this size in the pool (when on), the worker idle.
        drop(allocate(&target, len)?);
        pool::wait_idle()?;
        let fd = allocate(&target, len)?;
        let session = Session::open().map_err(e)?;
        let device = session.device(false).map_err(e)?;
        let a = session.attach(device, fd.as_raw_fd()).map_err(e)?;
        session.reset_counters().map_err(e)?;
        session.map(a, importer::Dir::ToDevice).map_err(e)?;
        let (cleaned, _) = session.counters().map_err(e)?;
        session.unmap(a).map_err(e)?;
        println!(
            "BENCH {{\"first_map\":\"{start}\",\"len\":{len},\"clean_bytes\":{cleaned},\"pool_cleans\":\"{cleans}\"}}"
        );
    }
    Ok(())
}
