// SPDX-License-Identifier: GPL-2.0

//! kmemleak (debug kernel): reports from boot are forgotten before the
//! checks start; after the last check a scan must find nothing.

use crate::ktap::Outcome;
use std::time::Duration;

const FILE: &str = "/sys/kernel/debug/kmemleak";

fn command(what: &str) -> Outcome {
    std::fs::write(FILE, what).map_err(|e| format!("{FILE} <- {what}: {e}"))
}

/// Scans once and marks whatever it reports as known: leaks (or false
/// positives) from before the module was loaded are not ours.
pub fn forget_boot_reports() {
    let _ = command("scan");
    let _ = command("clear");
}

/// Waits until every object allocated by the checks is old enough to be
/// reported (kmemleak ignores objects younger than 5 s), scans twice (as
/// the kernel documentation advises, against transient false positives)
/// and fails with the report if it lists anything.
pub fn finds_no_leak() -> Outcome {
    std::thread::sleep(Duration::from_secs(6));
    command("scan")?;
    command("scan")?;
    let report = std::fs::read_to_string(FILE).map_err(|e| format!("read {FILE}: {e}"))?;
    if report.trim().is_empty() {
        return Ok(());
    }
    let objects = report.matches("unreferenced object").count();
    let excerpt: Vec<&str> = report.lines().take(60).collect();
    Err(format!(
        "{objects} unreferenced objects:\n{}",
        excerpt.join("\n")
    ))
}
