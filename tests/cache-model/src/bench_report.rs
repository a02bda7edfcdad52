// SPDX-License-Identifier: GPL-2.0

//! `bench-report LOG JSON [MS_PER_MIB]`: turns the `BENCH` lines of a
//! `make bench` console log into the report table and the JSON file, adding
//! for every scenario the minimum maintenance the cache model's oracle
//! computes for the same event script.

#[path = "../../../bench/scenarios.rs"]
mod scenarios;

use cache_model::{
    oracle,
    ownership::Direction,
    script::{Scenario as ModelScenario, Step},
    sim,
};
use scenarios::{Dir, Op, Scenario, BUFFER_BYTES, SCENARIOS};
use std::{collections::BTreeMap, fmt::Write as _};

/// Default cost of cache maintenance per MiB: "cache-line invalidate by VA
/// on a small core: ~0.7 ms per MB" (shared/docs/kernel-facts.md, published
/// figures); override with the third argument.
const DEFAULT_MS_PER_MIB: f64 = 0.7;

const MIB: f64 = (1 << 20) as f64;

fn direction(d: Dir) -> Direction {
    match d {
        Dir::ToDevice => Direction::ToDevice,
        Dir::FromDevice => Direction::FromDevice,
        Dir::Bidirectional => Direction::Bidirectional,
    }
}

/// The exporter-knowledge minimum for `s` on an 8 MiB buffer, in bytes.
fn oracle_bytes(s: &Scenario) -> u64 {
    let mut steps = Vec::new();
    for op in s.steps() {
        match *op {
            Op::Map(d, how) => steps.push(Step::Map(d, direction(how))),
            Op::Unmap(d) => steps.push(Step::Unmap(d)),
            Op::Cpu(how) => {
                steps.push(Step::BeginCpu(direction(how)));
                steps.push(Step::EndCpu(direction(how)));
            }
            Op::Job(d, how) => {
                if direction(how).device_writes() {
                    steps.push(Step::DeviceWrote(d));
                }
            }
        }
    }
    let fenced = (0..s.devices.len())
        .map(|d| s.steps().any(|op| matches!(op, Op::Job(j, _) if *j == d)))
        .collect();
    let model = ModelScenario {
        coherent: s.devices.iter().map(|d| d.coherent).collect(),
        fenced,
        bounce: vec![false; s.devices.len()],
        steps,
    };
    let cost = oracle::exporter_minimum(&model);
    cost.total() / sim::BUFFER_BYTES * BUFFER_BYTES
}

/// The `"key":value` pairs of one flat JSON object.
fn fields(json: &str) -> BTreeMap<String, String> {
    json.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| {
            (
                k.trim_matches('"').to_string(),
                v.trim_matches('"').to_string(),
            )
        })
        .collect()
}

fn number(f: &BTreeMap<String, String>, key: &str) -> u64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench-report CONSOLE_LOG OUT_JSON [MS_PER_MIB]");
        std::process::exit(2);
    }
    let ms_per_mib = args
        .get(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MS_PER_MIB);
    let log = std::fs::read_to_string(&args[1]).unwrap_or_else(|e| {
        eprintln!("bench-report: {}: {e}", args[1]);
        std::process::exit(2)
    });
    let records: Vec<BTreeMap<String, String>> = log
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("BENCH "))
        .map(fields)
        .collect();

    let mut json = String::from("[\n");
    let mut problems = Vec::new();
    println!(
        "cache maintenance per frame, 8 MiB buffer, counted by kprobes on arm64's arch_sync_dma_* (MiB cleaned + invalidated)"
    );
    println!(
        "{:<4} {:<52} {:>14} {:>14} {:>14} {:>10} {:>9} {:>12}",
        "",
        "scenario",
        "system",
        "ours tracked",
        "ours always",
        "minimum",
        "vs system",
        "est. saved"
    );
    for s in SCENARIOS {
        let oracle = oracle_bytes(s);
        let find = |heap_system: bool, policy: &str| {
            records.iter().find(|r| {
                r.get("scenario").map(String::as_str) == Some(s.name)
                    && (r.get("heap").map(String::as_str) == Some("system")) == heap_system
                    && r.get("policy").map(String::as_str) == Some(policy)
            })
        };
        let rows = [(true, "-"), (false, "tracked"), (false, "always")];
        let mut cells = Vec::new();
        let mut totals = Vec::new();
        for (system, policy) in rows {
            let Some(r) = find(system, policy) else {
                problems.push(format!(
                    "{}: no result for {}",
                    s.name,
                    if system { "system" } else { policy }
                ));
                cells.push("-".to_string());
                totals.push(None);
                continue;
            };
            let (clean, inval) = (number(r, "clean_bytes"), number(r, "invalidate_bytes"));
            if let (Some(dc), Some(di)) = (
                r.get("debugfs_clean_bytes"),
                r.get("debugfs_invalidate_bytes"),
            ) {
                if dc.parse::<u64>().ok() != Some(clean) || di.parse::<u64>().ok() != Some(inval) {
                    problems.push(format!(
                        "{} {policy}: kprobes counted {clean}+{inval} bytes, debugfs {dc}+{di}",
                        s.name
                    ));
                }
            }
            let frames = s.frames as f64;
            cells.push(format!(
                "{:.1}+{:.1}",
                clean as f64 / MIB / frames,
                inval as f64 / MIB / frames
            ));
            totals.push(Some(clean + inval));
            let _ = writeln!(
                json,
                "  {{\"scenario\":\"{}\",\"heap\":\"{}\",\"policy\":\"{policy}\",\"frames\":{},\"clean_bytes\":{clean},\"invalidate_bytes\":{inval},\"oracle_bytes\":{oracle}}},",
                s.name,
                r.get("heap").map_or("?", String::as_str),
                s.frames
            );
        }
        let (system, tracked) = (totals[0], totals[1]);
        let versus = match (system, tracked) {
            (Some(sys), Some(t)) if sys > 0 => {
                format!("{:+.1} %", 100.0 * (t as f64 - sys as f64) / sys as f64)
            }
            (Some(0), Some(0)) => "equal".to_string(),
            _ => "-".to_string(),
        };
        let saved = match (system, tracked) {
            (Some(sys), Some(t)) => {
                format!(
                    "{:.2} ms",
                    (sys as f64 - t as f64) / MIB / s.frames as f64 * ms_per_mib
                )
            }
            _ => "-".to_string(),
        };
        if tracked.is_some_and(|t| t != oracle) {
            problems.push(format!(
                "{}: tracked is not the minimum ({} vs {oracle} bytes)",
                s.name,
                tracked.unwrap_or(0)
            ));
        }
        println!(
            "{:<4} {:<52} {:>14} {:>14} {:>14} {:>10.1} {:>9} {:>12}",
            s.name,
            s.what,
            cells[0],
            cells[1],
            cells[2],
            oracle as f64 / MIB / s.frames as f64,
            versus,
            saved
        );
    }
    println!("(est. saved: per frame, tracked vs system heap, at {ms_per_mib} ms per MiB of maintenance)");
    println!();
    println!(
        "allocation + free, median of 31, alternating heaps (QEMU: only the ratio means anything)"
    );
    println!(
        "{:>10} {:>14} {:>14} {:>8}",
        "size", "system ns", "ours ns", "ratio"
    );
    let sizes: Vec<u64> = {
        let mut v: Vec<u64> = records
            .iter()
            .filter_map(|r| r.get("alloc_size")?.parse().ok())
            .collect();
        v.dedup();
        v
    };
    for size in sizes {
        let median = |system: bool| {
            records
                .iter()
                .find(|r| {
                    number(r, "alloc_size") == size
                        && (r.get("heap").map(String::as_str) == Some("system")) == system
                })
                .map(|r| number(r, "median_ns"))
        };
        let (Some(sys), Some(ours)) = (median(true), median(false)) else {
            problems.push(format!("allocation of {size} bytes: missing a median"));
            continue;
        };
        let ratio = ours as f64 / sys.max(1) as f64;
        println!("{size:>10} {sys:>14} {ours:>14} {ratio:>8.2}");
        for (heap, ns, r) in [("system", sys, 1.0), ("ours", ours, ratio)] {
            let _ = writeln!(
                json,
                "  {{\"alloc_size\":{size},\"heap\":\"{heap}\",\"median_ns\":{ns},\"ratio_vs_system\":{r:.3}}},"
            );
        }
    }
    if json.ends_with(",\n") {
        json.truncate(json.len() - 2);
        json.push('\n');
    }
    json.push_str("]\n");
    if let Err(e) = std::fs::write(&args[2], json) {
        eprintln!("bench-report: {}: {e}", args[2]);
        std::process::exit(2);
    }
    println!("JSON: {}", args[2]);
    for p in &problems {
        println!("PROBLEM {p}");
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
