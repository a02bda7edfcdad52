// SPDX-License-Identifier: GPL-2.0

//! Judges a console log: the guest must reach its end marker in time, the
//! kernel must print no splat, and every expected KTAP suite must be present
//! and complete.

use crate::ktap;
use std::time::Duration;

pub const START_MARKER: &str = "rdh-guest: start";
pub const DONE_MARKER: &str = "rdh-guest: done";

/// Console text that means the kernel itself went wrong.
const SPLATS: &[&str] = &[
    "Oops",
    "BUG:",
    "kernel BUG at",
    "WARNING:",
    "Kernel panic",
    "Unable to handle kernel",
    "Internal error:",
    "Call trace:",
    "general protection fault",
    "UBSAN:",
    "KASAN:",
    // The heap must fail with ENOMEM, never make the kernel kill a process.
    "invoked oom-killer",
    "Out of memory:",
];

/// The parsed results plus everything else that went wrong.
pub struct Verdict {
    pub report: ktap::Report,
    pub problems: Vec<String>,
}

/// Judges `text`, the console of one boot. `timed_out` is the timeout that
/// expired, if one did.
pub fn judge(
    text: &str,
    timed_out: Option<Duration>,
    expect_suites: &[String],
    boot_suites: &[String],
) -> Verdict {
    let mut problems = Vec::new();
    if let Some(timeout) = timed_out {
        problems.push(format!("timeout after {} s", timeout.as_secs()));
    }
    if !text.lines().any(|l| l == DONE_MARKER) {
        problems.push("the guest did not reach its end marker".to_string());
    }
    for line in text
        .lines()
        .filter(|l| SPLATS.iter().any(|s| l.contains(s)))
    {
        problems.push(format!("kernel: {line}"));
    }
    let guest_part = text.find(START_MARKER).map_or("", |at| &text[at..]);
    if guest_part.is_empty() {
        problems.push("the guest never started".to_string());
    }
    let mut report = ktap::parse(guest_part);
    // Suites built into the kernel run at boot, before the guest: only
    // those named count (the kernel's own are not ours to judge).
    if !boot_suites.is_empty() {
        let boot_part = text.find(START_MARKER).map_or(text, |at| &text[..at]);
        let boot = ktap::parse(boot_part);
        let ours = |suite: &str| boot_suites.iter().any(|s| s == suite);
        report
            .cases
            .extend(boot.cases.into_iter().filter(|c| ours(&c.suite)));
        report
            .suites
            .extend(boot.suites.into_iter().filter(|(name, _)| ours(name)));
    }
    problems.extend(report.errors.iter().cloned());
    for suite in expect_suites {
        if !report.suites.iter().any(|(name, _)| name == suite) {
            problems.push(format!("suite {suite}: no result"));
        }
    }
    Verdict { report, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
Booting Linux on physical CPU 0x0
rdh-guest: start
KTAP version 1
1..1
    KTAP version 1
    # Subtest: rdh_guest
    1..1
    ok 1 works
ok 1 rdh_guest
rdh-guest: done
";

    fn expect(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clean_log_has_no_problems() {
        let v = judge(GOOD, None, &expect(&["rdh_guest"]), &[]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.report.count(ktap::Status::Pass), 1);
    }

    #[test]
    fn kernel_warning_is_a_problem() {
        let log = GOOD.replace(
            "    ok 1 works\n",
            "    ok 1 works\nWARNING: CPU: 1 PID: 42 at mm/page_alloc.c:1 foo+0x0/0x10\n",
        );
        let v = judge(&log, None, &expect(&["rdh_guest"]), &[]);
        assert!(
            v.problems.iter().any(|p| p.starts_with("kernel: WARNING:")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn oom_killer_is_a_problem() {
        let log = GOOD.replace(
            "rdh-guest: done",
            "init invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0\nrdh-guest: done",
        );
        let v = judge(&log, None, &expect(&["rdh_guest"]), &[]);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    }

    #[test]
    fn oops_without_end_marker_is_two_problems() {
        let cut = GOOD.find("    ok 1").unwrap();
        let log = format!(
            "{}Unable to handle kernel NULL pointer dereference\n",
            &GOOD[..cut]
        );
        let v = judge(&log, None, &expect(&["rdh_guest"]), &[]);
        assert!(v.problems.iter().any(|p| p.contains("end marker")));
        assert!(v.problems.iter().any(|p| p.contains("NULL pointer")));
        assert!(v.problems.iter().any(|p| p.contains("no result")));
    }

    #[test]
    fn timeout_is_a_problem() {
        let v = judge(GOOD, Some(Duration::from_secs(300)), &[], &[]);
        assert_eq!(v.problems, vec!["timeout after 300 s".to_string()]);
    }

    #[test]
    fn missing_suite_is_a_problem() {
        let v = judge(GOOD, None, &expect(&["rdh_guest", "rust_dmabuf_heap"]), &[]);
        assert_eq!(
            v.problems,
            vec!["suite rust_dmabuf_heap: no result".to_string()]
        );
    }

    #[test]
    fn ktap_before_the_guest_starts_is_ignored() {
        // Built-in suites print at boot; only the guest's part counts.
        let log = GOOD.replace("Booting", "    not ok 1 builtin_thing\nBooting");
        let v = judge(&log, None, &expect(&["rdh_guest"]), &[]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.report.count(ktap::Status::Fail), 0);
    }

    #[test]
    fn named_boot_suites_count() {
        // The heap built in: its KUnit suite runs at boot, between the
        // kernel's own suites.
        let boot = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: builtin_thing\n    1..1\n    not ok 1 a\nnot ok 1 builtin_thing\n    KTAP version 1\n    # Subtest: rust_dmabuf_heap\n    1..2\n    ok 1 x\n    not ok 2 y\nnot ok 2 rust_dmabuf_heap\n";
        let log = GOOD.replace("Booting Linux on physical CPU 0x0\n", boot);
        let want = expect(&["rdh_guest", "rust_dmabuf_heap"]);
        let v = judge(&log, None, &want, &expect(&["rust_dmabuf_heap"]));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.report.count(ktap::Status::Fail), 1);
        assert!(v.report.cases.iter().all(|c| c.suite != "builtin_thing"));
        let v = judge(&log, None, &want, &[]);
        assert_eq!(
            v.problems,
            vec!["suite rust_dmabuf_heap: no result".to_string()]
        );
    }
}
