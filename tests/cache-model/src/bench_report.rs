// SPDX-License-Identifier: GPL-2.0

//! `bench-report LOG JSON [MS_PER_MIB]`: turns the `BENCH` lines of a
//! `make bench` console log into the report table and the JSON file, adding
//! for every scenario the minimum maintenance the cache model's oracle
//! computes for the same event script. Then it plays every scenario on the
//! cache model (`bench-report --model` does only that, without a log):
//! disciplined, as the guest plays it, under `tracked` with user access
//! trapped and trusted and under `always`; and undisciplined, the same
//! pipeline without SYNC brackets, under `tracked` with trap and `always`.
//! The guest's bench never touches the mapping, so its figures have no
//! faults; the model's CPU touches every word, as an application would.

#[path = "../../../bench/scenarios.rs"]
mod scenarios;

use cache_model::{
    campaign::Config,
    oracle,
    ownership::Direction,
    run::{self, Cost},
    script::{Scenario as ModelScenario, Step},
    sim,
};
use scenarios::{Dir, Op, Scenario, BUFFER_BYTES, SCENARIOS, WHAT_WIDTH};
use std::{collections::BTreeMap, fmt::Write as _};

/// Default cost of cache maintenance per MiB: "cache-line invalidate by VA
/// on a small core: ~0.7 ms per MB" (docs/benchmarks.rst, "Published
/// figures"); override with the third argument.
const DEFAULT_MS_PER_MIB: f64 = 0.7;

const MIB: f64 = (1 << 20) as f64;

fn direction(d: Dir) -> Direction {
    match d {
        Dir::ToDevice => Direction::ToDevice,
        Dir::FromDevice => Direction::FromDevice,
        Dir::Bidirectional => Direction::Bidirectional,
    }
}

/// How the model stands for the 8 MiB buffer of a scenario with range
/// brackets: one line per part of the buffer that no range splits (pages),
/// each line counting that part's bytes. A scenario without ranges has
/// none: each line stands for a third of the buffer.
struct Cut {
    /// Part boundaries, from 0 to `BUFFER_BYTES`.
    bounds: Vec<u64>,
}

impl Cut {
    fn of(s: &Scenario) -> Option<Cut> {
        let page = 4096;
        let mut bounds = vec![0, BUFFER_BYTES];
        for op in s.steps() {
            if let Op::CpuRange(_, offset, len) = *op {
                bounds.push(offset / page * page);
                bounds.push((offset + len).div_ceil(page) * page);
            }
        }
        if bounds.len() == 2 {
            return None;
        }
        bounds.sort_unstable();
        bounds.dedup();
        assert!(
            bounds.len() - 1 <= sim::LINES,
            "{}: its ranges cut the buffer into more parts than the model has lines",
            s.name
        );
        // Lines beyond the parts stand for nothing.
        while bounds.len() - 1 < sim::LINES {
            bounds.push(BUFFER_BYTES);
        }
        Some(Cut { bounds })
    }

    /// The model lines of bytes `offset..offset + len`.
    fn lines(&self, offset: u64, len: u64) -> (usize, usize) {
        let page = 4096;
        let start = offset / page * page;
        let end = (offset + len).div_ceil(page) * page;
        let at = |b: u64| self.bounds.iter().position(|&x| x == b).expect("a bound");
        (at(start), at(end))
    }

    /// The bytes each line stands for.
    fn line_bytes(&self) -> [u64; sim::LINES] {
        std::array::from_fn(|i| self.bounds[i + 1] - self.bounds[i])
    }
}

/// The exporter-knowledge minimum for `s` on an 8 MiB buffer, in bytes.
fn oracle_bytes(s: &Scenario) -> u64 {
    let cut = Cut::of(s);
    let mut steps = Vec::new();
    for op in s.steps() {
        match *op {
            Op::Map(d, how) => steps.push(Step::Map(d, direction(how))),
            Op::Unmap(d) => steps.push(Step::Unmap(d)),
            Op::Cpu(how) => {
                steps.push(Step::BeginCpu(direction(how)));
                steps.push(Step::EndCpu(direction(how)));
            }
            Op::CpuRange(how, offset, len) => {
                let cut = cut.as_ref().expect("a scenario with ranges is cut");
                let (a, b) = cut.lines(offset, len);
                steps.push(Step::BeginRange(direction(how), a, b));
                steps.push(Step::EndRange(direction(how), a, b));
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
    match cut {
        Some(cut) => oracle::exporter_minimum_weighted(&model, &cut.line_bytes()).total(),
        None => oracle::exporter_minimum(&model).total() / sim::BUFFER_BYTES * BUFFER_BYTES,
    }
}

/// Whether device `d` of `s` reports its writes (it runs jobs).
fn fenced(s: &Scenario, d: usize) -> bool {
    s.steps().any(|op| matches!(op, Op::Job(j, _) if *j == d))
}

/// One access to every word of lines `lines`, reading then writing as
/// `dir` allows the CPU (`user`: without a bracket).
fn cpu_accesses(dir: Direction, user: bool, lines: std::ops::Range<usize>, steps: &mut Vec<Step>) {
    let words = lines.start * sim::WORDS_PER_LINE..lines.end * sim::WORDS_PER_LINE;
    for word in words.clone() {
        if dir.device_writes() {
            steps.push(if user {
                Step::UserRead(word)
            } else {
                Step::CpuRead(word)
            });
        }
    }
    for word in words {
        if dir.cpu_writes() {
            steps.push(if user {
                Step::UserWrite(word)
            } else {
                Step::CpuWrite(word)
            });
        }
    }
}

/// One access by device `d` to every word, reading then writing as `dir`
/// allows it.
fn device_accesses(d: usize, dir: Direction, steps: &mut Vec<Step>) {
    if dir.device_reads() {
        steps.extend((0..sim::WORDS).map(|w| Step::DeviceRead(d, w)));
    }
    if dir.device_writes() {
        steps.extend((0..sim::WORDS).map(|w| Step::DeviceWrite(d, w)));
    }
}

/// What fills the gaps between a script's events in the model.
#[derive(Clone, Copy)]
enum Adversary {
    /// The CPU fills every line speculatively before the devices work.
    FillFirst,
    /// The CPU evicts every line after the devices worked.
    EvictAfter,
}

/// `s` as a cache-model sequence in which the CPU and the devices touch
/// every word. Before every event (and at the end) each mapped unfenced
/// device accesses the buffer in its direction; a fenced device does so at
/// its jobs, whose write fence signals at once. A CPU bracket accesses
/// every word in its direction. `undisciplined`: the CPU skips SYNC, and
/// so, to keep the contract the system heap serves, it first unmaps the
/// non-coherent devices that are mapped (after their jobs' fences) and maps
/// them again afterwards.
fn model_scenario(s: &Scenario, undisciplined: bool, adversary: Adversary) -> ModelScenario {
    let devices = s.devices.len();
    let mut mapped: Vec<Option<Direction>> = vec![None; devices];
    let fenced: Vec<bool> = (0..devices).map(|d| fenced(s, d)).collect();
    let coherent: Vec<bool> = s.devices.iter().map(|d| d.coherent).collect();
    let mut steps = Vec::new();
    let gap = |mapped: &[Option<Direction>], steps: &mut Vec<Step>| {
        if matches!(adversary, Adversary::FillFirst) {
            steps.extend((0..sim::LINES).map(Step::Fill));
        }
        for (d, dir) in mapped.iter().enumerate() {
            if let (Some(dir), false) = (dir, fenced[d]) {
                device_accesses(d, *dir, steps);
            }
        }
        if matches!(adversary, Adversary::EvictAfter) {
            steps.extend((0..sim::LINES).map(Step::Evict));
        }
    };
    let cut = Cut::of(s);
    for op in s.steps() {
        gap(&mapped, &mut steps);
        // The lines a CPU access touches.
        let lines = match *op {
            Op::CpuRange(_, offset, len) => {
                let (a, b) = cut.as_ref().expect("cut").lines(offset, len);
                a..b
            }
            _ => 0..sim::LINES,
        };
        match *op {
            Op::Map(d, how) => {
                mapped[d] = Some(direction(how));
                steps.push(Step::Map(d, direction(how)));
            }
            Op::Unmap(d) => {
                mapped[d] = None;
                steps.push(Step::Unmap(d));
            }
            Op::Cpu(how) | Op::CpuRange(how, ..) if undisciplined => {
                let away: Vec<(usize, Direction)> = (0..devices)
                    .filter_map(|d| Some((d, mapped[d]?)))
                    .filter(|&(d, _)| !coherent[d])
                    .collect();
                steps.extend(away.iter().map(|&(d, _)| Step::Unmap(d)));
                cpu_accesses(direction(how), true, lines, &mut steps);
                steps.extend(away.iter().map(|&(d, dir)| Step::Map(d, dir)));
            }
            Op::Cpu(how) => {
                steps.push(Step::BeginCpu(direction(how)));
                cpu_accesses(direction(how), false, lines, &mut steps);
                steps.push(Step::EndCpu(direction(how)));
            }
            Op::CpuRange(how, ..) => {
                let dir = direction(how);
                steps.push(Step::BeginRange(dir, lines.start, lines.end));
                cpu_accesses(dir, false, lines.clone(), &mut steps);
                steps.push(Step::EndRange(dir, lines.start, lines.end));
            }
            Op::Job(d, how) => {
                device_accesses(d, direction(how), &mut steps);
                if direction(how).device_writes() {
                    steps.push(Step::DeviceWrote(d));
                }
            }
        }
    }
    gap(&mapped, &mut steps);
    ModelScenario {
        coherent,
        fenced,
        bounce: vec![false; devices],
        steps,
    }
}

/// The model's figures for one scenario and configuration: the cost
/// (scaled to the benchmark's buffer) and the violations, over both
/// adversaries (the cost does not depend on them: they are unseen).
struct Modelled {
    cost: Cost,
    violations: usize,
}

fn modelled(s: &Scenario, undisciplined: bool, config: Config) -> Modelled {
    let cut = Cut::of(s);
    let config = match &cut {
        Some(cut) => config.weighted(cut.line_bytes()),
        None => config,
    };
    let mut violations = 0;
    let mut cost = Cost::default();
    for adversary in [Adversary::FillFirst, Adversary::EvictAfter] {
        let outcome = run::run_with(&model_scenario(s, undisciplined, adversary), config);
        violations += outcome.violations.len();
        cost = outcome.cost;
    }
    if cut.is_none() {
        let scale = |bytes: u64| bytes / sim::BUFFER_BYTES * BUFFER_BYTES;
        cost.clean_bytes = scale(cost.clean_bytes);
        cost.invalidate_bytes = scale(cost.invalidate_bytes);
    }
    Modelled { cost, violations }
}

/// A cell: MiB per frame cleaned + invalidated, and faults / revokes per
/// frame if there were any; `!` marks a sequence that was not safe.
fn cell(m: &Modelled, frames: usize) -> String {
    let f = frames as f64;
    let mut out = format!(
        "{:.1}+{:.1}",
        m.cost.clean_bytes as f64 / MIB / f,
        m.cost.invalidate_bytes as f64 / MIB / f
    );
    if m.cost.faults > 0 || m.cost.revokes > 0 {
        let _ = write!(
            out,
            " {}/{}",
            fmt_per_frame(m.cost.faults, frames),
            fmt_per_frame(m.cost.revokes, frames)
        );
    }
    if m.violations > 0 {
        out.push_str(" !");
    }
    out
}

fn fmt_per_frame(count: u64, frames: usize) -> String {
    let per = format!("{:.3}", count as f64 / frames as f64);
    per.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Plays every scenario on the cache model and prints the table; returns
/// what is wrong (a sequence that is not safe, or undisciplined trap
/// costing more than `always`) and the rule gaps (disciplined trap costing
/// other than trust).
fn model_report() -> (Vec<String>, Vec<String>) {
    let (mut problems, mut gaps) = (Vec::new(), Vec::new());
    println!(
        "cache model, same scripts, the CPU and devices touching every word (MiB per frame cleaned+invalidated; faults/revokes per frame; ! = stale data or lost writes)"
    );
    println!(
        "{:<4} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "", "disciplined", "", "", "without SYNC", "", ""
    );
    println!(
        "{:<4} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "", "tracked+trap", "tracked+trust", "always", "tracked+trap", "always", "tracked+trust"
    );
    for s in SCENARIOS {
        let d_trap = modelled(s, false, Config::TRACKED_TRAP);
        let d_trust = modelled(s, false, Config::TRACKED_TRUST);
        let d_always = modelled(s, false, Config::ALWAYS);
        let u_trap = modelled(s, true, Config::TRACKED_TRAP);
        let u_always = modelled(s, true, Config::ALWAYS);
        let u_trust = modelled(s, true, Config::TRACKED_TRUST);
        println!(
            "{:<4} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20}",
            s.name,
            cell(&d_trap, s.frames),
            cell(&d_trust, s.frames),
            cell(&d_always, s.frames),
            cell(&u_trap, s.frames),
            cell(&u_always, s.frames),
            cell(&u_trust, s.frames)
        );
        for (name, m) in [
            ("disciplined tracked+trap", &d_trap),
            ("disciplined tracked+trust", &d_trust),
            ("disciplined always", &d_always),
            ("undisciplined tracked+trap", &u_trap),
            ("undisciplined always", &u_always),
        ] {
            if m.violations > 0 {
                problems.push(format!(
                    "{} model, {name}: {} violations",
                    s.name, m.violations
                ));
            }
        }
        // The model plays the script the oracle reads.
        if d_trust.cost.total() != oracle_bytes(s) {
            problems.push(format!(
                "{} model: disciplined tracked+trust costs {} bytes, the oracle {}",
                s.name,
                d_trust.cost.total(),
                oracle_bytes(s)
            ));
        }
        if d_trap.cost.bytes() != d_trust.cost.bytes() {
            gaps.push(format!(
                "{} model: disciplined tracked+trap costs {} bytes, tracked+trust {}",
                s.name,
                d_trap.cost.total(),
                d_trust.cost.total()
            ));
        }
        if u_trap.cost.total() > u_always.cost.total() {
            problems.push(format!(
                "{} model: undisciplined tracked+trap costs {} bytes, always {}",
                s.name,
                u_trap.cost.total(),
                u_always.cost.total()
            ));
        }
    }
    println!("(without SYNC: the same pipeline without brackets; where non-coherent devices stay mapped (S4, S7) the CPU unmaps them before its access and maps them again after it, as the system heap's contract asks)");
    (problems, gaps)
}

/// The record of one measured run (`sync`: "brackets" or "none"; records
/// without the field are from bracketed runs).
fn find<'a>(
    records: &'a [BTreeMap<String, String>],
    scenario: &str,
    heap_system: bool,
    policy: &str,
    sync: &str,
) -> Option<&'a BTreeMap<String, String>> {
    records.iter().find(|r| {
        r.get("scenario").map(String::as_str) == Some(scenario)
            && (r.get("heap").map(String::as_str) == Some("system")) == heap_system
            && r.get("policy").map(String::as_str) == Some(policy)
            && r.get("sync").map_or("brackets", String::as_str) == sync
    })
}

/// The measured runs of user space that skips SYNC: the system heap and
/// ours tracked (trapping user access); ours must not cost more.
fn unbracketed_table(
    records: &[BTreeMap<String, String>],
    json: &mut String,
    problems: &mut Vec<String>,
) {
    println!(
        "the same scenarios without SYNC brackets (the CPU touches the mapping directly; devices that stay mapped are unmapped around its access), MiB cleaned + invalidated per frame"
    );
    println!(
        "{:<4} {:>14} {:>14} {:>14} {:>9}",
        "", "system", "ours tracked", "user faults", "vs system"
    );
    for s in SCENARIOS {
        let system = find(records, s.name, true, "-", "none");
        let ours = find(records, s.name, false, "tracked", "none");
        let (Some(system), Some(ours)) = (system, ours) else {
            problems.push(format!("{} without SYNC: missing a result", s.name));
            continue;
        };
        let bytes = |r: &BTreeMap<String, String>| {
            (number(r, "clean_bytes"), number(r, "invalidate_bytes"))
        };
        let ((sc, si), (oc, oi)) = (bytes(system), bytes(ours));
        let frames = s.frames as f64;
        let cell = |c: u64, i: u64| {
            format!(
                "{:.1}+{:.1}",
                c as f64 / MIB / frames,
                i as f64 / MIB / frames
            )
        };
        let versus = if sc + si > 0 {
            format!(
                "{:+.1} %",
                100.0 * ((oc + oi) as f64 - (sc + si) as f64) / (sc + si) as f64
            )
        } else if oc + oi == 0 {
            "equal".to_string()
        } else {
            "more".to_string()
        };
        println!(
            "{:<4} {:>14} {:>14} {:>14} {:>9}",
            s.name,
            cell(sc, si),
            cell(oc, oi),
            number(ours, "unbracketed_faults"),
            versus
        );
        if oc + oi > sc + si {
            problems.push(format!(
                "{} without SYNC: ours costs {} bytes, the system heap {}",
                s.name,
                oc + oi,
                sc + si
            ));
        }
        for (r, (c, i)) in [(system, (sc, si)), (ours, (oc, oi))] {
            let _ = writeln!(
                json,
                "  {{\"scenario\":\"{}\",\"heap\":\"{}\",\"policy\":\"{}\",\"sync\":\"none\",\"frames\":{},\"clean_bytes\":{c},\"invalidate_bytes\":{i}}},",
                s.name,
                r.get("heap").map_or("?", String::as_str),
                r.get("policy").map_or("?", String::as_str),
                s.frames
            );
        }
    }
}

/// The scenarios with range brackets in KiB per frame: ours (tracked)
/// beyond the one clean of its freshly zeroed pages at the first map,
/// against the system heap, which has only whole-buffer SYNC. Fails unless
/// ours maintains exactly its ranges' bytes per frame.
fn range_rows(records: &[Record], problems: &mut Vec<String>) {
    println!();
    println!("CPU access by range, KiB per frame (kprobes; ours beyond the one clean of its zeroed pages)");
    for s in SCENARIOS.iter().filter(|s| Cut::of(s).is_some()) {
        let frames = s.frames as u64;
        let range_bytes: u64 = (s.frame)(0)
            .iter()
            .copied()
            .flatten()
            .filter_map(|op| match *op {
                Op::CpuRange(_, _, len) => Some(len.div_ceil(4096) * 4096),
                _ => None,
            })
            .sum();
        let bytes = |system: bool, policy: &str| {
            find(records, s.name, system, policy, "brackets")
                .map(|r| (number(r, "clean_bytes"), number(r, "invalidate_bytes")))
        };
        let (Some(system), Some(ours)) = (bytes(true, "-"), bytes(false, "tracked")) else {
            problems.push(format!("{}: no range results", s.name));
            continue;
        };
        let kib = |b: u64| b as f64 / 1024.0 / frames as f64;
        let ours = (ours.0.saturating_sub(BUFFER_BYTES), ours.1);
        println!(
            "{:<4} {:<WHAT_WIDTH$} system {:>7.1}+{:<7.1} ours {:>5.1}+{:<5.1} ({}x less)",
            s.name,
            s.what,
            kib(system.0),
            kib(system.1),
            kib(ours.0),
            kib(ours.1),
            (system.0 + system.1) / (ours.0 + ours.1).max(1)
        );
        if ours.0 + ours.1 != range_bytes * frames {
            problems.push(format!(
                "{}: ours maintained {:?} bytes beyond the zeroed pages, want {} per frame",
                s.name, ours, range_bytes
            ));
        }
    }
}

/// The uncached heap, MiB per frame after its flush at allocation (the
/// kprobes are reset after allocating), with SYNC brackets and without,
/// next to ours tracked; fails unless each run costs what the cache model
/// computes for the uncached policy, safely. Then the flush itself.
fn uncached_rows(records: &[Record], json: &mut String, problems: &mut Vec<String>) {
    println!();
    println!(
        "the uncached heap (write-combined CPU mappings): maintenance per frame after its flush at allocation, MiB cleaned + invalidated"
    );
    println!(
        "{:<4} {:<WHAT_WIDTH$} {:>14} {:>14} {:>14} {:>10}",
        "", "scenario", "ours tracked", "uncached", "no SYNC", "model"
    );
    let per_frame = |bytes: (u64, u64), frames: usize| {
        let f = frames as f64;
        format!(
            "{:.1}+{:.1}",
            bytes.0 as f64 / MIB / f,
            bytes.1 as f64 / MIB / f
        )
    };
    for s in SCENARIOS {
        let bytes = |policy: &str, sync: &str| {
            find(records, s.name, false, policy, sync)
                .map(|r| (number(r, "clean_bytes"), number(r, "invalidate_bytes")))
        };
        let (Some(tracked), Some(uncached), Some(unbracketed)) = (
            bytes("tracked", "brackets"),
            bytes("uncached", "brackets"),
            bytes("uncached", "none"),
        ) else {
            problems.push(format!("{}: no uncached results", s.name));
            continue;
        };
        let model = [false, true].map(|undisciplined| modelled(s, undisciplined, Config::UNCACHED));
        for (sync, measured, m) in [
            ("brackets", uncached, &model[0]),
            ("none", unbracketed, &model[1]),
        ] {
            let want = (m.cost.clean_bytes, m.cost.invalidate_bytes);
            if measured != want || m.violations > 0 {
                problems.push(format!(
                    "{} uncached ({sync}): measured {measured:?} bytes, the model {want:?} with {} violations",
                    s.name, m.violations
                ));
            }
            let _ = writeln!(
                json,
                "  {{\"scenario\":\"{}\",\"heap\":\"uncached\",\"policy\":\"uncached\",\"sync\":\"{sync}\",\"frames\":{},\"clean_bytes\":{},\"invalidate_bytes\":{}}},",
                s.name, s.frames, measured.0, measured.1
            );
        }
        println!(
            "{:<4} {:<WHAT_WIDTH$} {:>14} {:>14} {:>14} {:>10}",
            s.name,
            s.what,
            per_frame(tracked, s.frames),
            per_frame(uncached, s.frames),
            per_frame(unbracketed, s.frames),
            per_frame(
                (model[0].cost.clean_bytes, model[0].cost.invalidate_bytes),
                s.frames
            )
        );
    }
    match records.iter().find(|r| r.contains_key("uncached_flush")) {
        Some(r) => {
            let (len, clean, inval) = (
                number(r, "uncached_flush"),
                number(r, "clean_bytes"),
                number(r, "invalidate_bytes"),
            );
            println!(
                "flush at allocation, once per buffer: {:.1} MiB cleaned + {:.1} MiB invalidated for {:.1} MiB",
                clean as f64 / MIB,
                inval as f64 / MIB,
                len as f64 / MIB
            );
            if (clean, inval) != (len, len) {
                problems.push(format!(
                    "the uncached flush of {len} bytes cleaned {clean} and invalidated {inval}"
                ));
            }
        }
        None => problems.push("no uncached flush result".into()),
    }
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

/// One `BENCH` line.
type Record = BTreeMap<String, String>;

fn number(f: &Record, key: &str) -> u64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--model") {
        let (problems, gaps) = model_report();
        report(&problems, &gaps);
        return;
    }
    if args.len() < 3 {
        eprintln!("usage: bench-report CONSOLE_LOG OUT_JSON [MS_PER_MIB] | bench-report --model");
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
        "{:<4} {:<WHAT_WIDTH$} {:>14} {:>14} {:>14} {:>10} {:>9} {:>12}",
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
            find(&records, s.name, heap_system, policy, "brackets")
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
                "  {{\"scenario\":\"{}\",\"heap\":\"{}\",\"policy\":\"{policy}\",\"sync\":\"brackets\",\"frames\":{},\"clean_bytes\":{clean},\"invalidate_bytes\":{inval},\"oracle_bytes\":{oracle}}},",
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
            "{:<4} {:<WHAT_WIDTH$} {:>14} {:>14} {:>14} {:>10.1} {:>9} {:>12}",
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
    range_rows(&records, &mut problems);
    uncached_rows(&records, &mut json, &mut problems);
    println!();
    unbracketed_table(&records, &mut json, &mut problems);
    println!();
    allocation_table(&records, &mut json, &mut problems);
    first_map_rows(&records, &mut json, &mut problems);
    churn_rows(&records, &mut json, &mut problems);
    mapping_rows(&records, &mut json, &mut problems);
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
    println!();
    let (model_problems, gaps) = model_report();
    problems.extend(model_problems);
    report(&problems, &gaps);
}

/// Ours' record of allocations in `pool` mode (`cold` or `warm`), or the
/// system heap's of the round against it.
fn allocation_record<'a>(
    records: &'a [Record],
    size: u64,
    pool: &str,
    system: bool,
) -> Option<&'a Record> {
    let key = if system { "against" } else { "pool" };
    records
        .iter()
        .find(|r| number(r, "alloc_size") == size && r.get(key).map(String::as_str) == Some(pool))
}

/// The sizes the allocation benchmark timed, in its order.
fn allocation_sizes(records: &[Record]) -> Vec<u64> {
    let mut sizes: Vec<u64> = records
        .iter()
        .filter_map(|r| r.get("alloc_size")?.parse().ok())
        .collect();
    sizes.dedup();
    sizes
}

/// Allocation + free per size: the system heap, ours with an empty pool
/// (cold) and ours served by the pool (warm), and `close()` alone.
fn allocation_table(records: &[Record], json: &mut String, problems: &mut Vec<String>) {
    println!();
    println!(
        "allocation + free, median of 31, heaps alternating (QEMU: only the ratios mean anything)"
    );
    println!("  cold: ours with the page pool off; warm: served by the pool; each in a round of its own against the system heap");
    println!(
        "  (ratio: cold / system in the cold round; speed-up: system in the warm round / warm)"
    );
    println!(
        "{:>10} {:>11} {:>11} {:>6} {:>11} {:>8} {:>11} {:>11} {:>11}",
        "size",
        "system ns",
        "cold ns",
        "ratio",
        "warm ns",
        "speed-up",
        "close sys",
        "close cold",
        "close warm"
    );
    for size in allocation_sizes(records) {
        let found = [
            ("cold", true),
            ("cold", false),
            ("warm", true),
            ("warm", false),
        ]
        .map(|(pool, system)| allocation_record(records, size, pool, system));
        let [Some(sys), Some(cold), Some(sys_warm), Some(warm)] = found else {
            problems.push(format!("allocation of {size} bytes: missing a median"));
            continue;
        };
        let (s, c, w) = (
            number(sys, "median_ns"),
            number(cold, "median_ns"),
            number(warm, "median_ns"),
        );
        // Each of ours against the system heap of its own round.
        let ratio = c as f64 / s.max(1) as f64;
        let speedup = number(sys_warm, "median_ns") as f64 / w.max(1) as f64;
        println!(
            "{size:>10} {s:>11} {c:>11} {ratio:>6.2} {w:>11} {speedup:>7.2}x {:>11} {:>11} {:>11}",
            number(sys, "close_median_ns"),
            number(cold, "close_median_ns"),
            number(warm, "close_median_ns")
        );
        let _ = writeln!(
            json,
            "  {{\"alloc_size\":{size},\"system_ns\":{s},\"cold_ns\":{c},\"warm_ns\":{w},\"cold_ratio\":{ratio:.3},\"warm_speedup\":{speedup:.3}}},"
        );
    }
    allocation_alone(records, json);
}

/// The allocation alone (the ioctl, without the close), warm, as a share
/// of the system heap's in the same round, beside the floor every heap
/// pays: the system heap's own 4 KiB allocation (the system call, the
/// dma-buf's file and fd, one page) as a share of its allocation of that
/// size. A share below the floor would be an allocation faster than the
/// system heap's smallest.
fn allocation_alone(records: &[Record], json: &mut String) {
    let alloc = |size, pool, system| {
        allocation_record(records, size, pool, system).map(|r| number(r, "alloc_median_ns"))
    };
    let Some(floor_ns) = alloc(4096, "warm", true) else {
        return;
    };
    println!(
        "allocation alone (the ioctl), warm, as a share of the system heap's in the same round;"
    );
    println!(
        "  floor: the system heap's own 4 KiB allocation as a share of its allocation of that size"
    );
    println!(
        "{:>10} {:>11} {:>11} {:>6} {:>6}",
        "size", "system ns", "warm ns", "share", "floor"
    );
    for size in allocation_sizes(records) {
        let (Some(s), Some(w)) = (alloc(size, "warm", true), alloc(size, "warm", false)) else {
            continue;
        };
        let share = w as f64 / s.max(1) as f64;
        let floor = floor_ns as f64 / s.max(1) as f64;
        println!("{size:>10} {s:>11} {w:>11} {share:>6.3} {floor:>6.3}");
        let _ = writeln!(
            json,
            "  {{\"alloc_size\":{size},\"system_alloc_ns\":{s},\"warm_alloc_ns\":{w},\"warm_alloc_share\":{share:.4},\"system_4k_floor_share\":{floor:.4}}},"
        );
    }
}

/// The first map of a buffer by a non-coherent device, counted by the
/// kprobes: a fresh buffer's zeroes must be cleaned, a pooled one's were.
fn first_map_rows(records: &[Record], json: &mut String, problems: &mut Vec<String>) {
    let rows: Vec<_> = records
        .iter()
        .filter(|r| r.contains_key("first_map"))
        .collect();
    if rows.is_empty() {
        problems.push("first map of a pooled buffer: not measured".into());
        return;
    }
    println!();
    println!("first map of an 8 MiB buffer by a non-coherent device (bytes cleaned, kprobes)");
    for r in rows {
        let start = r.get("first_map").map_or("?", String::as_str);
        let (cleaned, len) = (number(r, "clean_bytes"), number(r, "len"));
        let cleans = r.get("pool_cleans").map(String::as_str) == Some("true");
        println!("{start:>12} {cleaned:>10} bytes");
        let _ = writeln!(
            json,
            "  {{\"first_map\":\"{start}\",\"clean_bytes\":{cleaned}}},"
        );
        let want = if start == "pooled" && cleans { 0 } else { len };
        if cleaned != want {
            problems.push(format!(
                "first map of a {start} buffer cleaned {cleaned} bytes, want {want}"
            ));
        }
    }
}

/// The churn scenario per pool policy: total time and peak memory per
/// heap, ours as a ratio to the system heap's in the same rounds; what the
/// pool holds after it, 10 s and 60 s later, and what an ordinary process
/// touching 5/8 of RAM then pays, against the same with no pool.
fn churn_rows(records: &[Record], json: &mut String, problems: &mut Vec<String>) {
    let churn: Vec<_> = records.iter().filter(|r| r.contains_key("churn")).collect();
    if churn.is_empty() {
        problems.push("churn: not measured".into());
        return;
    }
    let empty_touch = records
        .iter()
        .find(|r| r.contains_key("touch_ns") && !r.contains_key("churn"))
        .map(|r| number(r, "touch_ns"));
    println!();
    println!("churn: 32 x 8 MiB allocated then closed, 20 times per heap, heaps alternating after a warm-up (total time, ratio to the system heap in the same rounds; peak of MemTotal - MemAvailable above the start; MiB the pool holds after the churn; a process touching 5/8 of RAM 60 s after)");
    println!(
        "{:>12} {:>11} {:>11} {:>6} {:>9} {:>15} {:>10} {:>8}",
        "pool policy", "system", "ours", "ratio", "peak", "pool 0/10/60 s", "touch", "worker"
    );
    if let Some(ns) = empty_touch {
        println!("{:>12} {:>66.1} ms", "(no pool)", ns as f64 / 1e6);
        let _ = writeln!(json, "  {{\"touch\":\"no pool\",\"touch_ns\":{ns}}},");
    }
    let system_of = |policy: &str| {
        churn
            .iter()
            .find(|r| {
                r.get("heap").map(String::as_str) == Some("system")
                    && r.get("pool_policy").map(String::as_str) == Some(policy)
            })
            .map(|r| number(r, "total_ns"))
    };
    for r in churn
        .iter()
        .filter(|r| r.get("heap").map(String::as_str) != Some("system"))
    {
        let heap = r.get("heap").map_or("?", String::as_str);
        let policy = r.get("pool_policy").map_or("?", String::as_str);
        let (ns, peak) = (number(r, "total_ns"), number(r, "peak_kib"));
        let held: Vec<u64> = ["0s", "10s", "60s"]
            .iter()
            .map(|at| number(r, &format!("pool_bytes_after_churn_{at}")))
            .collect();
        let touch_ns = number(r, "touch_ns");
        let worker = number(r, "worker_mib_per_s");
        let Some(system_ns) = system_of(policy).filter(|&ns| ns > 0) else {
            problems.push(format!("churn ({policy}): no system heap rounds"));
            continue;
        };
        let ratio = ns as f64 / system_ns as f64;
        println!(
            "{:>12} {:>8.1} ms {:>8.1} ms {:>6.3} {:>5} MiB {:>15} {:>7.1} ms {:>4} MiB/s",
            policy,
            system_ns as f64 / 1e6,
            ns as f64 / 1e6,
            ratio,
            peak / 1024,
            format!("{}/{}/{} MiB", held[0] >> 20, held[1] >> 20, held[2] >> 20),
            touch_ns as f64 / 1e6,
            worker
        );
        let _ = writeln!(
            json,
            "  {{\"churn\":\"32x8MiB x20\",\"heap\":\"{heap}\",\"pool_policy\":\"{policy}\",\"total_ns\":{ns},\"system_total_ns\":{system_ns},\"ratio\":{ratio:.4},\"peak_kib\":{peak},\"pool_bytes_after_churn_0s\":{},\"pool_bytes_after_churn_10s\":{},\"pool_bytes_after_churn_60s\":{},\"touch_ns\":{touch_ns},\"worker_mib_per_s\":{worker}}},",
            held[0], held[1], held[2]
        );
    }
}

/// User mappings: the faults and page-table entries of an 8 MiB frame in
/// trap mode, at a 2 MiB-aligned address and not; the segments an IOMMU
/// maps for an 8 MiB frame of each heap; mmap + first touch of 512 MiB
/// against the system heap.
fn mapping_rows(records: &[Record], json: &mut String, problems: &mut Vec<String>) {
    let frame = |placement: &str| {
        records.iter().find(|r| {
            r.contains_key("frame_faults")
                && r.get("placement").map(String::as_str) == Some(placement)
        })
    };
    let touch = records.iter().find(|r| r.contains_key("mmap_touch_bytes"));
    let (Some(aligned), Some(unaligned), Some(touch)) =
        (frame("aligned"), frame("unaligned"), touch)
    else {
        problems.push("user mappings: not measured".into());
        return;
    };
    println!();
    println!("user mappings (trap mode, the default: entries are written at faults)");
    println!(
        "  8 MiB frame ({} chunks of 2 MiB)    first touch of every page     after a device's map revoked them",
        number(aligned, "huge_runs")
    );
    for (placement, frame) in [("aligned", aligned), ("unaligned", unaligned)] {
        let (faults, entries) = (number(frame, "faults"), number(frame, "page_table_entries"));
        let (refaults, reentries) = (
            number(frame, "refaults"),
            number(frame, "refault_page_table_entries"),
        );
        println!(
            "  at a 2 MiB-{placement:<9} address      {faults:>5} faults {entries:>5} entries    {refaults:>5} faults {reentries:>5} entries"
        );
        let _ = writeln!(
            json,
            "  {{\"frame\":\"8 MiB\",\"placement\":\"{placement}\",\"huge_runs\":{},\"faults\":{faults},\"page_table_entries\":{entries},\"refaults\":{refaults},\"refault_page_table_entries\":{reentries}}},",
            number(frame, "huge_runs")
        );
    }
    let segments: Vec<_> = records
        .iter()
        .filter(|r| r.contains_key("iommu_segments"))
        .collect();
    if segments.is_empty() {
        problems.push("IOMMU segments: not measured (no edu device behind an SMMUv3)".into());
    }
    for r in segments {
        let heap = r.get("heap").map_or("?", String::as_str);
        let (cpu, smallest, dma) = (
            number(r, "cpu_segments"),
            number(r, "smallest_cpu_segment"),
            number(r, "dma_segments"),
        );
        println!(
            "  8 MiB frame behind an SMMUv3, {heap:<6}: {cpu} segments for the IOMMU (smallest {} KiB), {dma} DMA segment(s)",
            smallest >> 10
        );
        let _ = writeln!(
            json,
            "  {{\"iommu_frame\":\"8 MiB\",\"heap\":\"{heap}\",\"iommu_segments\":{cpu},\"smallest_segment_bytes\":{smallest},\"dma_segments\":{dma}}},"
        );
    }
    let (system, trap, trust, unaligned) = (
        number(touch, "system_ns"),
        number(touch, "trap_ns"),
        number(touch, "trust_ns"),
        number(touch, "trap_unaligned_ns"),
    );
    let ratio = |ns: u64| ns as f64 / system.max(1) as f64;
    println!(
        "  mmap + first touch of 512 MiB, 2 MiB-aligned (median of 3): system {:.1} ms, ours trap {:.1} ms ({:.2}x), trust {:.1} ms ({:.2}x); trap unaligned {:.1} ms ({:.2}x)",
        system as f64 / 1e6,
        trap as f64 / 1e6,
        ratio(trap),
        trust as f64 / 1e6,
        ratio(trust),
        unaligned as f64 / 1e6,
        ratio(unaligned)
    );
    let _ = writeln!(
        json,
        "  {{\"mmap_touch\":\"512 MiB\",\"system_ns\":{system},\"trap_ns\":{trap},\"trust_ns\":{trust},\"trap_unaligned_ns\":{unaligned},\"trap_ratio\":{:.3},\"trust_ratio\":{:.3},\"trap_unaligned_ratio\":{:.3}}},",
        ratio(trap),
        ratio(trust),
        ratio(unaligned)
    );
}

/// Prints the rule gaps and problems; exits 1 if there is a problem.
fn report(problems: &[String], gaps: &[String]) {
    for g in gaps {
        println!("RULE GAP {g}");
    }
    for p in problems {
        println!("PROBLEM {p}");
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
