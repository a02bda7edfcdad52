// SPDX-License-Identifier: GPL-2.0

//! Event sequences: what the exporter sees (map, unmap, CPU brackets) and
//! what it does not (the accesses themselves, evictions, speculative fills).
//!
//! Sequences respect the dma-buf contract where the exporter relies on it —
//! a device accesses the buffer only while mapped, in its direction, and not
//! during a CPU bracket; the CPU accesses it only inside a bracket — and
//! include the misuse the core lets through: `EndCpu` without `BeginCpu`,
//! nested `BeginCpu`, and a direction that differs between the two.

use crate::{
    ownership::Direction,
    rng::Rng,
    sim::{LINES, WORDS, WORDS_PER_LINE},
};

/// One step of a sequence. Device numbers index [`Scenario::coherent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Map(usize, Direction),
    Unmap(usize),
    BeginCpu(Direction),
    EndCpu(Direction),
    CpuRead(usize),
    CpuWrite(usize),
    DeviceRead(usize, usize),
    DeviceWrite(usize, usize),
    /// A fenced device's fence signalled after it wrote.
    DeviceWrote(usize),
    Evict(usize),
    Fill(usize),
}

impl Step {
    /// Whether the exporter sees this step.
    pub fn is_exporter_event(&self) -> bool {
        matches!(
            self,
            Step::Map(..)
                | Step::Unmap(_)
                | Step::BeginCpu(_)
                | Step::EndCpu(_)
                | Step::DeviceWrote(_)
        )
    }
}

/// A sequence and the devices it uses.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Per device: whether it is coherent.
    pub coherent: Vec<bool>,
    /// Per device: whether it reports its writes through fences
    /// ([`Step::DeviceWrote`] follows its writes before the CPU or an unmap
    /// can depend on them).
    pub fenced: Vec<bool>,
    pub steps: Vec<Step>,
}

/// How user space and importers use the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub cpu_writes: CpuWrites,
    /// Include what the dma-buf core lets through although the contract
    /// frowns on it: `EndCpu` without `BeginCpu`, nested brackets, a
    /// direction that differs between begin and end, and map/unmap while a
    /// CPU bracket is open.
    pub misuse: bool,
}

impl Usage {
    /// Everything the core accepts.
    pub const ANY: Usage = Usage {
        cpu_writes: CpuWrites::Partial,
        misuse: true,
    };
    /// The well-behaved usage that the upstream system heap's policy is
    /// correct for.
    pub const STRICT: Usage = Usage {
        cpu_writes: CpuWrites::WholeLinesWhenWriteOnly,
        misuse: false,
    };
}

/// What kind of CPU writes a sequence may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuWrites {
    /// Any word, so write-only brackets may leave stale neighbours in a line.
    Partial,
    /// Write-only brackets overwrite whole lines (what the upstream system
    /// heap silently relies on: it does not invalidate for SYNC_WRITE).
    WholeLinesWhenWriteOnly,
}

pub const DIRECTIONS: [Direction; 3] = [
    Direction::ToDevice,
    Direction::FromDevice,
    Direction::Bidirectional,
];

fn device_reads(dir: Direction) -> bool {
    !matches!(dir, Direction::FromDevice)
}

fn cpu_reads(dir: Direction) -> bool {
    !matches!(dir, Direction::ToDevice)
}

/// Tracks the protocol while a sequence is built, so that only legal
/// accesses are generated.
#[derive(Clone)]
pub struct Protocol {
    pub coherent: Vec<bool>,
    /// Fenced devices may write only where a `DeviceWrote` will follow
    /// before anything depends on the data; the builder keeps this current.
    pub may_write: Vec<bool>,
    pub mapped: Vec<Option<Direction>>,
    /// Open CPU brackets: (begin direction, end direction it will use).
    pub brackets: Vec<(Direction, Direction)>,
}

impl Protocol {
    pub fn new(coherent: Vec<bool>) -> Self {
        let n = coherent.len();
        Self {
            coherent,
            may_write: vec![true; n],
            mapped: vec![None; n],
            brackets: Vec::new(),
        }
    }

    /// The CPU may read / write inside the open brackets (union of the
    /// directions given at begin and at end).
    pub fn cpu_may(&self) -> (bool, bool) {
        self.brackets
            .iter()
            .fold((false, false), |(r, w), &(b, e)| {
                (
                    r || cpu_reads(b) || cpu_reads(e),
                    w || b.cpu_writes() || e.cpu_writes(),
                )
            })
    }

    /// Appends the accesses that are legal now, as steps.
    pub fn legal_accesses(&self, writes: CpuWrites) -> Vec<Vec<Step>> {
        let mut out = Vec::new();
        let (read, write) = self.cpu_may();
        for word in 0..WORDS {
            if read {
                out.push(vec![Step::CpuRead(word)]);
            }
            if write {
                if read || writes == CpuWrites::Partial {
                    out.push(vec![Step::CpuWrite(word)]);
                } else if word % WORDS_PER_LINE == 0 {
                    out.push((word..word + WORDS_PER_LINE).map(Step::CpuWrite).collect());
                }
            }
            if self.brackets.is_empty() {
                for (dev, dir) in self.mapped.iter().enumerate() {
                    if let Some(dir) = dir {
                        if device_reads(*dir) {
                            out.push(vec![Step::DeviceRead(dev, word)]);
                        }
                        if dir.device_writes() && self.may_write[dev] {
                            out.push(vec![Step::DeviceWrite(dev, word)]);
                        }
                    }
                }
            }
        }
        out
    }

    /// Applies an exporter event to the protocol state.
    pub fn apply(&mut self, step: Step) {
        match step {
            Step::Map(dev, dir) => self.mapped[dev] = Some(dir),
            Step::Unmap(dev) => self.mapped[dev] = None,
            Step::BeginCpu(_) | Step::EndCpu(_) => {}
            _ => {}
        }
    }
}

/// A random sequence of about `len` steps with 1 to 3 devices, each
/// coherent or not and, if not, fenced or not at random.
pub fn random(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    let writes = usage.cpu_writes;
    let devices = 1 + rng.below(3);
    let coherent: Vec<bool> = (0..devices).map(|_| rng.chance(25)).collect();
    let fenced: Vec<bool> = coherent.iter().map(|&c| !c && rng.chance(40)).collect();
    let mut p = Protocol::new(coherent.clone());
    let mut steps = Vec::new();
    // Fenced devices that wrote and whose fence has not signalled yet.
    let mut pending = vec![false; devices];
    let signal = |dev: usize, pending: &mut Vec<bool>, steps: &mut Vec<Step>| {
        if std::mem::take(&mut pending[dev]) {
            steps.push(Step::DeviceWrote(dev));
        }
    };
    while steps.len() < len {
        let roll = rng.below(100);
        if roll < 4 {
            // A fence signals.
            signal(rng.below(devices), &mut pending, &mut steps);
        } else if roll < 12 {
            // Spontaneous cache activity.
            let line = rng.below(LINES);
            steps.push(if rng.chance(50) {
                Step::Evict(line)
            } else {
                Step::Fill(line)
            });
        } else if roll < 30 {
            // Map or unmap a device.
            if !usage.misuse && !p.brackets.is_empty() {
                continue;
            }
            let dev = rng.below(devices);
            let step = match p.mapped[dev] {
                Some(_) => {
                    // The driver unmaps once its work is done.
                    signal(dev, &mut pending, &mut steps);
                    Step::Unmap(dev)
                }
                None => Step::Map(dev, DIRECTIONS[rng.below(3)]),
            };
            p.apply(step);
            steps.push(step);
        } else if roll < 42 {
            // Open a CPU bracket (nested sometimes, direction mismatch
            // sometimes).
            if p.brackets.is_empty() || (usage.misuse && rng.chance(15)) {
                let begin = DIRECTIONS[rng.below(3)];
                let end = if !usage.misuse || rng.chance(85) {
                    begin
                } else {
                    DIRECTIONS[rng.below(3)]
                };
                // CPU access waits for the buffer's fences.
                for dev in 0..devices {
                    signal(dev, &mut pending, &mut steps);
                }
                p.brackets.push((begin, end));
                steps.push(Step::BeginCpu(begin));
            }
        } else if roll < 54 {
            // Close a bracket, or end one that never began.
            match p.brackets.pop() {
                Some((_, end)) => steps.push(Step::EndCpu(end)),
                None if usage.misuse && rng.chance(20) => {
                    steps.push(Step::EndCpu(DIRECTIONS[rng.below(3)]))
                }
                None => {}
            }
        } else {
            let legal = p.legal_accesses(writes);
            if !legal.is_empty() {
                let chosen = &legal[rng.below(legal.len())];
                for step in chosen {
                    if let Step::DeviceWrite(dev, _) = *step {
                        pending[dev] |= fenced[dev];
                    }
                }
                steps.extend(chosen.iter().copied());
            }
        }
    }
    for dev in 0..devices {
        signal(dev, &mut pending, &mut steps);
    }
    // Close what is open so that the final state is a quiet one.
    while let Some((_, end)) = p.brackets.pop() {
        steps.push(Step::EndCpu(end));
    }
    Scenario {
        coherent,
        fenced,
        steps,
    }
}
