// SPDX-License-Identifier: GPL-2.0

//! The kernel's own `tools/testing/selftests/dmabuf-heaps` test, built from
//! the same source as the guest kernel (`scripts/build-selftest.sh`), run
//! against every heap in `/dev/dma_heap` (it walks the directory itself:
//! ours and the system heap). Its TAP results become the KTAP suite
//! `dmabuf_heaps_selftest`, one case per result, named after the heap; a
//! skipped case (no vgem, for instance) counts as a failure, and so does a
//! non-zero exit or fewer results than it planned.

use crate::ktap::Suite;
use std::process::Command;

/// Where the initramfs keeps the selftest binary.
pub const PATH: &str = "/dmabuf-heap";

/// One TAP result line of the selftest.
struct Result {
    name: String,
    outcome: crate::ktap::Outcome,
}

/// A KTAP-friendly, unique name: the heap, the selftest's result number
/// (some descriptions repeat, e.g. for 4 KiB and 1 MiB buffers) and the
/// description's lowercase words joined by `_`.
fn case_name(heap: &str, number: &str, description: &str) -> String {
    let words: Vec<String> = description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_ascii_lowercase)
        .collect();
    format!("{heap}__{number:0>2}_{}", words.join("_"))
}

/// Reads the selftest's TAP: the plan and one result per `ok`/`not ok`,
/// each failure carrying the diagnostics printed since the last result.
fn parse(output: &str) -> (Option<usize>, Vec<Result>) {
    let mut plan = None;
    let mut heap = String::from("unknown");
    let mut notes: Vec<String> = Vec::new();
    let mut results = Vec::new();
    for line in output.lines() {
        if let Some(n) = line.strip_prefix("1..") {
            plan = n.trim().parse().ok();
        } else if let Some(note) = line.strip_prefix("# ") {
            if let Some(name) = note.strip_prefix("Testing heap: ") {
                heap = name.trim().to_string();
            }
            notes.push(note.to_string());
        } else if let Some((ok, rest)) = line
            .strip_prefix("ok ")
            .map(|r| (true, r))
            .or_else(|| line.strip_prefix("not ok ").map(|r| (false, r)))
        {
            // "<n> <description>" or "<n> # SKIP <reason>"
            let (number, description) = rest.split_once(' ').unwrap_or((rest, ""));
            let skipped = description.starts_with("# SKIP");
            let outcome = if ok && !skipped {
                Ok(())
            } else {
                let mut why = notes.join("\n");
                why.push_str(&format!("\nselftest: {line}"));
                Err(why)
            };
            results.push(Result {
                name: case_name(&heap, number, description.trim_start_matches("# SKIP")),
                outcome,
            });
            notes.clear();
        }
    }
    (plan, results)
}

/// Runs the selftest and prints its results as a suite; its raw output
/// goes to the log as KTAP diagnostics.
pub fn run() {
    let output = Command::new(PATH).output();
    let (text, exit) = match &output {
        Ok(out) => (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        ),
        Err(err) => (format!("# cannot run {PATH}: {err}"), None),
    };
    for line in text.lines() {
        println!("# selftest: {line}");
    }
    let (plan, results) = parse(&text);
    // One more case for the exit status; a missing plan plans nothing, so
    // the suite fails on the count.
    let mut suite = Suite::begin("dmabuf_heaps_selftest", plan.unwrap_or(0) + 1);
    for result in results {
        suite.report(&result.name, result.outcome);
    }
    suite.report(
        "exits_with_status_0",
        match exit {
            Some(0) => Ok(()),
            other => Err(format!("exit status {other:?}")),
        },
    );
    suite.end();
}
