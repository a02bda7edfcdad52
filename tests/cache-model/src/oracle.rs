// SPDX-License-Identifier: GPL-2.0

//! The minimum maintenance for a sequence, computed two ways that share no
//! code with `ownership.rs`.
//!
//! - [`exporter_minimum`]: the fewest whole-buffer operations any exporter
//!   could perform knowing only what ours knows (the dma-buf calls, not the
//!   accesses), scanning for the intervals that force an operation:
//!   a clean is forced whenever CPU writes (or the zeroing) may reach a
//!   point where a non-coherent device may access memory; an invalidate is
//!   forced whenever a CPU access may follow a non-coherent device's write.
//! - [`ground_truth_minimum`]: the fewest operations an exporter that saw
//!   every access and every cache line would need, found by running the
//!   simulator with that perfect knowledge.
//!
//! Only the ground truth applies to sequences with unbracketed CPU accesses
//! ([`Step::UserRead`], [`Step::UserWrite`]): the exporter oracle knows the
//! CPU's accesses only from brackets.

use crate::{
    ownership::Direction,
    run::Cost,
    script::{Scenario, Step},
    sim::{Machine, BUFFER_BYTES, LINES, LINE_BYTES, WORDS_PER_LINE},
};

/// Exporter-visible events with what the oracle needs to know of them.
#[derive(Clone, Copy)]
enum Seen {
    /// A non-coherent device may access memory from here on.
    Exposure,
    /// The CPU may access memory from here (a `BeginCpu`); `nested` if
    /// another bracket is open, which may have written whatever it declared.
    CpuAccess { nested: bool },
    /// The CPU may have written (a bracket with a write direction).
    CpuDirt,
    /// A non-coherent device may have written memory up to here.
    DeviceDirt,
}

fn cpu_writes(dir: Direction) -> bool {
    !matches!(dir, Direction::FromDevice)
}

fn device_writes(dir: Direction) -> bool {
    !matches!(dir, Direction::ToDevice)
}

/// Turns the exporter's events into the points that matter for cache line
/// `line`, in order: a range bracket that does not cover it is not there
/// for it.
fn seen(scenario: &Scenario, line: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut mapped: Vec<Option<Direction>> = vec![None; scenario.coherent.len()];
    // Open whole-buffer brackets and range brackets (their lines; an end
    // closes the latest of the same range), and whether one that let the
    // CPU write began over the line since it was last outside every
    // bracket: then the CPU may dirty it at any point until then.
    let (mut depth, mut writing) = (0u32, false);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &step in &scenario.steps {
        let covers = |start: usize, end: usize| (start..end).contains(&line);
        let covering = ranges.iter().filter(|&&(s, e)| covers(s, e)).count();
        if writing && step.is_exporter_event() {
            out.push(Seen::CpuDirt);
        }
        let noncoherent = |dev: usize| !scenario.coherent[dev];
        // Writers whose writes nothing reports: any moment may be a write.
        let writers_mapped = mapped.iter().enumerate().any(|(dev, d)| {
            noncoherent(dev) && !scenario.fenced[dev] && d.is_some_and(device_writes)
        });
        let coherent_mapped = mapped
            .iter()
            .enumerate()
            .any(|(dev, d)| !noncoherent(dev) && d.is_some());
        // A coherent device's snoop may be served by any CPU line: it is a
        // CPU access (invalidate stale lines, clean first what may be
        // dirty) from its map on, and after every device write reported
        // while it is mapped.
        let snoop = Seen::CpuAccess {
            nested: depth > 0 || covering > 0,
        };
        let any_mapped = mapped
            .iter()
            .enumerate()
            .any(|(dev, d)| noncoherent(dev) && d.is_some());
        match step {
            Step::Map(dev, dir) => {
                mapped[dev] = Some(dir);
                if noncoherent(dev) {
                    out.push(Seen::Exposure);
                } else {
                    if writers_mapped {
                        out.push(Seen::DeviceDirt);
                    }
                    out.push(snoop);
                }
            }
            Step::Unmap(dev) => {
                if let Some(dir) = mapped[dev].take() {
                    if noncoherent(dev) && !scenario.fenced[dev] && device_writes(dir) {
                        out.push(Seen::DeviceDirt);
                        if coherent_mapped {
                            out.push(snoop);
                        }
                    }
                }
            }
            Step::DeviceWrote(dev) if noncoherent(dev) => {
                out.push(Seen::DeviceDirt);
                if coherent_mapped {
                    out.push(snoop);
                }
            }
            Step::BeginRange(dir, start, end) => {
                if covers(start, end) {
                    if writers_mapped {
                        out.push(Seen::DeviceDirt);
                    }
                    out.push(Seen::CpuAccess {
                        nested: depth > 0 || covering > 0,
                    });
                    if cpu_writes(dir) {
                        out.push(Seen::CpuDirt);
                        writing = true;
                    }
                }
                ranges.push((start, end));
            }
            Step::EndRange(dir, start, end) => {
                if covers(start, end) {
                    if cpu_writes(dir) {
                        out.push(Seen::CpuDirt);
                    }
                    if any_mapped {
                        out.push(Seen::Exposure);
                    }
                }
                if let Some(i) = ranges.iter().rposition(|&r| r == (start, end)) {
                    ranges.remove(i);
                }
                if depth == 0 && !ranges.iter().any(|&(s, e)| covers(s, e)) {
                    writing = false;
                }
            }
            Step::BeginCpu(dir) => {
                let nested = depth > 0 || covering > 0;
                depth += 1;
                writing |= cpu_writes(dir);
                // A mapped writer may have written at any time before now.
                if writers_mapped {
                    out.push(Seen::DeviceDirt);
                }
                out.push(Seen::CpuAccess { nested });
                if cpu_writes(dir) {
                    out.push(Seen::CpuDirt);
                }
            }
            Step::EndCpu(dir) => {
                if cpu_writes(dir) {
                    out.push(Seen::CpuDirt);
                }
                if any_mapped {
                    out.push(Seen::Exposure);
                }
                depth = depth.saturating_sub(1);
                if depth == 0 && covering == 0 {
                    writing = false;
                }
            }
            _ => {}
        }
    }
    out
}

/// The exporter-information minimum: each cache line's, summed (for a
/// sequence without range brackets, that of the whole buffer).
pub fn exporter_minimum(scenario: &Scenario) -> Cost {
    exporter_minimum_weighted(scenario, &[LINE_BYTES; LINES])
}

/// [`exporter_minimum`] with line `i` standing for `line_bytes[i]` bytes.
pub fn exporter_minimum_weighted(scenario: &Scenario, line_bytes: &[u64; LINES]) -> Cost {
    let mut cost = Cost::default();
    for (line, &bytes) in line_bytes.iter().enumerate() {
        let mut one = line_minimum(scenario, line);
        one.clean_bytes = one.clean_bytes / LINE_BYTES * bytes;
        one.invalidate_bytes = one.invalidate_bytes / LINE_BYTES * bytes;
        cost.add(one);
    }
    cost
}

/// The exporter-information minimum for one cache line.
fn line_minimum(scenario: &Scenario, line: usize) -> Cost {
    let points = seen(scenario, line);
    let (mut cleans, mut invalidates) = (0u64, 0u64);
    // Index of the last point where CPU dirt was created / cleaned away,
    // and where device dirt was created / invalidated away.
    let (mut cpu_dirt_at, mut cleaned_at): (Option<usize>, Option<usize>) = (Some(0), None);
    let (mut dev_dirt_at, mut invalidated_at): (Option<usize>, Option<usize>) = (None, None);
    let newer = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    };
    // Shift by one so that the zeroing is a CPU dirt point before all.
    for (i, point) in points.iter().enumerate().map(|(i, p)| (i + 1, p)) {
        match point {
            Seen::CpuDirt => cpu_dirt_at = Some(i),
            Seen::DeviceDirt => dev_dirt_at = Some(i),
            Seen::Exposure => {
                if newer(cpu_dirt_at, cleaned_at) {
                    cleans += 1;
                    cleaned_at = Some(i);
                }
            }
            Seen::CpuAccess { nested } => {
                if newer(dev_dirt_at, invalidated_at) {
                    // Dropping lines that may be dirty would lose data.
                    if *nested || newer(cpu_dirt_at, cleaned_at) {
                        cleans += 1;
                        cleaned_at = Some(i);
                    }
                    invalidates += 1;
                    invalidated_at = Some(i);
                }
            }
        }
    }
    Cost {
        clean_bytes: cleans * LINE_BYTES,
        invalidate_bytes: invalidates * LINE_BYTES,
        ..Cost::default()
    }
}

/// The perfect-knowledge minimum: clean just before a non-coherent device
/// touches memory while dirty lines exist; invalidate just before the CPU
/// touches a line older than memory (cleaning first if anything is dirty).
pub fn ground_truth_minimum(scenario: &Scenario) -> Cost {
    let mut m = Machine::new();
    let mut cost = Cost::default();
    let clean = |m: &mut Machine, cost: &mut Cost| {
        m.clean();
        cost.clean_bytes += BUFFER_BYTES;
    };
    for &step in &scenario.steps {
        match step {
            Step::DeviceRead(dev, w) | Step::DeviceWrite(dev, w) => {
                let coherent = scenario.coherent[dev];
                if !coherent && m.any_dirty() {
                    clean(&mut m, &mut cost);
                }
                // A snoop must not be served by a line older than memory.
                if coherent
                    && matches!(step, Step::DeviceRead(..))
                    && m.line_is_stale(w / WORDS_PER_LINE)
                {
                    if m.any_dirty() {
                        clean(&mut m, &mut cost);
                    }
                    m.invalidate();
                    cost.invalidate_bytes += BUFFER_BYTES;
                }
                if matches!(step, Step::DeviceRead(..)) {
                    m.device_read(coherent, w);
                } else {
                    m.device_write(coherent, w);
                }
            }
            // Bracketed or not: this exporter sees every access.
            Step::CpuRead(w) | Step::CpuWrite(w) | Step::UserRead(w) | Step::UserWrite(w) => {
                if m.line_is_stale(w / WORDS_PER_LINE) {
                    if m.any_dirty() {
                        clean(&mut m, &mut cost);
                    }
                    m.invalidate();
                    cost.invalidate_bytes += BUFFER_BYTES;
                }
                if matches!(step, Step::CpuRead(_) | Step::UserRead(_)) {
                    m.cpu_read(w);
                } else {
                    m.cpu_write(w);
                }
            }
            Step::Evict(line) => m.evict(line),
            Step::Fill(line) => m.speculative_fill(line),
            _ => {}
        }
    }
    m.check_nothing_lost();
    assert!(
        m.violations.is_empty(),
        "the perfect-knowledge exporter itself failed: {:?}",
        m.violations
    );
    cost
}
