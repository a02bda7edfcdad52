// SPDX-License-Identifier: GPL-2.0

//! Real DMA on the boot's topology: QEMU's `edu` device (bound by the
//! importer driver) writes into and reads from buffers of our heap under
//! both policies and of the system heap, at the bus addresses the dma-buf
//! core handed out, and the CPU checks through its mmap inside SYNC
//! brackets. Suite `rdh_dma`, one case per heap, size and scenario (plus
//! brackets misused while a writer is mapped, for `tracked`); each prints a
//! `# rdh-dma:` line for the table of `make check-matrix`.
//!
//! The topology comes from the kernel command line: `rdh_topology` (its
//! name) and `rdh_bounces=1` when the edu device's mappings go through
//! swiotlb. Then the system heap cannot map buffers with 1 MiB chunks at
//! all (swiotlb maps at most 256 KiB per segment): that is checked as the
//! expected result, while our heap must map every size.

use crate::{
    checks::{allocate, debugfs_dir, debugfs_number, ensure},
    importer::{fill_pattern, pattern_mismatch, pattern_word, Attachment, Dir, Session},
    ktap::{Outcome, Suite, SKIP},
    sys,
};
use dma_heap::{Heap, HeapKind};
use std::os::fd::{AsRawFd, OwnedFd};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
const POLICY: &str = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";

/// Which buffers a case uses.
#[derive(Clone, Copy)]
enum Under {
    Tracked,
    Always,
    /// The uncached heap (write-combined CPU mappings).
    Uncached,
    /// The DMA32 heaps (memory below 4 GiB), cached and uncached.
    Dma32,
    UncachedDma32,
    SystemHeap,
}

impl Under {
    fn name(self) -> &'static str {
        match self {
            Under::Tracked => "tracked",
            Under::Always => "always",
            Under::Uncached => "uncached",
            Under::Dma32 => "dma32",
            Under::UncachedDma32 => "uncached_dma32",
            Under::SystemHeap => "system",
        }
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    /// The device writes (mapped `DMA_FROM_DEVICE`), then the CPU reads.
    DeviceWrites,
    /// The CPU writes, then the device reads (mapped `DMA_TO_DEVICE`).
    DeviceReads,
    /// Mapped `DMA_BIDIRECTIONAL` throughout: the CPU writes, the device
    /// reads and writes, the CPU reads and rewrites, the device reads.
    MappedAcrossCpuAccess,
    /// Brackets the dma-buf core lets through while a writer is mapped
    /// (`tracked` only: the system heap's per-direction syncs lose data
    /// here when the mapping bounces): the device writes, the CPU rewrites
    /// the first page inside a bracket with a nested START, then an END
    /// without START, then the unmap; every write must survive.
    MisusedBrackets,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::DeviceWrites => "device_writes",
            Scenario::DeviceReads => "device_reads",
            Scenario::MappedAcrossCpuAccess => "mapped_across_cpu_access",
            Scenario::MisusedBrackets => "misused_brackets",
        }
    }
}

const UNDER: [Under; 6] = [
    Under::Tracked,
    Under::Always,
    Under::Uncached,
    Under::Dma32,
    Under::UncachedDma32,
    Under::SystemHeap,
];
const SIZES: [(usize, &str); 3] = [(4 * KIB, "4k"), (MIB + 4 * KIB, "1m4k"), (8 * MIB, "8m")];
const SCENARIOS: [Scenario; 3] = [
    Scenario::DeviceWrites,
    Scenario::DeviceReads,
    Scenario::MappedAcrossCpuAccess,
];

fn topology() -> String {
    std::env::var("rdh_topology").unwrap_or_else(|_| "plain".into())
}

fn bounces() -> bool {
    std::env::var("rdh_bounces").as_deref() == Ok("1")
}

/// Runs the suite.
pub fn run() {
    let total = UNDER.len() * SIZES.len() * SCENARIOS.len() + 4 * SIZES.len() + 6;
    let mut suite = Suite::begin("rdh_dma", total);
    let session = Session::open();
    suite.report(
        "edu_device_has_the_topologys_dma_path",
        session
            .as_ref()
            .map_err(|e| format!("open /dev/rdh_importer: {e}"))
            .and_then(edu_device_has_the_topologys_dma_path),
    );
    for under in UNDER {
        for (len, size) in SIZES {
            let misuse = matches!(
                under,
                Under::Tracked | Under::Uncached | Under::Dma32 | Under::UncachedDma32
            )
            .then_some(Scenario::MisusedBrackets);
            for scenario in SCENARIOS.into_iter().chain(misuse) {
                let name = format!("{}_{size}_{}", under.name(), scenario.name());
                let outcome = match &session {
                    Ok(session) => case(session, under, len, scenario, &name),
                    Err(e) => Err(format!("open /dev/rdh_importer: {e}")),
                };
                suite.report(&name, outcome);
            }
        }
    }
    suite.report(
        "uncached_user_write_without_sync_reaches_the_next_importer",
        session
            .as_ref()
            .map_err(|e| format!("open /dev/rdh_importer: {e}"))
            .and_then(uncached_user_write_without_sync_reaches_the_next_importer),
    );
    suite.report(
        "bounce_synced_attachments_are_counted_by_reason",
        bounce_synced_attachments_are_counted_by_reason(),
    );
    suite.report(
        "dma32_heap_attachments_never_bounce",
        dma32_heap_attachments_never_bounce(),
    );
    suite.report(
        "buffer_over_2_gib_maps_for_the_kernel_and_user_space",
        session
            .as_ref()
            .map_err(|e| format!("open /dev/rdh_importer: {e}"))
            .and_then(buffer_over_2_gib_maps_for_the_kernel_and_user_space),
    );
    suite.report(
        "dma32_heap_exhausted_is_enomem_never_memory_above_4_gib",
        dma32_heap_exhausted_is_enomem_never_memory_above_4_gib(),
    );
    suite.end();
}

/// Free and managed pages of the zones below 4 GiB (`DMA`, `DMA32`) and
/// free pages of the others, from `/proc/zoneinfo`.
fn zone_pages() -> Result<(u64, u64, u64), String> {
    let text = std::fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("zoneinfo: {e}"))?;
    let (mut low_free, mut low_managed, mut high_free) = (0, 0, 0);
    let mut low = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Node", _, "zone", zone] => low = matches!(*zone, "DMA" | "DMA32"),
            ["pages", "free", n] => {
                let n: u64 = n.parse().unwrap_or(0);
                if low {
                    low_free += n;
                } else {
                    high_free += n;
                }
            }
            ["managed", n] if low => low_managed += n.parse::<u64>().unwrap_or(0),
            _ => {}
        }
    }
    Ok((low_free, low_managed, high_free))
}

/// On a boot with RAM above 4 GiB (the `dma32` topology), the DMA32 heap
/// gives buffers until the memory below 4 GiB runs out, then ENOMEM: never
/// more than the low zones hold, nothing taken above (free memory there
/// stays), no OOM kill (the runner fails on one). Everything goes back.
fn dma32_heap_exhausted_is_enomem_never_memory_above_4_gib() -> Outcome {
    const CHUNK: usize = 64 * MIB;
    if topology() != "dma32" {
        return Err(format!("{SKIP}needs RAM above 4 GiB (topology dma32)"));
    }
    let name = crate::dma32_heap_name();
    let heap = Heap::new(HeapKind::Custom(crate::checks::heap_path(&name)))
        .map_err(|e| format!("{name}: {e}"))?;
    let (_, low_managed, high_before) = zone_pages()?;
    let mut buffers = Vec::new();
    let err = loop {
        match heap.allocate(CHUNK) {
            Ok(fd) => buffers.push(fd),
            Err(e) => break e,
        }
        if buffers.len() * CHUNK > 8 << 30 {
            return Err(format!("{name}: 8 GiB allocated, no end"));
        }
    };
    let (low_free, _, high_during) = zone_pages()?;
    let taken = (buffers.len() * CHUNK) as u64;
    let mib = |pages: u64| (pages * PAGE as u64) >> 20;
    println!(
        "    # rdh-dma: {name} exhausted after {} MiB: {err}; below 4 GiB {} of {} MiB free, above {} -> {} MiB free",
        taken >> 20,
        mib(low_free),
        mib(low_managed),
        mib(high_before),
        mib(high_during)
    );
    let enomem = err.raw_os_error() == Some(libc::ENOMEM)
        || err.to_string().contains("Cannot allocate memory");
    ensure(enomem, || {
        format!("{name}: the last allocation failed with {err}, want ENOMEM")
    })?;
    ensure(taken <= low_managed * PAGE as u64, || {
        format!("{name}: {taken} bytes, more than the {low_managed} pages below 4 GiB")
    })?;
    // Memory above 4 GiB was not touched (a little slack for the rest of
    // the system, which allocates there meanwhile).
    ensure(
        high_during + (64 * MIB / PAGE) as u64 >= high_before,
        || format!("free pages above 4 GiB fell from {high_before} to {high_during}"),
    )?;
    drop(buffers);
    // And the heaps still serve.
    allocate_for(Under::Dma32, 8 * MIB)
        .and_then(|_| allocate_for(Under::Tracked, 8 * MIB))
        .map(drop)
}

/// A buffer over 2 GiB, where RAM allows (the DMA boots have 3 GiB or
/// more): its kernel mapping's page array (4 MiB) is beyond what kmalloc
/// can ever give, its chunk list may be too (fragmented: 8 MiB), sizes no
/// longer fit an `int`, and its user mapping is one fault of 524544 pages.
/// The kernel writes a pattern through `vmap`, user space checks a word of
/// every page through `mmap`.
fn buffer_over_2_gib_maps_for_the_kernel_and_user_space(session: &Session) -> Outcome {
    const GIB: usize = 1 << 30;
    const LEN: usize = 2 * GIB + (1 << 20);
    if sys::total_ram() < (5 * GIB / 2) as u64 {
        return Err(format!("{SKIP}needs 3 GiB of RAM (-m 3072)"));
    }
    let fd = allocate(LEN as u64)?;
    let kernel = session
        .vmap(fd.as_raw_fd())
        .map_err(|e| format!("vmap: {e}"))?;
    session
        .fill(kernel, 0x1a1b)
        .map_err(|e| format!("fill through vmap: {e}"))?;
    let user = sys::Mapping::new(&fd, LEN, 0).map_err(|e| format!("mmap: {e}"))?;
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)
        .map_err(|e| format!("SYNC START: {e}"))?;
    let bytes = user.bytes();
    let wrong = (0..LEN / 4096)
        .map(|page| page * 4096)
        .chain([LEN - 8])
        .find(|&offset| {
            let word = u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap());
            word != pattern_word(0x1a1b, (offset / 8) as u64)
        });
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)
        .map_err(|e| format!("SYNC END: {e}"))?;
    session.vunmap(kernel).map_err(|e| format!("vunmap: {e}"))?;
    ensure(wrong.is_none(), || {
        format!("the kernel's pattern is wrong in user space at byte {wrong:?}")
    })
}

/// Two edu importers of an uncached buffer, and user space that writes
/// between them through its write-combined mapping without SYNC, as
/// uncached buffers are used: the first one writes, user space rewrites
/// every byte, the second one must read the user's bytes. Where the edu
/// device's mappings bounce, the first unmap copied its slot back through
/// the cache, so the second map drops every line before the copy into its
/// slot; where it snoops, its map drops every line too. The buffer's
/// counters show that invalidate (QEMU models no cache: only they can
/// show a missing one).
fn uncached_user_write_without_sync_reaches_the_next_importer(session: &Session) -> Outcome {
    let len = MIB + 4 * KIB;
    let fd = allocate_for(Under::Uncached, len)?;
    let mut map = sys::Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let (coherent, _) = session.edu_info().map_err(|e| format!("edu info: {e}"))?;
    let attach = || {
        session
            .edu_attach(fd.as_raw_fd())
            .map_err(|e| format!("attach edu: {e}"))
    };
    let (first, second) = (attach()?, attach()?);
    let mut tally = Tally::default();
    let result = (|| -> Result<(u64, u64), String> {
        session
            .map(first, Dir::FromDevice)
            .map_err(|e| format!("map: {e}"))?;
        device_write(session, first).map_err(|e| e.to_string())?;
        session.unmap(first).map_err(|e| format!("unmap: {e}"))?;
        fill_pattern(map.bytes_mut(), 0, CPU_AFTER);
        let before = crate::uncached::ops(&fd)?;
        session
            .map(second, Dir::ToDevice)
            .map_err(|e| format!("map: {e}"))?;
        let after = crate::uncached::ops(&fd)?;
        device_read(session, second, CPU_AFTER, &mut tally).map_err(|e| e.to_string())?;
        session.unmap(second).map_err(|e| format!("unmap: {e}"))?;
        Ok((after.0 - before.0, after.1 - before.1))
    })();
    for a in [first, second] {
        session.detach(a).map_err(|e| format!("detach: {e}"))?;
    }
    let at_map = result?;
    let want = (0, u64::from(bounces() || coherent));
    println!(
        "    # rdh-dma: topology={} case=uncached_user_write_between_importers pages={} mismatches={} map_ops={at_map:?}",
        topology(),
        tally.pages,
        tally.wrong
    );
    ensure(tally.pages > 0 && tally.wrong == 0, || {
        format!(
            "the second importer read {} wrong of {} pages",
            tally.wrong, tally.pages
        )
    })?;
    ensure(at_map == want, || {
        format!("its map cost {at_map:?} (cleans, invalidates), want {want:?}")
    })
}

/// The edu device is coherent except on `noncoherent`, and behind an IOMMU
/// on `iommu` only: the boot really has the topology it is named after.
fn edu_device_has_the_topologys_dma_path(session: &Session) -> Outcome {
    let (coherent, iommu) = session.edu_info().map_err(|e| format!("edu info: {e}"))?;
    let topology = topology();
    ensure(coherent == (topology != "noncoherent"), || {
        format!("{topology}: the edu device is coherent: {coherent}")
    })?;
    ensure(iommu == (topology == "iommu"), || {
        format!("{topology}: the edu device is behind an IOMMU: {iommu}")
    })
}

/// The heap's debugfs counts the attachments that sync themselves, by the
/// reason their mappings may bounce: the topology's reason only.
fn bounce_synced_attachments_are_counted_by_reason() -> Outcome {
    let stats = format!("{}/stats", debugfs_dir());
    let text = std::fs::read_to_string(&stats).map_err(|e| format!("{stats}: {e}"))?;
    for line in text.lines().filter(|l| {
        l.starts_with("maintenance") || l.starts_with("attachments") || l.starts_with("bounce")
    }) {
        println!("    # rdh-dma stats: {line}");
    }
    let expected = match topology().as_str() {
        "dma32" => Some("addressing_limited"),
        "swiotlb" => Some("swiotlb_forced"),
        _ => None,
    };
    for reason in [
        "swiotlb_forced",
        "addressing_limited",
        "limited_mapping_size",
    ] {
        let count = debugfs_number(&stats, &format!("bounce_synced_{reason}"))?;
        let want_some = expected == Some(reason);
        ensure((count > 0) == want_some, || {
            format!("bounce_synced_{reason}: {count} on topology {}", topology())
        })?;
    }
    Ok(())
}

/// The DMA32 heaps' debugfs: no attachment of theirs synced itself for a
/// bounce, and on the `dma32` topology every attachment of the edu device
/// was within its reach.
fn dma32_heap_attachments_never_bounce() -> Outcome {
    let stats = format!(
        "{}/stats",
        crate::checks::debugfs_dir_of(&crate::dma32_heap_name())
    );
    if !std::path::Path::new(&stats).exists() {
        return Err(format!("{SKIP}no DMA32 heap on this boot"));
    }
    // Forced bouncing (swiotlb=force) bounces everything.
    let reasons: &[&str] = match topology().as_str() {
        "swiotlb" => &["addressing_limited", "limited_mapping_size"],
        _ => &[
            "swiotlb_forced",
            "addressing_limited",
            "limited_mapping_size",
        ],
    };
    for reason in reasons {
        let count = debugfs_number(&stats, &format!("bounce_synced_{reason}"))?;
        ensure(count == 0, || {
            format!("{stats}: bounce_synced_{reason}: {count}")
        })?;
    }
    let within = debugfs_number(&stats, "attachments_within_reach")?;
    let attachments = debugfs_number(&stats, "attachments")?;
    println!("    # rdh-dma stats: dma32 attachments: {attachments} within_reach: {within}");
    ensure(
        (topology() != "dma32") || (within == attachments && within > 0),
        || format!("{stats}: {within} of {attachments} attachments within reach"),
    )
}

/// swiotlb's peak use in slots of 2 KiB, global to all devices: counted
/// where `rdh_swiotlb_peak=1` says so (`scripts/vm.sh` knows which kernels
/// count it, and how to ask: `swiotlb=...,track_hiwater` from 7.3 on).
const SWIOTLB_PEAK: &str = "/sys/kernel/debug/swiotlb/io_tlb_used_hiwater";

fn reset_swiotlb_peak() {
    let _ = std::fs::write(SWIOTLB_PEAK, "0");
}

/// swiotlb's peak use since [`reset_swiotlb_peak`]: 0 means nothing
/// bounced. `None` where it is not counted.
fn swiotlb_peak() -> Option<u64> {
    if std::env::var("rdh_swiotlb_peak").as_deref() != Ok("1") {
        return None;
    }
    std::fs::read_to_string(SWIOTLB_PEAK)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What one case moved and found.
#[derive(Default)]
struct Tally {
    pages: u64,
    wrong: u64,
}

fn case(session: &Session, under: Under, len: usize, scenario: Scenario, name: &str) -> Outcome {
    let fd = allocate_for(under, len)?;
    let mut tally = Tally::default();
    reset_swiotlb_peak();
    let result = run_scenario(session, &fd, len, scenario, &mut tally);
    let peak = swiotlb_peak();
    let slots = peak.map_or("?".into(), |n| n.to_string());
    let system_cannot_map = matches!(under, Under::SystemHeap) && bounces() && len > 256 * KIB;
    // The DMA32 heaps' memory never bounces for a 32-bit device (nor for
    // any other, unless swiotlb is forced): swiotlb must count no slot.
    let dma32_bounced = matches!(under, Under::Dma32 | Under::UncachedDma32)
        && topology() != "swiotlb"
        && peak.is_some_and(|n| n > 0);
    let verdict = match (&result, system_cannot_map) {
        (Err(Failure::Map(e)), true) => format!("map failed as expected ({e})"),
        (Ok(()), true) => "mapped, expected to fail".into(),
        (Err(e), _) => e.to_string(),
        (Ok(()), false) if tally.wrong == 0 => "ok".into(),
        (Ok(()), false) => "DATA MISMATCH".into(),
    };
    println!(
        "    # rdh-dma: topology={} case={name} pages={} mismatches={} swiotlb_slots={slots} result={verdict}",
        topology(),
        tally.pages,
        tally.wrong
    );
    match (result, system_cannot_map) {
        (Err(Failure::Map(_)), true) => Ok(()),
        (Ok(()), true) => Err("the system heap mapped 1 MiB segments for a bouncing device".into()),
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), false) => ensure(tally.wrong == 0, || {
            format!("{} of {} pages wrong", tally.wrong, tally.pages)
        })
        .and_then(|()| {
            ensure(!dma32_bounced, || {
                format!("swiotlb used {slots} slots for a DMA32 heap's buffer")
            })
        }),
    }
}

fn allocate_for(under: Under, len: usize) -> Result<OwnedFd, String> {
    match under {
        Under::SystemHeap => Heap::new(HeapKind::System)
            .and_then(|heap| heap.allocate(len))
            .map_err(|e| format!("system heap: allocate {len}: {e}")),
        Under::Dma32 | Under::UncachedDma32 => {
            let name = match under {
                Under::Dma32 => crate::dma32_heap_name(),
                _ => crate::uncached_dma32_heap_name(),
            };
            let path = crate::checks::heap_path(&name);
            if !path.exists() {
                return Err(format!("{SKIP}no /dev/dma_heap/{name} on this boot"));
            }
            crate::uncached::allocate_from(&name, len as u64)
        }
        Under::Uncached => {
            let name = crate::uncached_heap_name();
            let path = crate::checks::heap_path(&name);
            if !path.exists() && crate::checks::dma_bounces_everywhere() {
                return Err(format!(
                    "{SKIP}DMA mappings bounce on this boot: no uncached heap"
                ));
            }
            if !crate::uncached::turned_on()? {
                return Err(format!("{SKIP}uncached_heap=N"));
            }
            crate::uncached::allocate_from(&name, len as u64)
        }
        Under::Tracked | Under::Always => {
            std::fs::write(POLICY, under.name()).map_err(|e| format!("sync_policy: {e}"))?;
            let fd = allocate(len as u64);
            std::fs::write(POLICY, "tracked").map_err(|e| format!("sync_policy: {e}"))?;
            fd
        }
    }
}

/// Why a scenario stopped.
enum Failure {
    /// Mapping for the edu device failed.
    Map(std::io::Error),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Map(e) => write!(f, "map: {e}"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure::Other(format!("{what}: {e}"))
}

/// Seeds: the CPU's patterns are buffer-wide, the device's page-relative.
const CPU_BEFORE: u32 = 0x1111;
const DEVICE: u32 = 0x2222;
const CPU_AFTER: u32 = 0x3333;

fn run_scenario(
    session: &Session,
    fd: &OwnedFd,
    len: usize,
    scenario: Scenario,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let mut map = sys::Mapping::new(fd, len, 0).map_err(io("mmap"))?;
    let a = session
        .edu_attach(fd.as_raw_fd())
        .map_err(io("attach edu"))?;
    let result = (|| match scenario {
        Scenario::DeviceWrites => {
            cpu_fill(fd, &mut map, CPU_BEFORE)?;
            session.map(a, Dir::FromDevice).map_err(Failure::Map)?;
            let written = device_write(session, a)?;
            session.unmap(a).map_err(io("unmap"))?;
            cpu_check_device_pages(fd, &map, written, tally, 0)
        }
        Scenario::DeviceReads => {
            cpu_fill(fd, &mut map, CPU_BEFORE)?;
            session.map(a, Dir::ToDevice).map_err(Failure::Map)?;
            device_read(session, a, CPU_BEFORE, tally)?;
            session.unmap(a).map_err(io("unmap"))
        }
        Scenario::MappedAcrossCpuAccess => {
            session.map(a, Dir::Bidirectional).map_err(Failure::Map)?;
            cpu_fill(fd, &mut map, CPU_BEFORE)?;
            device_read(session, a, CPU_BEFORE, tally)?;
            let written = device_write(session, a)?;
            cpu_check_device_pages(fd, &map, written, tally, 0)?;
            cpu_fill(fd, &mut map, CPU_AFTER)?;
            device_read(session, a, CPU_AFTER, tally)?;
            session.unmap(a).map_err(io("unmap"))
        }
        Scenario::MisusedBrackets => {
            cpu_fill(fd, &mut map, CPU_BEFORE)?;
            session.map(a, Dir::FromDevice).map_err(Failure::Map)?;
            let written = device_write(session, a)?;
            sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)?;
            fill_pattern(&mut map.bytes_mut()[..PAGE], 0, CPU_AFTER);
            sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)?;
            sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_RW)?;
            sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_RW)?;
            sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)?;
            session.unmap(a).map_err(io("unmap"))?;
            // The device wrote the first page too (it writes the first page
            // of every segment); the CPU wrote it last.
            sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
            let first_page = pattern_mismatch(&map.bytes()[..PAGE], 0, CPU_AFTER).is_none();
            sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)?;
            tally.pages += 1;
            tally.wrong += u64::from(!first_page);
            cpu_check_device_pages(fd, &map, written - 1, tally, 1)
        }
    })();
    session.detach(a).map_err(io("detach"))?;
    result
}

fn sync(fd: &OwnedFd, flags: u64) -> Result<(), Failure> {
    sys::dma_buf_sync(fd, flags).map_err(io("DMA_BUF_IOCTL_SYNC"))
}

/// The CPU writes the buffer-wide pattern of `seed` in a write bracket.
fn cpu_fill(fd: &OwnedFd, map: &mut sys::Mapping, seed: u32) -> Result<(), Failure> {
    sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_WRITE)?;
    fill_pattern(map.bytes_mut(), 0, seed);
    sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)
}

fn device_write(session: &Session, a: Attachment) -> Result<u64, Failure> {
    session.edu_write(a, DEVICE).map_err(io("edu write"))
}

fn device_read(
    session: &Session,
    a: Attachment,
    seed: u32,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let (pages, wrong) = session.edu_read(a, seed).map_err(io("edu read"))?;
    tally.pages += pages;
    tally.wrong += wrong;
    Ok(())
}

/// In a read bracket: every page from `from_page` on holds either what the
/// CPU wrote before (its buffer-wide pattern) or, on exactly `written`
/// pages, the device's page-relative pattern.
fn cpu_check_device_pages(
    fd: &OwnedFd,
    map: &sys::Mapping,
    written: u64,
    tally: &mut Tally,
    from_page: usize,
) -> Result<(), Failure> {
    sync(fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
    let (mut device_pages, mut other) = (0, 0);
    for (index, page) in map.bytes().chunks_exact(PAGE).enumerate().skip(from_page) {
        let from_device = page
            .chunks_exact(8)
            .enumerate()
            .all(|(i, w)| w == pattern_word(DEVICE, i as u64).to_le_bytes());
        if from_device {
            device_pages += 1;
        } else if pattern_mismatch(page, index * PAGE, CPU_BEFORE).is_some() {
            other += 1;
        }
    }
    sync(fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)?;
    tally.pages += written;
    tally.wrong +=
        other + written.saturating_sub(device_pages) + device_pages.saturating_sub(written);
    Ok(())
}
