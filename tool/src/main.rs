// SPDX-License-Identifier: GPL-2.0

//! `rdh`: the heap on a board, from the command line. Subcommands print
//! for people by default and JSON with `--json`; errors say what to do and
//! exit with a code scripts can tell apart (see [`EXIT_CODES`]).

mod report;
mod settings;

use clap::{builder::RangedU64ValueParser, CommandFactory, Parser, Subcommand};
use rdh::{
    debugfs, heaps, pipeline,
    scenarios::{self, WHAT_WIDTH},
};
use report::{Fields, Scalar};
use serde::Serialize;
use settings::Saved;
use std::{
    io::{IsTerminal, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Every command's help ends with this.
const EXIT_CODES: &str = "\
Exit codes: 0 done, 1 the operation failed, 2 bad usage, 3 something is
missing (module, heap, debugfs, driver: the message says how to get it),
4 permission denied, 130 a benchmark stopped by Ctrl-C or SIGTERM (the
module parameters it changed are put back, as when it ends).";

/// The rust_dmabuf_heap tool: heaps, allocations, statistics, benchmarks
#[derive(Parser)]
#[command(name = "rdh", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The heaps of /dev/dma_heap; for ours, policy, parameters and live bytes
    #[command(after_help = EXIT_CODES)]
    List(Output),
    /// Allocate a buffer, report time and inode; hold it with --hold
    #[command(after_help = EXIT_CODES)]
    Alloc(AllocArgs),
    /// Our debugfs totals (and per-buffer state), and every process's dma-bufs
    #[command(after_help = EXIT_CODES)]
    Stats(StatsArgs),
    /// Benchmarks: allocation latency, cache maintenance of pipelines
    #[command(subcommand, after_help = EXIT_CODES)]
    Bench(Bench),
    /// Print the completion script for SHELL (e.g. rdh completions bash >
    /// /etc/bash_completion.d/rdh)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Allocation + free latency, p50/p95/p99
    #[command(after_help = EXIT_CODES)]
    Alloc(BenchAllocArgs),
    /// The benchmark scenarios S1-S9 through the importer test driver:
    /// cache maintenance per frame, every heap
    #[command(after_help = EXIT_CODES)]
    Pipeline(Output),
}

#[derive(clap::Args)]
struct Output {
    /// Print one line of JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct AllocArgs {
    /// Bytes: 4096, 64K, 8M, 1G (binary units)
    #[arg(value_parser = parse_size)]
    size: u64,
    /// The heap [default: the module's cached heap]
    #[arg(long, value_name = "H", value_parser = heap_name)]
    heap: Option<String>,
    /// Keep the buffer SECS seconds before freeing it
    #[arg(long, value_name = "SECS")]
    hold: Option<u64>,
    #[command(flatten)]
    output: Output,
}

#[derive(clap::Args)]
struct StatsArgs {
    /// Each buffer's state too (its debugfs file: debugfs_buffers=Y)
    #[arg(long)]
    buffers: bool,
    #[command(flatten)]
    output: Output,
}

/// Most calls `rdh bench alloc` times per heap and size.
const MAX_ITERATIONS: usize = 100_000;

#[derive(clap::Args)]
struct BenchAllocArgs {
    /// Buffer sizes
    #[arg(
        long,
        value_name = "SIZE,...",
        value_delimiter = ',',
        default_value = "4K,64K,1M,8M",
        value_parser = parse_size
    )]
    sizes: Vec<u64>,
    /// Timed calls per heap and size, 1 to 100000
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_ITERATIONS as u64)
    )]
    iterations: usize,
    /// The heaps [default: all, ours first]
    #[arg(long, value_name = "H,...", value_delimiter = ',', value_parser = heap_name)]
    heap: Vec<String>,
    #[command(flatten)]
    output: Output,
}

/// Why a command failed: the message and the exit code.
struct Fail(i32, String);

type Outcome = Result<(), Fail>;

fn missing(msg: impl Into<String>) -> Fail {
    Fail(3, msg.into())
}

/// `4096`, `64K`, `8M`, `1G` (binary units).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let bad = || "bad size (e.g. 4096, 64K, 8M, 1G)".to_string();
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| "bad size (1 byte to 16 EiB)".into())
}

/// A name under `/dev/dma_heap`, not a path.
fn heap_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err("bad heap name (rdh list names them)".into());
    }
    Ok(name.to_string())
}

/// Prints `report` as one line of JSON.
fn print_json(report: &impl Serialize) -> Outcome {
    let line = serde_json::to_string(report).map_err(|e| Fail(1, format!("JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn heap_path(name: &str) -> PathBuf {
    Path::new(heaps::DEV).join(name)
}

/// The heap to use when none is given: the module's cached heap.
fn default_heap() -> Result<String, Fail> {
    heaps::our_heap_name().ok_or_else(|| {
        missing(
            "rust_dmabuf_heap is not loaded: insmod rust_dmabuf_heap.ko (or name a heap: --heap system)",
        )
    })
}

/// Opens heap `name`, with a message that says what to do if it cannot.
fn open_heap(name: &str) -> Result<dma_heap::Heap, Fail> {
    let path = heap_path(name);
    match std::fs::File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = if heaps::module_loaded() {
                let ours: Vec<String> = heaps::list()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|h| h.ours.is_some())
                    .map(|h| h.name)
                    .collect();
                format!("the module's heaps are {} (rdh list)", ours.join(", "))
            } else {
                "is the module loaded? (insmod rust_dmabuf_heap.ko)".to_string()
            };
            return Err(missing(format!("no heap {name} in {}: {hint}", heaps::DEV)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Fail(
                4,
                format!(
                    "permission denied opening {}: run as root, or let your user open it (a udev rule for dma_heap/{name})",
                    path.display()
                ),
            ));
        }
        Err(e) => return Err(Fail(1, format!("open {}: {e}", path.display()))),
        Ok(_) => {}
    }
    dma_heap::Heap::new(dma_heap::HeapKind::Custom(path.clone()))
        .map_err(|e| Fail(1, format!("open {}: {e}", path.display())))
}

fn alloc_error(name: &str, size: u64, e: impl std::fmt::Display) -> Fail {
    Fail(1, format!("allocating {size} bytes from {name}: {e}"))
}

fn main() {
    settings::end_quietly_on_closed_pipes();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `rdh` alone: the help, as `rdh --help`.
        Err(_) if std::env::args_os().len() == 1 => {
            let _ = Cli::command().print_help();
            return;
        }
        // Usage errors exit 2, `--help` and `--version` 0.
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::List(output) => list(output),
        Command::Alloc(args) => alloc(args),
        Command::Stats(args) => stats(args),
        Command::Bench(Bench::Alloc(args)) => bench_alloc(args),
        Command::Bench(Bench::Pipeline(output)) => bench_pipeline(output),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rdh", &mut std::io::stdout());
            Ok(())
        }
    };
    if let Err(Fail(code, msg)) = result {
        eprintln!("rdh: {msg}");
        std::process::exit(code);
    }
}

/// `rdh list`.
fn list(output: Output) -> Outcome {
    let heaps = heaps::list().map_err(missing)?;
    let params = heaps::parameters();
    if output.json {
        return print_json(&report::List {
            heaps: heaps
                .iter()
                .map(|h| {
                    let stat = |key| h.stat(key).map(Scalar);
                    report::ListedHeap {
                        name: &h.name,
                        ours: h.ours.is_some(),
                        policy: stat("policy"),
                        live_bytes: stat("live_bytes"),
                        buffers_allocated: stat("buffers_allocated"),
                        bytes_allocated: stat("bytes_allocated"),
                    }
                })
                .collect(),
            module: report::Module {
                loaded: heaps::module_loaded(),
                parameters: Fields(&params),
            },
        });
    }
    println!(
        "{:<28} {:<5} {:<9} {:>12} {:>9}",
        "heap", "ours", "policy", "live", "buffers"
    );
    for h in &heaps {
        let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
        let live = h
            .stat("live_bytes")
            .and_then(|v| v.parse().ok())
            .map_or("-".into(), human_bytes);
        println!(
            "{:<28} {:<5} {:<9} {:>12} {:>9}",
            h.name,
            if h.ours.is_some() { "yes" } else { "-" },
            dash(h.stat("policy")),
            live,
            dash(h.stat("buffers_allocated")),
        );
    }
    if heaps
        .iter()
        .any(|h| h.ours.as_ref().is_some_and(Vec::is_empty))
    {
        println!(
            "(no debugfs figures: mount -t debugfs none {})",
            debugfs::MOUNT
        );
    }
    if params.is_empty() {
        println!("rust_dmabuf_heap is not loaded: insmod rust_dmabuf_heap.ko");
    } else {
        let line: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("parameters: {}", line.join(" "));
        println!(
            "(live: bytes in buffers of the module's heaps together, the page pool's excluded)"
        );
    }
    Ok(())
}

/// `rdh alloc`.
fn alloc(args: AllocArgs) -> Outcome {
    let AllocArgs {
        size,
        heap,
        hold,
        output: Output { json },
    } = args;
    let heap = match heap {
        Some(h) => h,
        None => default_heap()?,
    };
    let h = open_heap(&heap)?;
    let start = Instant::now();
    let fd = h
        .allocate(size as usize)
        .map_err(|e| alloc_error(&heap, size, e))?;
    let took = start.elapsed();
    let inode = debugfs::inode(&fd).map_err(|e| Fail(1, e))?;
    let got = rdh::sys::dma_buf_size(&fd).map_err(|e| Fail(1, format!("size: {e}")))?;
    if json {
        print_json(&report::Alloc {
            heap: &heap,
            size: got,
            alloc_us: report::micros(took.as_secs_f64() * 1e6),
            inode,
            fd: fd.as_raw_fd(),
            pid: std::process::id(),
            hold_s: hold.unwrap_or(0),
        })?;
    } else {
        println!(
            "allocated {} ({got} bytes) from {heap} in {:.1} us: dma-buf inode {inode}, fd {} of pid {}",
            human_bytes(got),
            took.as_secs_f64() * 1e6,
            fd.as_raw_fd(),
            std::process::id()
        );
        if heaps::is_ours(&heap) {
            let file = format!("{}/buffers/{inode}", debugfs::dir_of(&heap));
            if Path::new(&file).exists() {
                println!("its state: {file}");
            } else {
                println!(
                    "(per-buffer debugfs files: echo Y > {}/debugfs_buffers before allocating)",
                    heaps::PARAMETERS
                );
            }
        }
    }
    if let Some(secs) = hold {
        if !json {
            println!("holding it for {secs} s");
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(secs));
    }
    drop(fd);
    Ok(())
}

/// Our heaps' debugfs directories (by heap name), or what to do.
fn our_debugfs() -> Result<Vec<(String, String)>, Fail> {
    if !heaps::module_loaded() {
        return Err(missing(
            "rust_dmabuf_heap is not loaded: insmod rust_dmabuf_heap.ko",
        ));
    }
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(debugfs::MOUNT))
    });
    if !mounted {
        return Err(missing(format!(
            "debugfs is not mounted: mount -t debugfs none {} (as root)",
            debugfs::MOUNT
        )));
    }
    let top = format!("{}/rust_dmabuf_heap", debugfs::MOUNT);
    let mut dirs: Vec<(String, String)> = std::fs::read_dir(&top)
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                4
            } else {
                1
            };
            Fail(
                code,
                format!("read {top}: {e} (debugfs is readable by root only)"),
            )
        })?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some((name.clone(), debugfs::dir_of(&name)))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The skip reasons of our debugfs, in its order.
const SKIPS: [&str; 5] = [
    "coherent",
    "not_dirty",
    "not_stale",
    "deferred_to_cpu_access",
    "deferred_to_map",
];

/// `rdh stats`.
fn stats(args: StatsArgs) -> Outcome {
    let StatsArgs {
        buffers,
        output: Output { json },
    } = args;
    let dirs = our_debugfs()?;
    let read = |path: String| debugfs::read(&path).map_err(|e| Fail(1, e));
    let mut heaps_out = Vec::new();
    let mut buffers_out = Vec::new();
    for (name, dir) in &dirs {
        let stats = read(format!("{dir}/stats"))?;
        let pool = read(format!("{dir}/pool"))?;
        let mut own = Vec::new();
        if buffers {
            let mut files: Vec<_> = std::fs::read_dir(format!("{dir}/buffers"))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            for file in files {
                let ino = file
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                // A buffer freed meanwhile has no file any more.
                if let Ok(lines) = debugfs::read(&file.to_string_lossy()) {
                    own.push((ino, lines));
                }
            }
        }
        heaps_out.push((name.clone(), stats, pool));
        buffers_out.push((name.clone(), own));
    }
    let dmabufs = heaps::open_dmabufs();
    if json {
        let heaps = heaps_out
            .iter()
            .zip(&buffers_out)
            .map(|((name, stats, pool), (_, own))| report::HeapStats {
                name,
                stats: Fields(stats),
                pool: Fields(pool),
                buffers: buffers.then(|| {
                    own.iter()
                        .map(|(ino, lines)| report::BufferState {
                            inode: Scalar(ino),
                            lines: Fields(lines),
                        })
                        .collect()
                }),
            })
            .collect();
        return print_json(&report::Stats {
            heaps,
            dmabufs: &dmabufs,
        });
    }
    for ((name, stats, pool), (_, own)) in heaps_out.iter().zip(&buffers_out) {
        println!("{name}:");
        for (k, v) in stats {
            println!("  {k:<26} {v}");
        }
        let pool_line: Vec<String> = pool
            .iter()
            .filter(|(k, _)| {
                ["limit_bytes", "pool_bytes", "hit_bytes", "miss_bytes"].contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  pool (shared)              {}", pool_line.join(" "));
        if buffers {
            if own.is_empty() {
                println!(
                    "  no buffer files (echo Y > {}/debugfs_buffers, then allocate)",
                    heaps::PARAMETERS
                );
                continue;
            }
            println!(
                "  {:>8} {:>10} {:<9} {:>6} {:>12} {:>12}  skipped ({})",
                "inode",
                "size",
                "policy",
                "mapped",
                "cleaned",
                "invalidated",
                SKIPS.join("/")
            );
            for (ino, lines) in own {
                let get = |key: &str| {
                    lines
                        .iter()
                        .find(|(k, _)| k == key)
                        .map_or("-".to_string(), |(_, v)| v.clone())
                };
                let skipped: Vec<String> =
                    SKIPS.iter().map(|s| get(&format!("skipped_{s}"))).collect();
                println!(
                    "  {:>8} {:>10} {:<9} {:>6} {:>12} {:>12}  {}",
                    ino,
                    get("size"),
                    get("policy"),
                    get("mapped"),
                    get("clean_bytes"),
                    get("invalidate_bytes"),
                    skipped.join("/")
                );
            }
        }
    }
    println!("dma-bufs open in processes (all heaps and exporters):");
    if dmabufs.is_empty() {
        println!("  none");
    } else {
        println!(
            "  {:>7} {:<16} {:>4} {:>8} {:>12}  {:<24} name",
            "pid", "process", "fd", "inode", "size", "exporter"
        );
        for b in &dmabufs {
            println!(
                "  {:>7} {:<16} {:>4} {:>8} {:>12}  {:<24} {}",
                b.pid,
                b.comm,
                b.fd,
                b.inode,
                human_bytes(b.size),
                b.exporter,
                b.name.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

/// A progress bar on stderr, if it is a terminal.
struct Progress {
    total: usize,
    done: usize,
    shown: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            shown: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self, what: &str) {
        self.step_by(1, what);
    }

    fn step_by(&mut self, n: usize, what: &str) {
        self.done += n;
        if self.shown {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            eprint!(
                "\r[{}{}] {:>3}% {what:<40}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                100 * self.done / self.total.max(1)
            );
            if self.done == self.total {
                eprintln!();
            }
        }
    }
}

/// `pool_limit_mib`, to turn the page pool off and on again.
const POOL_LIMIT: &str = "/sys/module/rust_dmabuf_heap/parameters/pool_limit_mib";

/// Sets the pool's limit (the old one is put back by `saved`); for 0,
/// waits (up to 5 s) until the pool is empty, if debugfs shows it. A
/// lower limit is applied by the pool's worker when a buffer is freed,
/// so one 4 KiB buffer of `heap` is allocated and freed first.
fn set_pool_limit(
    saved: &mut Saved,
    name: &str,
    heap: &dma_heap::Heap,
    mib: &str,
) -> Result<(), Fail> {
    saved.set(POOL_LIMIT, mib)?;
    if mib == "0" {
        drop(
            heap.allocate(4096)
                .map_err(|e| alloc_error(name, 4096, e))?,
        );
        let pool = format!("{}/pool", debugfs::dir_of(name));
        let start = Instant::now();
        while debugfs::number(&pool, "pool_bytes").is_ok_and(|b| b > 0)
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Calls of one timed round: enough to see more than one call's cost,
/// few enough that the heaps take turns often and fds stay few.
const ROUND_CALLS: usize = 8;

/// Allocation + free times of `n` calls in microseconds: `n` allocations
/// held, then closed, each call timed on its own, after the pool's worker
/// has finished what earlier rounds freed (it would run beside this one).
/// `warm`: the pool is first filled with the round's chunks and its
/// worker has zeroed them, so every allocation of the round is served by
/// it.
fn timed_round(
    allocate: &dyn Fn() -> Result<std::os::fd::OwnedFd, Fail>,
    n: usize,
    warm: bool,
) -> Result<Vec<f64>, Fail> {
    if warm {
        drop((0..n).map(|_| allocate()).collect::<Result<Vec<_>, _>>()?);
    }
    debugfs::wait_pool_idle();
    let mut times = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        held.push(allocate()?);
        times.push(start.elapsed());
    }
    for (time, fd) in times.iter_mut().zip(held) {
        let start = Instant::now();
        drop(fd);
        *time += start.elapsed();
    }
    Ok(times.iter().map(|t| t.as_secs_f64() * 1e6).collect())
}

/// How many calls a round of `heap` makes: `ROUND_CALLS`, and warm no more
/// buffers than the pool's limit holds (read after the limit is set).
fn round_calls(heap: &str, size: u64, warm: bool) -> usize {
    if !warm {
        return ROUND_CALLS;
    }
    let limit =
        debugfs::number(&format!("{}/pool", debugfs::dir_of(heap)), "limit_bytes").unwrap_or(0);
    ((limit / size) as usize)
        .saturating_sub(1)
        .clamp(1, ROUND_CALLS)
}

/// `rdh bench alloc`.
fn bench_alloc(args: BenchAllocArgs) -> Outcome {
    let BenchAllocArgs {
        sizes,
        iterations,
        heap: mut names,
        output: Output { json },
    } = args;
    if names.is_empty() {
        names = heaps::list()
            .map_err(missing)?
            .into_iter()
            .map(|h| h.name)
            .collect();
        names.sort_by_key(|n| !heaps::is_ours(n));
    }
    // A heap named twice (ours may be `system`) runs once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    if names.is_empty() {
        return Err(missing(format!(
            "no heaps in {}: is the module loaded? (insmod rust_dmabuf_heap.ko)",
            heaps::DEV
        )));
    }
    let opened = names
        .iter()
        .map(|n| open_heap(n).map(|h| (n.clone(), h)))
        .collect::<Result<Vec<_>, _>>()?;
    // Our cached heap twice if its pool can be switched: cold (pool off)
    // and warm (filled before each round); not warm if the pool was off.
    let mut saved = Saved::default();
    let pooled = |name: &str| heaps::our_heap_name().as_deref() == Some(name);
    if opened.iter().any(|(name, _)| pooled(name)) {
        // Without the right to switch it, ours runs once, as it is.
        let _ = saved.keep(POOL_LIMIT);
    }
    // The limit warm rounds run with: the pool's own.
    let warm_limit = saved.before(POOL_LIMIT).map(str::to_string);
    let runs: Vec<(usize, &str)> = opened
        .iter()
        .enumerate()
        .flat_map(
            |(i, (name, _))| match (pooled(name), warm_limit.as_deref()) {
                (true, Some("0")) => vec![(i, "cold")],
                (true, Some(_)) => vec![(i, "cold"), (i, "warm")],
                _ => vec![(i, "-")],
            },
        )
        .collect();
    settings::stop_on_signals();
    let mut progress = Progress::new(sizes.len() * runs.len() * iterations);
    let mut rows = Vec::new();
    // Per size, the runs take turns round by round (one untimed call
    // before each run's first), so a change in the host's speed during
    // the benchmark touches every heap alike.
    let measured = (|| {
        for &size in &sizes {
            let mut times = vec![Vec::<f64>::with_capacity(iterations); runs.len()];
            while times.iter().any(|t| t.len() < iterations) {
                for (&(i, mode), times) in runs.iter().zip(&mut times) {
                    settings::stop_requested()?;
                    if times.len() == iterations {
                        continue;
                    }
                    let (name, heap) = &opened[i];
                    match (mode, &warm_limit) {
                        ("cold", _) => set_pool_limit(&mut saved, name, heap, "0")?,
                        ("warm", Some(limit)) => set_pool_limit(&mut saved, name, heap, limit)?,
                        _ => {}
                    }
                    let allocate = || {
                        heap.allocate(size as usize)
                            .map_err(|e| alloc_error(name, size, e))
                    };
                    if times.is_empty() {
                        drop(allocate()?);
                    }
                    let n = round_calls(name, size, mode == "warm").min(iterations - times.len());
                    times.extend(timed_round(&allocate, n, mode == "warm")?);
                    progress.step_by(n, &format!("{name} {} {mode}", human_bytes(size)));
                }
            }
            for (&(i, mode), mut times) in runs.iter().zip(times) {
                times.sort_by(f64::total_cmp);
                rows.push((
                    opened[i].0.clone(),
                    mode,
                    size,
                    [0.5, 0.95, 0.99].map(|p| percentile(&times, p)),
                ));
            }
        }
        Ok(())
    })();
    drop(saved);
    settings::unless_stopped(measured)?;
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, mode, size, [p50, p95, p99])| report::AllocLatency {
                heap: name,
                pool: mode,
                size: *size,
                iterations,
                p50_us: report::micros(*p50),
                p95_us: report::micros(*p95),
                p99_us: report::micros(*p99),
            })
            .collect();
        return print_json(&list);
    }
    println!("allocation + free, {iterations} calls each after one warm-up, the heaps taking turns in rounds of {ROUND_CALLS} (us; pool: ours with the page pool off / filled)");
    println!(
        "{:>9} {:<28} {:<5} {:>10} {:>10} {:>10}",
        "size", "heap", "pool", "p50", "p95", "p99"
    );
    for (name, mode, size, [p50, p95, p99]) in &rows {
        println!(
            "{:>9} {:<28} {:<5} {:>10.1} {:>10.1} {:>10.1}",
            human_bytes(*size),
            name,
            mode,
            p50,
            p95,
            p99
        );
    }
    Ok(())
}

/// `debugfs_buffers`: per-buffer debugfs files for new buffers.
const DEBUGFS_BUFFERS: &str = "/sys/module/rust_dmabuf_heap/parameters/debugfs_buffers";

/// Whether the importer driver can count with kprobes (`CONFIG_KPROBES`).
fn kprobes_present() -> bool {
    rdh::importer::Session::open().is_ok_and(|s| s.counters().is_ok())
}

/// `rdh bench pipeline`.
fn bench_pipeline(output: Output) -> Outcome {
    let json = output.json;
    if !Path::new("/dev/rdh_importer").exists() {
        return Err(missing(
            "the importer test driver is not loaded: insmod rdh_importer.ko (this project's test module: its fake devices play the pipelines)",
        ));
    }
    let ours = default_heap()?;
    let uncached = heaps::our_uncached_heap_name().unwrap_or_else(|| format!("{ours}-uncached"));
    let mut targets = vec![
        pipeline::Target::system(),
        pipeline::Target::ours(&ours, "tracked"),
        pipeline::Target::ours(&ours, "always"),
    ];
    if heap_path(&uncached).exists() {
        targets.push(pipeline::Target::uncached(&uncached));
    }
    for t in &targets {
        open_heap(&t.name)?;
    }
    // The scenarios switch `sync_policy`; without kprobes our buffers' own
    // counts need their debugfs files (the only count then). Both put back
    // after.
    let mut saved = Saved::default();
    saved.keep(pipeline::POLICY)?;
    if !kprobes_present() {
        saved.set(DEBUGFS_BUFFERS, "Y")?;
    }
    settings::stop_on_signals();
    let mut progress = Progress::new(scenarios::SCENARIOS.len() * targets.len());
    let mut rows = Vec::new();
    let mut kprobes = true;
    let played = (|| {
        for s in scenarios::SCENARIOS {
            let mut cells = Vec::new();
            for t in &targets {
                settings::stop_requested()?;
                progress.step(&format!("{} on {} ({})", s.name, t.name, t.policy));
                let played = pipeline::play(s, t, true).map_err(|e| Fail(1, e))?;
                // Without kprobes only our heaps can count (debugfs).
                kprobes &= played.arch.is_some();
                cells.push(played.arch.or(played.own.map(|(bytes, _)| bytes)));
            }
            rows.push((s, cells));
        }
        Ok(())
    })();
    drop(saved);
    settings::unless_stopped(played)?;
    let per_frame = |b: u64, frames: usize| b as f64 / (1 << 20) as f64 / frames as f64;
    if json {
        let list: Vec<_> = rows
            .iter()
            .flat_map(|(s, cells)| {
                targets
                    .iter()
                    .zip(cells)
                    .map(|(t, cell)| report::Maintenance {
                        scenario: s.name,
                        heap: &t.name,
                        policy: t.policy,
                        frames: s.frames,
                        clean_bytes: cell.map(|(c, _)| c),
                        invalidate_bytes: cell.map(|(_, i)| i),
                    })
            })
            .collect();
        return print_json(&list);
    }
    println!(
        "cache maintenance per frame, 8 MiB buffer, MiB cleaned + invalidated ({})",
        if kprobes {
            "kprobes on the arch code: every heap counted alike"
        } else {
            "no kprobes in this kernel: our heaps' debugfs counts, the system heap not counted"
        }
    );
    // The saving of ours tracked against the system heap, or, where that
    // cannot be counted, against ours under `always` (the system heap's
    // behaviour, which `make bench` measures equal to it).
    let baseline = if kprobes { 0 } else { 2 };
    print!("{:<4} {:<WHAT_WIDTH$}", "", "scenario");
    for t in &targets {
        let label = match t.policy {
            "-" => t.name.clone(),
            "uncached" => "uncached".into(),
            policy => format!("ours {policy}"),
        };
        print!(" {label:>16}");
    }
    println!(" {:>15}", if kprobes { "saved" } else { "saved vs always" });
    let mut totals = vec![0u64; targets.len()];
    for (s, cells) in &rows {
        print!("{:<4} {:<WHAT_WIDTH$}", s.name, s.what);
        for (i, cell) in cells.iter().enumerate() {
            match cell {
                Some((c, inv)) => {
                    totals[i] += c + inv;
                    print!(
                        " {:>16}",
                        format!(
                            "{:.1}+{:.1}",
                            per_frame(*c, s.frames),
                            per_frame(*inv, s.frames)
                        )
                    );
                }
                None => print!(" {:>16}", "n/a"),
            }
        }
        let saved = match (cells[baseline], cells[1]) {
            (Some((sc, si)), Some((oc, oi))) if sc + si > 0 => {
                format!(
                    "{:.1} %",
                    100.0 * (1.0 - (oc + oi) as f64 / (sc + si) as f64)
                )
            }
            (Some((0, 0)), Some((0, 0))) => "-".into(),
            _ => "n/a".into(),
        };
        println!(" {saved:>15}");
    }
    if totals[baseline] > 0 {
        println!(
            "all scenarios: {} {} of maintenance, ours tracked {} ({:.1} % less)",
            if kprobes {
                "the system heap"
            } else {
                "ours under always"
            },
            human_bytes(totals[baseline]),
            human_bytes(totals[1]),
            100.0 * (1.0 - totals[1] as f64 / totals[baseline] as f64)
        );
    }
    Ok(())
}
