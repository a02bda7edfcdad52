// SPDX-License-Identifier: GPL-2.0

//! The heap's page pool (`pool.rs` in the module), seen from user space:
//! its debugfs file and its `pool_limit_mib` and `pool_window_ms`
//! parameters, and the checks that freed buffers go back to it, that it
//! respects its cap, that what nobody asks for goes back on its own, and
//! that its memory comes back when the system needs it.

use crate::{
    checks::{allocate, debugfs_dir, debugfs_number, ensure},
    ktap::Outcome,
    pressure, sys,
};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const LIMIT: &str = "/sys/module/rust_dmabuf_heap/parameters/pool_limit_mib";
const WINDOW: &str = "/sys/module/rust_dmabuf_heap/parameters/pool_window_ms";
/// The module's default `pool_window_ms`.
pub const DEFAULT_WINDOW_MS: u64 = 5000;

/// One number of the pool's debugfs file.
pub fn number(key: &str) -> Result<u64, String> {
    debugfs_number(&format!("{}/pool", debugfs_dir()), key)
}

/// Waits (up to 20 s) until the worker has zeroed everything freed.
pub fn wait_idle() -> Outcome {
    let start = Instant::now();
    loop {
        // Zeroed, and cleaned (a long backlog is cleaned after it is gone).
        if number("backlog_bytes")? + number("working_bytes")? + number("unclean_bytes")? == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err("the pool's worker is still busy after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sets `pool_limit_mib` to 0 and waits until the worker has freed what
/// the pool held (a free makes it trim).
pub fn turn_off() -> Outcome {
    set_limit_mib(0)?;
    drop(allocate(4096)?);
    trimmed_to(0)
}

/// Sets `pool_limit_mib`; for 0, as [`turn_off`] does.
pub fn apply_limit_mib(mib: i64) -> Outcome {
    if mib == 0 {
        turn_off()
    } else {
        set_limit_mib(mib)
    }
}

/// Whether the pool cleans its chunks (debugfs `cleans`).
pub fn cleans() -> Result<bool, String> {
    let path = format!("{}/pool", debugfs_dir());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(text.contains("cleans: true"))
}

/// Waits (up to 20 s) until the pool holds at most `bytes`: the worker
/// trims it a tick after a free found it over its limit.
fn trimmed_to(bytes: u64) -> Outcome {
    let start = Instant::now();
    loop {
        let held = number("pool_bytes")?;
        if held <= bytes {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "the pool holds {held} bytes 20 s after its limit went down to {bytes}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sets `pool_limit_mib` (-1: the default, 1/2 of RAM).
pub fn set_limit_mib(mib: i64) -> Outcome {
    std::fs::write(LIMIT, mib.to_string()).map_err(|e| format!("set pool_limit_mib={mib}: {e}"))
}

/// Sets `pool_window_ms` (a change forgets what the pool saw allocated).
pub fn set_window_ms(ms: u64) -> Outcome {
    std::fs::write(WINDOW, ms.to_string()).map_err(|e| format!("set pool_window_ms={ms}: {e}"))
}

/// Fills the pool up to its cap with buffers of 8 MiB (large chunks)
/// allocated, then closed (a churn), and waits for the worker;
/// returns the bytes pooled.
pub fn fill() -> Result<u64, String> {
    fill_with(8 * MIB, number("limit_bytes")?)
}

/// Fills the pool up to `bytes` (at most its cap) with buffers of `len`
/// bytes; returns the bytes pooled. The pool then remembers the churn for a
/// minute (`pool_window_ms`), however slowly its worker zeroes; the checks
/// that need the default set it again. For a second after the shrinker
/// ran, frees bypass the pool: then it tries again.
pub fn fill_with(len: u64, bytes: u64) -> Result<u64, String> {
    let target = bytes.min(number("limit_bytes")?);
    set_window_ms(60_000)?;
    for _ in 0..3 {
        let held = (0..target / len)
            .map(|_| allocate(len))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        wait_idle()?;
        let pooled = number("pool_bytes")?;
        if pooled + len.max(4 * MIB) > target {
            return Ok(pooled);
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    Err(format!(
        "the pool holds {} of {target} bytes after three fills",
        number("pool_bytes")?
    ))
}

/// Freed buffers fill the pool up to its cap, zeroed and (with a direct
/// maintenance device) cleaned; the cap is writable at run time (1/2 of
/// RAM by default), and 0 turns the pool off and empties it.
pub fn freed_buffers_fill_the_pool_up_to_its_limit() -> Outcome {
    set_limit_mib(-1)?;
    let default = sys::total_ram() / 4096 / 2 * 4096;
    let limit = number("limit_bytes")?;
    ensure(limit == default, || {
        format!("default cap {limit} bytes, want 1/2 of RAM: {default}")
    })?;
    set_limit_mib(64)?;
    let limit = number("limit_bytes")?;
    let pooled = fill()?;
    ensure(pooled + 8 * MIB > limit && pooled <= limit, || {
        format!("{pooled} bytes pooled, limit {limit}")
    })?;
    let cleans = cleans()?;
    ensure(
        number("zeroed_bytes")? >= pooled && (!cleans || number("cleaned_bytes")? >= pooled),
        || "pooled chunks were not all zeroed and cleaned".into(),
    )?;
    // A buffer allocated now comes from the pool.
    let hits = number("hit_bytes")?;
    drop(allocate(8 * MIB)?);
    ensure(number("hit_bytes")? == hits + 8 * MIB, || {
        "an 8 MiB allocation with a full pool missed it".into()
    })?;
    // A smaller limit: what is freed next is freed at once, and the worker
    // trims the rest.
    set_limit_mib(16)?;
    drop(allocate(8 * MIB)?);
    let trimmed = trimmed_to(16 * MIB);
    let given_back = || Ok::<_, String>(number("bypassed_bytes")? + number("released_bytes")?);
    let (held, bypassed) = (number("pool_bytes")?, given_back()?);
    let off = turn_off();
    let bypassed_now = given_back()?;
    set_limit_mib(-1)?;
    trimmed.map_err(|e| format!("pool_limit_mib=16: {e}"))?;
    off.map_err(|e| format!("pool_limit_mib=0: {e}"))?;
    // What it held was released, the buffer freed meanwhile bypassed it.
    ensure(bypassed_now >= bypassed + held + 4096, || {
        format!("pool_limit_mib=0: bypassed + released bytes {bypassed} -> {bypassed_now}")
    })?;
    ensure(std::fs::write(LIMIT, "many").is_err(), || {
        "pool_limit_mib accepted a word".into()
    })
}

/// A full pool gives its memory back when an ordinary process needs it:
/// a child touches more anonymous memory than is free beside the pool, the
/// shrinker drains the pool, and nobody is OOM-killed.
pub fn full_pool_is_given_back_to_an_ordinary_process() -> Outcome {
    set_limit_mib(-1)?;
    let pooled = fill()?;
    let kills = pressure::oom_kills()?;
    let shrunk = number("shrunk_bytes")?;
    let free = sys::free_kib()? * 1024;
    // More than is free, less than is free plus pooled, with room for the
    // watermarks and the child's page tables (with half the pool as the
    // margin, one boot in five on a loaded host was OOM-killed).
    let touch = free + pooled / 4;
    let child = pressure::touch_in_child(touch as usize);
    let shrunk_now = number("shrunk_bytes")?;
    let kills_now = pressure::oom_kills()?;
    println!(
        "# pool: {} MiB pooled, a process touched {} MiB with {} MiB free: the shrinker freed {} MiB",
        pooled / MIB,
        touch / MIB,
        free / MIB,
        (shrunk_now - shrunk) / MIB
    );
    child?;
    ensure(kills_now == kills, || {
        format!("{} OOM kills", kills_now - kills)
    })?;
    ensure(shrunk_now >= shrunk + pooled / 4, || {
        format!("the shrinker freed only {} bytes", shrunk_now - shrunk)
    })
}

/// A churn fills the pool with what it frees; once nobody allocates, the
/// worker gives it all back within the window (`pool_window_ms`, 5 s by
/// default) and a fifth of it, without memory pressure. Prints the pool
/// over time.
pub fn an_idle_pool_goes_back_within_the_window() -> Outcome {
    set_limit_mib(-1)?;
    ensure(std::fs::write(WINDOW, "soon").is_err(), || {
        "pool_window_ms accepted a word".into()
    })?;
    // Below the least window: taken as 5 ms, not as 0.
    set_window_ms(0)?;
    let least = number("window_ms")?;
    set_window_ms(DEFAULT_WINDOW_MS)?;
    ensure(least == 5, || {
        format!("pool_window_ms=0 gave a window of {least} ms")
    })?;
    let (len, count) = (8 * MIB, 16);
    let released = number("released_bytes")?;
    let mut last_free = Instant::now();
    for _ in 0..3 {
        let held = (0..count)
            .map(|_| allocate(len))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        last_free = Instant::now();
    }
    let wanted = number("wanted_bytes")?;
    let mut timeline = Vec::new();
    let floor = sys::total_ram() / 64;
    let deadline = Duration::from_millis(DEFAULT_WINDOW_MS * 6 / 5 + 1500);
    let outcome = loop {
        let (at, held) = (last_free.elapsed(), number("pool_bytes")?);
        timeline.push(format!("{:.1} s {} MiB", at.as_secs_f64(), held / MIB));
        // Within 4/5 of the window the allocations are remembered: the pool
        // keeps at least those of a fifth of it (half the churn, however
        // slow the machine).
        if at < Duration::from_millis(DEFAULT_WINDOW_MS * 4 / 5 - 200) && held < count * len / 2 {
            break Err(format!("only {held} bytes pooled {at:?} after the churn"));
        }
        if at > Duration::from_millis(DEFAULT_WINDOW_MS) && held <= floor {
            break Ok(());
        }
        if at > deadline {
            break Err(format!("{held} bytes still pooled {at:?} after the churn"));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "# pool after a churn of 3 x {count} x {} MiB (wanted {} MiB), time since the last free: {}",
        len / MIB,
        wanted / MIB,
        timeline.join(", ")
    );
    outcome?;
    ensure(wanted >= count * len / 2, || {
        format!("wanted_bytes {wanted} after the churn")
    })?;
    let released_now = number("released_bytes")?;
    ensure(released_now >= released + count * len - floor, || {
        format!("released_bytes {released} -> {released_now}")
    })
}

/// Turning the pool off gives back every page it held: afterwards the heap
/// holds nothing (every buffer of the checks is closed by now) and the
/// pool nothing. Turns it on again.
pub fn pool_turned_off_leaves_no_page_behind() -> Outcome {
    turn_off()?;
    let live = crate::checks::stats_number("live_bytes")?;
    set_limit_mib(-1)?;
    ensure(live == 0, || {
        format!("{live} bytes of chunks still allocated with no buffer and the pool off")
    })
}
