// SPDX-License-Identifier: GPL-2.0

//! KTAP output in the shape KUnit uses for a suite, so that one parser reads
//! the kernel's results and ours.

/// The outcome of one check: `Err` carries a one-line reason; one that
/// starts with [`SKIP`] reports the check as skipped (it does not apply to
/// this boot), not failed.
pub type Outcome = Result<(), String>;

/// The prefix of a skip reason.
pub const SKIP: &str = "SKIP: ";

/// One suite of checks, printed as it runs.
pub struct Suite {
    name: &'static str,
    planned: usize,
    done: usize,
    failed: usize,
}

impl Suite {
    /// Prints the header and plan.
    pub fn begin(name: &'static str, planned: usize) -> Self {
        println!("KTAP version 1");
        println!("1..1");
        println!("    KTAP version 1");
        println!("    # Subtest: {name}");
        println!("    1..{planned}");
        Self {
            name,
            planned,
            done: 0,
            failed: 0,
        }
    }

    /// Reports one check.
    pub fn report(&mut self, test: &str, outcome: Outcome) {
        self.done += 1;
        match outcome {
            Ok(()) => println!("    ok {} {test}", self.done),
            Err(reason) if reason.starts_with(SKIP) => {
                println!(
                    "    ok {} {test} # SKIP {}",
                    self.done,
                    &reason[SKIP.len()..]
                )
            }
            Err(reason) => {
                self.failed += 1;
                for line in reason.lines() {
                    println!("    # {test}: {line}");
                }
                println!("    not ok {} {test}", self.done);
            }
        }
    }

    /// Prints the suite result line. A suite that ran fewer checks than it
    /// planned fails, and the parser sees the gap too.
    pub fn end(self) {
        let ok = self.failed == 0 && self.done == self.planned;
        println!(
            "# {}: pass:{} fail:{} total:{}",
            self.name,
            self.done - self.failed,
            self.failed,
            self.planned
        );
        println!("{}ok 1 {}", if ok { "" } else { "not " }, self.name);
    }
}
