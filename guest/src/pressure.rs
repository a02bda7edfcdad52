// SPDX-License-Identifier: GPL-2.0

//! Memory pressure: requests that together exhaust memory end in ENOMEM,
//! never in the OOM killer (dma-buf memory is not charged to the caller, so
//! the killer would pick an innocent process). While the heap's buffers
//! still hold all they got, an ordinary process can allocate 3/128 of RAM
//! (over half the heap's reserve of 1/24, `pages.rs`) without the killer
//! either, and
//! the heap works again once the memory is freed.

use crate::{
    baseline::Baseline,
    checks::{allocate, ensure},
    ktap::Outcome,
    pool, sys,
};
use std::os::fd::OwnedFd;

const MIB: u64 = 1 << 20;
/// Each request: an ordinary camera-sized buffer.
const REQUEST: u64 = 32 * MIB;

/// The kernel's count of OOM kills since boot.
pub fn oom_kills() -> Result<u64, String> {
    let text =
        std::fs::read_to_string("/proc/vmstat").map_err(|e| format!("read /proc/vmstat: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .ok_or("no oom_kill in /proc/vmstat")?
        .trim()
        .parse()
        .map_err(|e| format!("oom_kill: {e}"))
}

/// Runs a child process that touches `len` bytes of fresh anonymous memory
/// and exits; fails if it did not exit normally (the OOM killer's SIGKILL).
pub fn touch_in_child(len: usize) -> Outcome {
    // SAFETY: The child only maps and writes its own memory, then exits
    // without running the parent's cleanup.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: A fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // SAFETY: See above.
            unsafe { libc::_exit(2) };
        }
        for offset in (0..len).step_by(4096) {
            // SAFETY: Inside the mapping made above.
            unsafe { p.cast::<u8>().add(offset).write_volatile(1) };
        }
        // SAFETY: See above.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        || format!("a process touching {len} bytes ended with wait status {status:#x}"),
    )
}

/// With a full pool of large chunks (1 MiB): the requests take them first,
/// so the pool ends drained.
pub fn exhausting_memory_is_enomem_without_the_oom_killer() -> Outcome {
    let pooled = pool::fill()?;
    let pooled_then = exhaust(pooled)?;
    ensure(pooled >= 4 * MIB && pooled_then < 4 * MIB, || {
        format!("the pool held {pooled} bytes before, {pooled_then} with memory exhausted")
    })
}

/// With a full pool of small chunks (64 KiB, from 256 KiB buffers), which
/// 32 MiB requests take only once the system has no 1 MiB block left: the
/// pool's pages are available memory until they are in a buffer, never
/// counted twice, and the shrinker gives them to whoever needs them.
pub fn exhausting_memory_with_a_pool_of_small_chunks_spares_the_oom_killer() -> Outcome {
    // From an empty pool (the check before leaves its large chunks), 512
    // buffers of 256 KiB: within the default limit on open files.
    pool::turn_off()?;
    pool::set_limit_mib(-1)?;
    let pooled = pool::fill_with(256 * 1024, 128 * MIB)?;
    ensure(pooled >= 4 * MIB, || {
        format!("the pool holds only {pooled} bytes")
    })?;
    exhaust(pooled).map(|_| ())
}

/// Requests buffers until one fails, then runs an ordinary process; checks
/// ENOMEM, no OOM kill, and that everything comes back. Returns the bytes
/// the pool held with memory exhausted.
fn exhaust(pooled: u64) -> Result<u64, String> {
    let baseline = Baseline::take()?;
    let kills_before = oom_kills()?;
    let ram = sys::total_ram();
    let limit = (ram / REQUEST) as usize + 8;
    let mut held: Vec<OwnedFd> = Vec::new();
    let failure = loop {
        if held.len() > limit {
            return Err(format!(
                "{} requests of {REQUEST} bytes all succeeded",
                held.len()
            ));
        }
        match allocate(REQUEST) {
            Ok(fd) => held.push(fd),
            Err(e) => break e,
        }
    };
    let held_mib = held.len() as u64 * REQUEST / MIB;
    let mib = |key| sys::meminfo_kib(key).unwrap_or(0) / 1024;
    let memory = format!(
        "{} MiB available: {} free, {} file, {} reclaimable slab",
        mib("MemAvailable"),
        mib("MemFree"),
        mib("Active(file)") + mib("Inactive(file)"),
        mib("SReclaimable")
    );
    let pooled_then = pool::number("pool_bytes")?;
    let ordinary = touch_in_child((ram * 3 / 128) as usize);
    drop(held);
    println!(
        "# pressure: {held_mib} MiB held of {} MiB RAM ({memory}; pool {} MiB, {} MiB before) when request {} failed: {failure}",
        ram / MIB,
        pooled_then / MIB,
        pooled / MIB,
        held_mib / (REQUEST / MIB) + 1
    );
    ensure(failure.contains("(os error 12)"), || {
        format!("the failing request: {failure}, expected ENOMEM")
    })?;
    ensure(held_mib * MIB >= ram / 2, || {
        format!("only {held_mib} MiB could be allocated")
    })?;
    let kills = oom_kills()? - kills_before;
    ensure(kills == 0, || format!("{kills} OOM kills"))?;
    ordinary?;
    baseline.check_returned()?;
    // Memory is usable again, by the same heap.
    let again = (0..4)
        .map(|_| allocate(4 * REQUEST))
        .collect::<Result<Vec<_>, _>>()?;
    drop(again);
    baseline.check_returned()?;
    Ok(pooled_then)
}
