// SPDX-License-Identifier: GPL-2.0

//! `make bench`: plays every scenario of `bench/scenarios.rs` on the
//! upstream system heap, on ours under both policies and on our uncached
//! heap, with SYNC brackets and without (`rdh::pipeline`, which `rdh bench
//! pipeline` uses too), counting cache maintenance with the importer
//! driver's kprobes; then times allocation. Results are `BENCH {json}`
//! lines, printed while the kernel is quiet; the host turns them into the
//! report.

use crate::{
    huge::Entries,
    importer::{self, Session},
    pool, sys,
};
use dma_heap::{Heap, HeapKind};
use rdh::{
    pipeline::{self, Target},
    scenarios::SCENARIOS,
};
use std::{
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

fn ours() -> String {
    crate::cached_heap_name()
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Whether to run part `part` of the benchmark: all parts, or with
/// `rdh_bench_only=PART[,PART]...` on the kernel command line those listed
/// (for quick experiments; the report then lists the others as missing):
/// `scenarios`, `alloc`, `first_map`, `mapping`, `churn`.
fn only(part: &str) -> bool {
    std::env::var("rdh_bench_only").map_or(true, |parts| parts.split(',').any(|p| p == part))
}

/// Runs the benchmark, printing `BENCH` lines.
pub fn run() {
    if let Err(e) = crate::checks::load_modules() {
        println!("rdh: FAILED to load the modules: {e}");
        return;
    }
    let targets = [
        Target::system(),
        Target::ours(&ours(), "tracked"),
        Target::ours(&ours(), "always"),
        Target::uncached(&crate::uncached_heap_name()),
    ];
    // Without brackets: the system heap, ours tracked (trapping user
    // access, the default) and uncached; `always` is the system heap's
    // behaviour.
    let runs = targets
        .iter()
        .map(|t| (t, true))
        .chain([&targets[0], &targets[1], &targets[3]].map(|t| (t, false)));
    let runs: Vec<_> = runs.collect();
    let scenarios = if only("scenarios") { SCENARIOS } else { &[] };
    // The scenarios start from fresh pages, as the model's minimum does
    // (pooled buffers start clean: `first_map` below shows that), and the
    // pool's worker must not clean in the background while kprobes count.
    if let Err(e) = pool::turn_off() {
        println!("rdh: {e}");
        return;
    }
    for s in scenarios {
        for &(t, brackets) in &runs {
            match pipeline::play(s, t, brackets) {
                Ok(pipeline::Played {
                    arch: Some((clean, inval)),
                    own,
                }) => {
                    let own = own.map_or(String::new(), |((c, i), faults)| {
                        format!(",\"debugfs_clean_bytes\":{c},\"debugfs_invalidate_bytes\":{i},\"unbracketed_faults\":{faults}")
                    });
                    println!(
                        "BENCH {{\"scenario\":\"{}\",\"heap\":\"{}\",\"policy\":\"{}\",\"sync\":\"{}\",\"frames\":{},\"clean_bytes\":{clean},\"invalidate_bytes\":{inval}{own}}}",
                        s.name,
                        t.name,
                        t.policy,
                        if brackets { "brackets" } else { "none" },
                        s.frames,
                    );
                }
                Ok(pipeline::Played { arch: None, .. }) => {
                    println!("rdh: FAILED: the bench kernel has no kprobes");
                    return;
                }
                Err(err) => println!(
                    "rdh: {} on {} ({}, brackets: {brackets}): FAILED: {err}",
                    s.name, t.name, t.policy
                ),
            }
        }
    }
    let _ = std::fs::write(pipeline::POLICY, "tracked");
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
    // pool at its defaults, filled with n buffers' worth before the round).
    // A round holds at most 1/8 of RAM (and 32 buffers), so that the
    // system heap's round next to a full pool leaves free memory
    // comfortable. Between rounds the pool's worker finishes (not timed).
    let round_bytes = sys::total_ram() / 8;
    let sizes = if only("alloc") {
        &[4u64 << 10, 64 << 10, 1 << 20, 8 << 20, 32 << 20][..]
    } else {
        &[]
    };
    for &size in sizes {
        let n = (round_bytes / size).clamp(1, 32) as usize;
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
    if only("first_map") {
        if let Err(e) = first_map() {
            println!("rdh: first map: {e}");
            return;
        }
    }
    if only("mapping") {
        let mapping = frame_faults()
            .and_then(|()| iommu_segments(&system))
            .and_then(|()| mmap_and_touch(&system));
        if let Err(e) = mapping {
            println!("rdh: mapping: {e}");
            return;
        }
    }
    if !only("churn") {
        return;
    }
    // Churn, as camera and video pipelines do: 32 x 8 MiB allocated, then
    // all closed, 20 times per heap, the heaps alternating round by round
    // after a warm-up round each (QEMU's first touch of guest memory is not
    // a heap's cost); total time and the peak of memory in use (MemTotal -
    // MemAvailable) above what it was before. Ours under three pool
    // policies: the default (sized by demand), a fixed share of 1/16 of
    // RAM kept for ever (the policy before), and keeping everything (a cap
    // of all RAM, kept for ever: the Android pooled heap's policy, whose
    // pools only the shrinker takes back). After each churn: what the pool
    // holds then, 10 s and 60 s later, and what an ordinary process
    // touching 5/8 of RAM pays then.
    let ram_mib = sys::total_ram() >> 20;
    let policies = [
        ("demand", -1, pool::DEFAULT_WINDOW_MS),
        ("fixed_1/16", (ram_mib / 16) as i64, 600_000),
        ("keep_all", ram_mib as i64, 600_000),
    ];
    let touch = (sys::total_ram() * 5 / 8) as usize;
    if let Err(e) = pool::turn_off() {
        println!("rdh: {e}");
        return;
    }
    match timed_touch(touch) {
        Ok(ns) => {
            println!("BENCH {{\"touch_bytes\":{touch},\"pool\":\"empty\",\"touch_ns\":{ns}}}")
        }
        Err(e) => {
            println!("rdh: {e}");
            return;
        }
    }
    for (policy, limit, window) in policies {
        if let Err(e) = churn(&system, &tracked, policy, (limit, window), touch) {
            println!("rdh: churn ({policy}): {e}");
            return;
        }
    }
    // The defaults again.
    if let Err(e) =
        pool::set_limit_mib(-1).and_then(|()| pool::set_window_ms(pool::DEFAULT_WINDOW_MS))
    {
        println!("rdh: {e}");
        return;
    }
    println!("rdh: benchmark done");
}

/// The churn of [`run`] on `system` and `ours` with the pool `(limit,
/// window)` (`pool_limit_mib`, `pool_window_ms`), named `policy`; prints
/// its `BENCH` lines.
fn churn(
    system: &Heap,
    ours_heap: &Heap,
    policy: &str,
    (limit, window): (i64, u64),
    touch: usize,
) -> Result<(), String> {
    pool::turn_off()?;
    pool::set_window_ms(window)?;
    pool::set_limit_mib(limit)?;
    let used = || {
        sys::meminfo_kib("MemTotal").unwrap_or(0) - sys::meminfo_kib("MemAvailable").unwrap_or(0)
    };
    let before = used();
    let mut totals = [0u128; 2];
    let mut peaks = [0u64; 2];
    for round in 0..21 {
        for (i, heap) in [system, ours_heap].into_iter().enumerate() {
            let start = Instant::now();
            let fds = (0..32)
                .map(|_| heap.allocate(8 << 20))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("allocation failed: {e}"))?;
            peaks[i] = peaks[i].max(used().saturating_sub(before));
            drop(fds);
            if round > 0 {
                totals[i] += start.elapsed().as_nanos();
            }
        }
    }
    // How fast the worker zeroes (and cleans): it drains the last round's
    // frees now with nothing else running.
    let zeroed = pool::number("zeroed_bytes")?;
    let drain = Instant::now();
    pool::wait_idle()?;
    let worker_mib_per_s = (pool::number("zeroed_bytes")? - zeroed) as f64
        / (1 << 20) as f64
        / drain.elapsed().as_secs_f64().max(1e-6);
    let end = Instant::now();
    let mut held = [0u64; 3];
    for (slot, at) in [0u64, 10, 60].into_iter().enumerate() {
        let wait = Duration::from_secs(at).saturating_sub(end.elapsed());
        std::thread::sleep(wait);
        held[slot] = pool::number("pool_bytes")?;
    }
    let touch_ns = timed_touch(touch)?;
    println!(
        "BENCH {{\"churn\":\"32x8MiB x20\",\"heap\":\"system\",\"pool_policy\":\"{policy}\",\"total_ns\":{},\"peak_kib\":{}}}",
        totals[0], peaks[0]
    );
    println!(
        "BENCH {{\"churn\":\"32x8MiB x20\",\"heap\":\"{}\",\"pool_policy\":\"{policy}\",\"total_ns\":{},\"peak_kib\":{},\"pool_bytes_after_churn_0s\":{},\"pool_bytes_after_churn_10s\":{},\"pool_bytes_after_churn_60s\":{},\"touch_bytes\":{touch},\"touch_ns\":{touch_ns},\"worker_mib_per_s\":{worker_mib_per_s:.0}}}",
        ours(), totals[1], peaks[1], held[0], held[1], held[2]
    );
    Ok(())
}

/// How long a process takes to touch `len` bytes of fresh memory (and
/// exit), in ns.
fn timed_touch(len: usize) -> Result<u128, String> {
    let start = Instant::now();
    crate::pressure::touch_in_child(len)?;
    Ok(start.elapsed().as_nanos())
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
    let fd = Target::uncached(&crate::uncached_heap_name()).allocate(len)?;
    let (cleaned, invalidated) = session.counters().map_err(e)?;
    drop(fd);
    println!(
        "BENCH {{\"uncached_flush\":{len},\"clean_bytes\":{cleaned},\"invalidate_bytes\":{invalidated}}}"
    );
    Ok(())
}

/// Writes one `u64` into every page of `bytes` (a first touch).
fn touch_pages(bytes: &mut [u8]) {
    for page in bytes.chunks_exact_mut(4096) {
        // SAFETY: The page is at least 8 bytes long and 4096-aligned.
        unsafe { page.as_mut_ptr().cast::<u64>().write_volatile(1) };
    }
}

/// An 8 MiB frame in trap mode (the default): the faults a first touch of
/// every page takes and the page-table entries they write, then the same
/// after a non-coherent device's map revoked them; mapped at a 2 MiB-aligned
/// address (huge entries for its 2 MiB chunks) and at an unaligned one (the
/// address the kernel picks for a dma-buf: PTEs).
fn frame_faults() -> Result<(), String> {
    let e = |e: std::io::Error| format!("importer: {e}");
    let len = 8usize << 20;
    let huge = 2usize << 20;
    // Its debugfs file (off while allocations are timed) shows its chunks.
    crate::checks::debugfs_buffers(true)?;
    let fd = Target::ours(&ours(), "tracked").allocate(len as u64);
    crate::checks::debugfs_buffers(false)?;
    let fd = fd?;
    let file = crate::checks::buffer_file(&fd)?;
    let runs = crate::checks::debugfs_number(&file, "huge_runs")?;
    let session = Session::open().map_err(e)?;
    let device = session.device(false).map_err(e)?;
    for (placement, skew) in [("aligned", 0), ("unaligned", 4096)] {
        let mut map =
            sys::Mapping::placed(&fd, len, huge, skew).map_err(|e| format!("mmap: {e}"))?;
        // A device's map revokes what is granted (of the earlier mapping,
        // then of the first touch), so that every touch faults.
        let mut touches = Vec::new();
        for _ in 0..2 {
            session
                .job(device, fd.as_raw_fd(), importer::Dir::FromDevice)
                .map_err(e)?;
            touches.push(Entries::during(|| touch_pages(map.bytes_mut()))?.1);
        }
        let (first, again) = (touches[0], touches[1]);
        println!(
            "BENCH {{\"frame_faults\":{len},\"placement\":\"{placement}\",\"huge_runs\":{runs},\"faults\":{},\"page_table_entries\":{},\"refaults\":{},\"refault_page_table_entries\":{}}}",
            first.fault_calls, first.entries, again.fault_calls, again.entries
        );
    }
    Ok(())
}

/// An 8 MiB frame mapped by QEMU's edu device behind an SMMUv3 (the bench
/// boot's IOMMU), from each heap: the CPU segments its table hands the
/// IOMMU, which maps each with the biggest blocks their alignment allows
/// (2 MiB ones for a 2 MiB chunk), the smallest of them, and the DMA
/// segments the device sees.
fn iommu_segments(system: &Heap) -> Result<(), String> {
    let e = |e: std::io::Error| format!("importer: {e}");
    let session = Session::open().map_err(e)?;
    match session.edu_info() {
        Ok((_, true)) => {}
        _ => {
            println!("rdh: no edu device behind an IOMMU: IOMMU segments not measured");
            return Ok(());
        }
    }
    let len = 8usize << 20;
    for heap in ["system", "ours"] {
        let fd = match heap {
            "system" => system
                .allocate(len)
                .map_err(|e| format!("system heap: {e}"))?,
            _ => Target::ours(&ours(), "tracked").allocate(len as u64)?,
        };
        let a = session.edu_attach(fd.as_raw_fd()).map_err(e)?;
        session.map(a, importer::Dir::ToDevice).map_err(e)?;
        let (cpu, dma, smallest) = session.segments(a).map_err(e)?;
        session.unmap(a).map_err(e)?;
        println!(
            "BENCH {{\"iommu_segments\":{len},\"heap\":\"{heap}\",\"cpu_segments\":{cpu},\"smallest_cpu_segment\":{smallest},\"dma_segments\":{dma}}}"
        );
    }
    Ok(())
}

/// mmap + a first touch of every page of a 512 MiB buffer, at a 2 MiB-aligned
/// address: the system heap (which maps everything at mmap), ours trapping
/// user access (maps at the first fault: huge entries), ours trusting it
/// (maps at mmap), and ours trapping at an unaligned address (PTEs);
/// allocation and close not timed, the heaps alternating, median of 3.
fn mmap_and_touch(system: &Heap) -> Result<(), String> {
    let len = 512usize << 20;
    let huge = 2usize << 20;
    let ours_in = |mode| crate::unbracketed::allocate_in(mode, len as u64);
    let mut times: [Vec<u128>; 4] = Default::default();
    for _ in 0..3 {
        for (i, times) in times.iter_mut().enumerate() {
            let fd = match i {
                0 => system
                    .allocate(len)
                    .map_err(|e| format!("system heap: {e}"))?,
                1 | 3 => ours_in("trap")?,
                _ => ours_in("trust")?,
            };
            let skew = if i == 3 { 4096 } else { 0 };
            let start = Instant::now();
            let mut map =
                sys::Mapping::placed(&fd, len, huge, skew).map_err(|e| format!("mmap: {e}"))?;
            touch_pages(map.bytes_mut());
            times.push(start.elapsed().as_nanos());
        }
    }
    let [system_ns, trap_ns, trust_ns, unaligned_ns] = times.map(median);
    println!(
        "BENCH {{\"mmap_touch_bytes\":{len},\"system_ns\":{system_ns},\"trap_ns\":{trap_ns},\"trust_ns\":{trust_ns},\"trap_unaligned_ns\":{unaligned_ns}}}"
    );
    Ok(())
}

/// The first map of an 8 MiB buffer by a non-coherent device, fresh (pool
/// off) and from the pool, with the kprobes counting what is cleaned.
fn first_map() -> Result<(), String> {
    let e = |e: std::io::Error| format!("importer: {e}");
    let len = 8u64 << 20;
    let target = Target::ours(&ours(), "tracked");
    let cleans = pool::cleans()?;
    for (start, limit) in [("fresh", 0), ("pooled", -1)] {
        // From an empty pool: what the timing left there may be given back
        // meanwhile (free memory short of comfort beside it).
        pool::turn_off()?;
        pool::apply_limit_mib(limit)?;
        // Something of this size in the pool (when on), the worker idle.
        drop(target.allocate(len)?);
        pool::wait_idle()?;
        let fd = target.allocate(len)?;
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
