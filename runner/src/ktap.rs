// SPDX-License-Identifier: GPL-2.0

//! A KTAP reader for KUnit's output and the guest's, which share one shape:
//! nested documents indented by four spaces, a plan `1..N` per level, and
//! `ok`/`not ok` lines, where a result line that closes a deeper level is
//! the verdict of a suite and every other result line is a test case.

/// Verdict of one case or suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One test case (a leaf result).
#[derive(Debug, PartialEq, Eq)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub status: Status,
    /// The diagnostic lines (`# ...`) that came before its result at its
    /// level: where a failing case says why.
    pub diagnostics: Vec<String>,
}

/// What a log contained.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<Case>,
    /// Suites (results that closed a nested level) and their verdicts.
    pub suites: Vec<(String, Status)>,
    /// Structural problems: missing results, contradicting verdicts.
    pub errors: Vec<String>,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }
}

struct Level {
    indent: usize,
    name: Option<String>,
    plan: Option<usize>,
    results: usize,
    failed: usize,
    /// Diagnostic lines since the level's last result.
    diagnostics: Vec<String>,
}

impl Level {
    fn new(indent: usize) -> Self {
        Self {
            indent,
            name: None,
            plan: None,
            results: 0,
            failed: 0,
            diagnostics: Vec::new(),
        }
    }
}

fn parse_result(content: &str) -> Option<(Status, &str)> {
    let (ok, rest) = if let Some(rest) = content.strip_prefix("not ok ") {
        (false, rest)
    } else {
        (true, content.strip_prefix("ok ")?)
    };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    number.parse::<usize>().ok()?;
    let (name, directive) = rest.split_once(" # ").unwrap_or((rest, ""));
    let skip = directive
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("SKIP");
    let status = match (ok, skip) {
        (_, true) => Status::Skip,
        (true, false) => Status::Pass,
        (false, false) => Status::Fail,
    };
    Some((status, name.trim()))
}

fn parse_plan(content: &str) -> Option<usize> {
    content.strip_prefix("1..")?.trim().parse().ok()
}

/// Parses every KTAP document in `text`; lines that are not KTAP are
/// ignored (kernel messages, the guest's own notes).
pub fn parse(text: &str) -> Report {
    let mut report = Report::default();
    let mut stack: Vec<Level> = Vec::new();

    // Closes levels deeper than `indent` (or as deep, if `inclusive`),
    // checking that each got as many results as it planned. Returns the
    // innermost closed level next to `indent`, i.e. the children of the
    // result line that triggered the close.
    fn close(
        stack: &mut Vec<Level>,
        report: &mut Report,
        indent: usize,
        inclusive: bool,
    ) -> Option<Level> {
        let mut child = None;
        while let Some(top) = stack.last() {
            if top.indent < indent || (!inclusive && top.indent == indent) {
                break;
            }
            let level = stack.pop().unwrap();
            if let Some(plan) = level.plan {
                if level.results != plan {
                    report.errors.push(format!(
                        "{}: planned {plan} results, found {}",
                        level.name.as_deref().unwrap_or("(unnamed)"),
                        level.results
                    ));
                }
            } else if level.results == 0 && level.name.is_some() {
                report.errors.push(format!(
                    "{}: no plan and no results",
                    level.name.as_deref().unwrap_or("")
                ));
            }
            child = Some(level);
        }
        child
    }

    fn level_at(stack: &mut Vec<Level>, indent: usize) -> &mut Level {
        if stack.last().is_none_or(|l| l.indent != indent) {
            stack.push(Level::new(indent));
        }
        stack.last_mut().unwrap()
    }

    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let content = content.trim_end();

        if content.starts_with("KTAP version") || content.starts_with("TAP version") {
            close(&mut stack, &mut report, indent, true);
            stack.push(Level::new(indent));
        } else if let Some(name) = content.strip_prefix("# Subtest: ") {
            close(&mut stack, &mut report, indent, false);
            level_at(&mut stack, indent).name = Some(name.trim().to_string());
        } else if let Some(plan) = parse_plan(content) {
            close(&mut stack, &mut report, indent, false);
            level_at(&mut stack, indent).plan = Some(plan);
        } else if let Some((status, name)) = parse_result(content) {
            let children = close(&mut stack, &mut report, indent, false);
            let level = level_at(&mut stack, indent);
            level.results += 1;
            let diagnostics = std::mem::take(&mut level.diagnostics);
            match children {
                Some(children) => {
                    let suite = children.name.clone().unwrap_or_else(|| name.to_string());
                    if status == Status::Fail
                        && children.failed == 0
                        && children.plan.is_some_and(|p| p == children.results)
                    {
                        report
                            .errors
                            .push(format!("{suite}: suite failed but none of its cases did"));
                    }
                    if status == Status::Pass && children.failed > 0 {
                        report
                            .errors
                            .push(format!("{suite}: suite passed with failing cases"));
                    }
                    if status == Status::Fail {
                        level.failed += 1;
                    }
                    report.suites.push((suite, status));
                }
                None => {
                    if status == Status::Fail {
                        level.failed += 1;
                    }
                    let suite = level.name.clone().unwrap_or_default();
                    report.cases.push(Case {
                        suite,
                        name: name.to_string(),
                        status,
                        diagnostics,
                    });
                }
            }
        } else if let Some(note) = content.strip_prefix("# ") {
            if let Some(level) = stack.last_mut().filter(|l| l.indent == indent) {
                level.diagnostics.push(note.to_string());
            }
        }
    }
    close(&mut stack, &mut report, 0, true);
    report
}

/// Each suite of `text` as a KTAP document of its own (named after the
/// suite), so that tools that read only the first document of a log
/// (`kunit.py parse`) see every suite: the suite's lines (its subtest
/// header, plan, cases and diagnostics, at the suite's indentation or
/// deeper; kernel log lines between them are dropped) under a one-suite
/// top level, its result renumbered 1.
pub fn documents(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let indent_of = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.trim_start().strip_prefix("# Subtest: ") else {
            continue;
        };
        let (name, indent) = (name.trim(), indent_of(line));
        if indent < 4 {
            continue;
        }
        let outer = indent - 4;
        let mut doc = String::from("KTAP version 1\n1..1\n    KTAP version 1\n");
        for body in &lines[i..] {
            let content = body.trim_start_matches(' ');
            let depth = indent_of(body);
            if depth == outer {
                if let Some((status, result)) = parse_result(content.trim_end()) {
                    if result == name {
                        let word = if status == Status::Fail {
                            "not ok"
                        } else {
                            "ok"
                        };
                        let skip = if status == Status::Skip {
                            " # SKIP"
                        } else {
                            ""
                        };
                        doc.push_str(&format!("{word} 1 {name}{skip}\n"));
                        out.push((name.to_string(), doc));
                        break;
                    }
                }
            }
            if depth >= indent && !content.is_empty() {
                doc.push_str(&format!("    {}\n", &body[outer + 4..]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUNIT_PASS: &str = "\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: rust_dmabuf_heap
    # speed: normal
    1..3
    ok 1 first
    ok 2 second # SKIP not today
    ok 3 third
# rust_dmabuf_heap: pass:2 fail:0 skip:1 total:3
# Totals: pass:2 fail:0 skip:1 total:3
ok 1 rust_dmabuf_heap
";

    #[test]
    fn passing_suite_yields_cases_and_verdict() {
        let r = parse(KUNIT_PASS);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.count(Status::Pass), 2);
        assert_eq!(r.count(Status::Skip), 1);
        assert_eq!(r.cases[0].suite, "rust_dmabuf_heap");
        assert_eq!(
            r.suites,
            vec![("rust_dmabuf_heap".to_string(), Status::Pass)]
        );
    }

    #[test]
    fn failing_case_is_counted() {
        let text = KUNIT_PASS
            .replace(
                "    ok 3 third",
                "    # third: ASSERTION FAILED at x.rs:1\n    not ok 3 third",
            )
            .replace("ok 1 rust_dmabuf_heap", "not ok 1 rust_dmabuf_heap");
        let r = parse(&text);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.count(Status::Fail), 1);
        assert_eq!(r.suites[0].1, Status::Fail);
        assert_eq!(
            r.cases[2].diagnostics,
            ["third: ASSERTION FAILED at x.rs:1"]
        );
        assert!(r.cases[1].diagnostics.is_empty());
    }

    #[test]
    fn missing_result_is_an_error() {
        let text = KUNIT_PASS.replace("    ok 3 third\n", "");
        let r = parse(&text);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert!(r.errors[0].contains("planned 3 results, found 2"));
    }

    #[test]
    fn truncated_log_is_an_error() {
        let cut = KUNIT_PASS.find("    ok 2").unwrap();
        let r = parse(&KUNIT_PASS[..cut]);
        assert!(!r.errors.is_empty());
    }

    #[test]
    fn suite_verdict_must_match_its_cases() {
        let r = parse(&KUNIT_PASS.replace("    ok 1 first", "    not ok 1 first"));
        assert!(
            r.errors
                .iter()
                .any(|e| e.contains("passed with failing cases")),
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn two_documents_and_noise_between() {
        let text = format!(
            "{KUNIT_PASS}random kernel line\nrdh-guest: note\n{}",
            KUNIT_PASS.replace("rust_dmabuf_heap", "rdh_guest")
        );
        let r = parse(&text);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.suites.len(), 2);
        assert_eq!(r.cases.len(), 6);
    }

    #[test]
    fn every_suite_becomes_a_document_of_its_own() {
        let log = format!("{KUNIT_PASS}noise from the kernel\n{KUNIT_PASS}");
        let docs = documents(&log);
        assert_eq!(docs.len(), 2);
        for (name, doc) in &docs {
            assert_eq!(name, "rust_dmabuf_heap");
            let report = parse(doc);
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(report.suites, vec![(name.clone(), Status::Pass)]);
            assert_eq!(report.cases, parse(KUNIT_PASS).cases);
            assert!(!doc.contains("noise"));
        }
    }

    #[test]
    fn carriage_returns_are_ignored() {
        let r = parse(&KUNIT_PASS.replace('\n', "\r\n"));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.cases.len(), 3);
    }
}
