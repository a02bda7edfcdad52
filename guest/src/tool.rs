// SPDX-License-Identifier: GPL-2.0

//! The `rdh` tool (`tool/`, `/bin/rdh` in the initramfs) run as a user
//! would: every subcommand, human and `--json`, and its errors. Each
//! invocation and its output go to the console as KTAP diagnostics
//! (`# $ rdh list`, then its lines).

use crate::{
    cached_heap_name,
    checks::{debugfs_dir_of, ensure},
    ktap::{Outcome, SKIP},
    uncached_boot, uncached_heap_name,
};
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

const RDH: &str = "/bin/rdh";

/// What one run of the tool gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn show(args: &[&str], stdout: &str, stderr: &str) {
    show_with("    # ", args, stdout, stderr);
}

/// Prints `$ rdh args` and the output, each line after `prefix`.
fn show_with(prefix: &str, args: &[&str], stdout: &str, stderr: &str) {
    println!("{prefix}$ rdh {}", args.join(" "));
    for line in stdout.lines().chain(stderr.lines()) {
        println!("{prefix}{line}");
    }
}

/// Runs `rdh args` for the demonstration (`make run`): the command and its
/// output on the console as they are; `Err` unless it exits 0.
pub fn demo(args: &[&str]) -> Outcome {
    let out = Command::new(RDH)
        .args(args)
        .output()
        .map_err(|e| format!("run {RDH}: {e}"))?;
    // The runner echoes the console's `rdh: ` lines.
    show_with(
        "rdh: ",
        args,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    );
    ensure(out.status.success(), || {
        format!("rdh {}: {}", args.join(" "), out.status)
    })
}

/// Runs `rdh args`.
fn run(args: &[&str]) -> Result<Run, String> {
    let out = Command::new(RDH)
        .args(args)
        .output()
        .map_err(|e| format!("run {RDH}: {e}"))?;
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    show(args, &run.stdout, &run.stderr);
    Ok(run)
}

/// Runs `rdh args` and wants exit code 0.
fn ok(args: &[&str]) -> Result<String, String> {
    let r = run(args)?;
    ensure(r.code == 0, || {
        format!("rdh {}: exit code {}: {}", args.join(" "), r.code, r.stderr)
    })?;
    Ok(r.stdout)
}

/// Runs `rdh args` and wants exit code `code` and `hint` in the message.
fn fails(args: &[&str], code: i32, hint: &str) -> Outcome {
    let r = run(args)?;
    ensure(r.code == code && r.stderr.contains(hint), || {
        format!(
            "rdh {}: exit code {} and {:?}, want {code} and a message with {hint:?}",
            args.join(" "),
            r.code,
            r.stderr
        )
    })
}

/// The tool's checks run in the cached heap's boot only: they are of the
/// tool, which finds both heaps itself.
fn tool_boot() -> Outcome {
    if uncached_boot() {
        return Err(format!(
            "{SKIP}the rdh checks run in the cached heap's boot"
        ));
    }
    Ok(())
}

/// Before the module is loaded: `rdh list` says how to load it, `rdh
/// alloc` without a heap and `rdh stats` exit 3 saying the same.
pub fn before_the_module_loads() -> Outcome {
    let out = ok(&["list"])?;
    // The system heap, if any: built in, or its module loaded.
    let system = std::path::Path::new("/dev/dma_heap/system").exists();
    ensure(
        out.contains("insmod rust_dmabuf_heap.ko") && out.contains("system") == system,
        || format!("rdh list without the module (system heap: {system}): {out:?}"),
    )?;
    fails(&["alloc", "4K"], 3, "insmod rust_dmabuf_heap.ko")?;
    fails(&["stats"], 3, "insmod rust_dmabuf_heap.ko")
}

/// `rdh list`: both of our heaps with their policies, the system heap,
/// the parameters; the same as JSON.
pub fn rdh_list_shows_our_heaps_policies_and_parameters() -> Outcome {
    tool_boot()?;
    let (ours, uncached) = (cached_heap_name(), uncached_heap_name());
    let out = ok(&["list"])?;
    let row = |name: &str, policy: &str| {
        out.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&name)
                && words.get(1) == Some(&"yes")
                && words.get(2) == Some(&policy)
        })
    };
    ensure(
        row(&ours, "tracked")
            && row(&uncached, "uncached")
            && out.contains("parameters: ")
            && out.contains("sync_policy=tracked"),
        || format!("rdh list: {out:?}"),
    )?;
    let json = ok(&["list", "--json"])?;
    ensure(
        json.contains(&format!(
            "{{\"name\":\"{ours}\",\"ours\":true,\"policy\":\"tracked\""
        )) && json.contains(&format!(
            "{{\"name\":\"{uncached}\",\"ours\":true,\"policy\":\"uncached\""
        )) && (crate::standing_in() || json.contains("{\"name\":\"system\",\"ours\":false}"))
            && json.contains("\"loaded\":true"),
        || format!("rdh list --json: {json:?}"),
    )
}

/// The value after `"key":` in compact JSON.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let rest = &json[json.find(&format!("\"{key}\":"))? + key.len() + 3..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `rdh alloc 1M --hold 10 --json` in the background (long enough for
/// three listings of four heaps on the debug kernel): while it holds the
/// buffer, its debugfs file exists, `rdh stats --buffers` shows it, and
/// the process listing names the holder; after it exits the buffer is
/// gone. Then `rdh alloc 64K` for people.
pub fn rdh_alloc_holds_a_buffer_that_stats_sees() -> Outcome {
    tool_boot()?;
    let ours = cached_heap_name();
    let mut child = Command::new(RDH)
        .args(["alloc", "1M", "--hold", "10", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn rdh: {e}"))?;
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    show(&["alloc", "1M", "--hold", "10", "--json"], &line, "");
    let held = (|| -> Result<String, String> {
        ensure(matches!(read, Some(Ok(n)) if n > 0), || {
            "rdh alloc printed nothing".into()
        })?;
        let inode = json_number(&line, "inode").ok_or(format!("no inode in {line:?}"))?;
        let pid = json_number(&line, "pid").ok_or(format!("no pid in {line:?}"))?;
        ensure(json_number(&line, "size") == Some(1 << 20), || {
            format!("size in {line:?}")
        })?;
        let file = format!("{}/buffers/{inode}", debugfs_dir_of(&ours));
        ensure(std::path::Path::new(&file).exists(), || {
            format!("{file} missing while held")
        })?;
        let stats = ok(&["stats", "--buffers"])?;
        ensure(
            stats
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&inode.to_string()))
                && stats.lines().any(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.first() == Some(&pid.to_string().as_str())
                        && w.contains(&inode.to_string().as_str())
                }),
            || format!("rdh stats --buffers does not show buffer {inode} of pid {pid}"),
        )?;
        let json = ok(&["stats", "--buffers", "--json"])?;
        ensure(
            json.contains(&format!("\"inode\":{inode},"))
                && json.contains(&format!("\"pid\":{pid},")),
            || format!("rdh stats --json does not show buffer {inode}"),
        )?;
        Ok(file)
    })();
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let file = held?;
    ensure(status.success(), || format!("rdh alloc --hold: {status}"))?;
    ensure(!std::path::Path::new(&file).exists(), || {
        format!("{file} still there after rdh exited")
    })?;
    let out = ok(&["alloc", "64K"])?;
    ensure(
        out.starts_with("allocated 64.0 KiB (65536 bytes) from ") && out.contains("inode"),
        || format!("rdh alloc 64K: {out:?}"),
    )
}

/// The errors a user meets, each with its exit code and what to do: a heap
/// that is not there, debugfs not mounted (unmounted for the run, then
/// mounted again), bad sizes, unknown commands.
pub fn rdh_errors_say_what_to_do() -> Outcome {
    tool_boot()?;
    fails(
        &["alloc", "1M", "--heap", "nosuch"],
        3,
        "no heap nosuch in /dev/dma_heap",
    )?;
    // SAFETY: A valid NUL-terminated path; nothing of ours is open there.
    if unsafe { libc::umount2(c"/sys/kernel/debug".as_ptr(), 0) } != 0 {
        return Err(format!(
            "umount debugfs: {}",
            std::io::Error::last_os_error()
        ));
    }
    let without = fails(&["stats"], 3, "mount -t debugfs none /sys/kernel/debug");
    crate::sys::mount("debugfs", "/sys/kernel/debug").map_err(|e| format!("mount debugfs: {e}"))?;
    without?;
    fails(&["alloc", "12Q"], 2, "bad size")?;
    fails(&["bench", "alloc", "--heap", ""], 2, "bad heap name")?;
    fails(
        &["bench", "alloc", "--iterations", "1000000"],
        2,
        "not in 1..=100000",
    )?;
    fails(&["frobnicate"], 2, "unrecognized subcommand")?;
    let help = ok(&["alloc", "--help"])?;
    ensure(
        help.contains("Usage: rdh alloc") && help.contains("Exit codes"),
        || format!("rdh alloc --help: {help:?}"),
    )
}

/// `rdh bench alloc` on our heap (cold and warm) and the system heap in
/// one run, p50 <= p95 <= p99 for each row; the same as JSON.
pub fn rdh_bench_alloc_compares_the_heaps() -> Outcome {
    tool_boot()?;
    let ours = cached_heap_name();
    // The drop-in boot has no upstream system heap to compare with.
    let standing_in = crate::standing_in();
    let heaps = if standing_in {
        ours.clone()
    } else {
        format!("{ours},system")
    };
    let out = ok(&[
        "bench",
        "alloc",
        "--sizes",
        "4K,1M",
        "--iterations",
        "8",
        "--heap",
        &heaps,
    ])?;
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .collect();
    // size value, size unit, heap, pool, p50, p95, p99
    let sorted = |r: &Vec<&str>| {
        let p: Vec<f64> = r[4..7].iter().filter_map(|v| v.parse().ok()).collect();
        p.len() == 3 && p[0] <= p[1] && p[1] <= p[2]
    };
    let has = |heap: &str, pool: &str| {
        rows.iter()
            .filter(|r| r.len() == 7 && r[2] == heap && r[3] == pool)
            .count()
    };
    ensure(
        rows.len() == if standing_in { 4 } else { 6 }
            && rows.iter().all(sorted)
            && has(&ours, "cold") == 2
            && has(&ours, "warm") == 2
            && (standing_in || has("system", "-") == 2),
        || format!("rdh bench alloc: {out:?}"),
    )?;
    let json = ok(&[
        "bench",
        "alloc",
        "--sizes",
        "64K",
        "--iterations",
        "4",
        "--heap",
        &heaps,
        "--json",
    ])?;
    ensure(
        json.matches("\"p99_us\":").count() == if standing_in { 2 } else { 3 }
            && json.contains("\"pool\":\"warm\""),
        || format!("rdh bench alloc --json: {json:?}"),
    )
}

/// `rdh bench pipeline` (the test kernel has no kprobes: our heaps count
/// through debugfs, the system heap is not counted): ours tracked never
/// costs more than ours under `always`, strictly less in S1, and the
/// uncached heap nothing but an invalidate per coherent importer's map, in
/// every scenario; the JSON has every record.
pub fn rdh_bench_pipeline_prints_the_maintenance_table() -> Outcome {
    tool_boot()?;
    let json = ok(&["bench", "pipeline", "--json"])?;
    let ours = cached_heap_name();
    let uncached = uncached_heap_name();
    let bytes = |scenario: &str, heap: &str, policy: &str| {
        let key =
            format!("{{\"scenario\":\"{scenario}\",\"heap\":\"{heap}\",\"policy\":\"{policy}\"");
        let record = &json[json.find(&key)?..];
        let record = &record[..record.find('}')?];
        Some(json_number(record, "clean_bytes")? + json_number(record, "invalidate_bytes")?)
    };
    for s in rdh::scenarios::SCENARIOS {
        let (tracked, always, wc) = (
            bytes(s.name, &ours, "tracked"),
            bytes(s.name, &ours, "always"),
            bytes(s.name, &uncached, "uncached"),
        );
        // The uncached heap: every coherent importer's map drops every
        // line (user space may have written around the cache unseen).
        let snoopers = s
            .steps()
            .filter(|op| matches!(op, rdh::scenarios::Op::Map(dev, _) if s.devices[*dev].coherent))
            .count() as u64;
        let want_wc = snoopers * rdh::scenarios::BUFFER_BYTES;
        ensure(
            matches!((tracked, always, wc), (Some(t), Some(a), Some(w)) if t <= a && (s.name != "S1" || t < a) && w == want_wc),
            || {
                format!(
                    "{}: tracked {tracked:?}, always {always:?}, uncached {wc:?} bytes (want {want_wc})",
                    s.name
                )
            },
        )?;
    }
    let table = ok(&["bench", "pipeline"])?;
    ensure(
        table.contains("cache maintenance per frame")
            && table.lines().any(|l| l.starts_with("S9 ")),
        || format!("rdh bench pipeline: {table:?}"),
    )
}

const PARAMETERS: &str = "/sys/module/rust_dmabuf_heap/parameters";

fn parameter(name: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("{PARAMETERS}/{name}"))
        .map(|v| v.trim().to_string())
        .map_err(|e| format!("read {name}: {e}"))
}

/// Starts `rdh args`, sends `signal` once `started` says the benchmark is
/// under way (it has changed a parameter: its handlers are in place), and
/// wants exit code 130 with the message that the parameters were put back.
fn stopped_by(args: &[&str], signal: libc::c_int, started: impl Fn() -> bool) -> Outcome {
    let mut child = Command::new(RDH)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {RDH}: {e}"))?;
    let start = std::time::Instant::now();
    while !started() {
        if start.elapsed() > std::time::Duration::from_secs(60)
            || child.try_wait().is_ok_and(|done| done.is_some())
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("rdh {}: never seen under way", args.join(" ")));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: signalling our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for {RDH}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "    # (signal {signal} once under way, after {:?})",
        start.elapsed()
    );
    show(args, &String::from_utf8_lossy(&out.stdout), &stderr);
    ensure(
        out.status.code() == Some(130) && stderr.contains("put back"),
        || {
            format!(
                "rdh {}: {} {stderr:?}, want exit 130",
                args.join(" "),
                out.status
            )
        },
    )
}

/// The benchmarks change module parameters for a while (`bench alloc` the
/// pool's limit, `bench pipeline` the sync policy) and put them back: when
/// they end, and when Ctrl-C or SIGTERM stops them midway.
pub fn rdh_bench_puts_module_parameters_back_when_stopped() -> Outcome {
    tool_boot()?;
    let ours = cached_heap_name();
    // The drop-in boot has no upstream system heap to compare with.
    let standing_in = crate::standing_in();
    let heaps = if standing_in {
        ours.clone()
    } else {
        format!("{ours},system")
    };
    let limit = parameter("pool_limit_mib")?;
    let policy = parameter("sync_policy")?;
    // A limit of our own, to see it come back.
    crate::pool::set_limit_mib(48)?;
    let checks = (|| {
        ok(&[
            "bench",
            "alloc",
            "--sizes",
            "4K",
            "--iterations",
            "2",
            "--heap",
            &ours,
        ])?;
        let after_run = parameter("pool_limit_mib")?;
        stopped_by(
            &[
                "bench",
                "alloc",
                "--sizes",
                "8M",
                "--iterations",
                "5000",
                "--heap",
                &heaps,
            ],
            libc::SIGINT,
            // Its first run, ours cold, turns the pool off.
            || parameter("pool_limit_mib").is_ok_and(|v| v == "0"),
        )?;
        let after_stop = parameter("pool_limit_mib")?;
        stopped_by(
            &["bench", "pipeline"],
            libc::SIGTERM,
            // Its second target is ours under `always`.
            || parameter("sync_policy").is_ok_and(|v| v == "always"),
        )?;
        let policy_after = parameter("sync_policy")?;
        ensure(
            after_run == "48" && after_stop == "48" && policy_after == policy,
            || {
                format!(
                    "pool_limit_mib after a run {after_run}, after a stop {after_stop} (want 48); sync_policy {policy_after} (want {policy})"
                )
            },
        )
    })();
    let restored = std::fs::write(format!("{PARAMETERS}/pool_limit_mib"), &limit)
        .map_err(|e| format!("put back pool_limit_mib={limit}: {e}"));
    checks?;
    restored
}

/// Output into a closed pipe (`rdh list | head -0`) ends the tool by
/// SIGPIPE, as any Unix tool, not by a panic's abort.
pub fn rdh_into_a_closed_pipe_ends_quietly() -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    tool_boot()?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both are open and ours alone from here on.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let out = Command::new(RDH)
        .args(["list"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run {RDH}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "    # $ rdh list | (a closed pipe): {}, stderr {stderr:?}",
        out.status
    );
    ensure(
        out.status.signal() == Some(libc::SIGPIPE) && stderr.is_empty(),
        || format!("rdh list into a closed pipe: {}, {stderr:?}", out.status),
    )
}
