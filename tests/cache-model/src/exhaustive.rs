// SPDX-License-Identifier: GPL-2.0

//! Every legal sequence of exporter events up to a length, each played
//! against a set of adversaries that fill the gaps between events with
//! accesses, evictions and speculative fills.

use crate::{
    rng::Rng,
    script::{Bracket, CpuWrites, Protocol, Scenario, Step, DIRECTIONS},
    sim::LINES,
};

/// All exporter-event sequences of exactly `len` events for these devices:
/// maps of unmapped devices, unmaps of mapped ones, and any `BeginCpu` or
/// `EndCpu` (unbalanced and nested ones included).
pub fn event_sequences(fenced: &[bool], len: usize) -> Vec<Vec<Step>> {
    fn grow(
        prefix: &mut Vec<Step>,
        mapped: &mut Vec<bool>,
        fenced: &[bool],
        len: usize,
        out: &mut Vec<Vec<Step>>,
    ) {
        if prefix.len() == len {
            out.push(prefix.clone());
            return;
        }
        let mut next = Vec::new();
        for (dev, &is_mapped) in mapped.iter().enumerate() {
            if is_mapped {
                next.push(Step::Unmap(dev));
                if fenced[dev] {
                    next.push(Step::DeviceWrote(dev));
                }
            } else {
                next.extend(DIRECTIONS.iter().map(|&d| Step::Map(dev, d)));
            }
        }
        next.extend(DIRECTIONS.iter().map(|&d| Step::BeginCpu(d)));
        next.extend(DIRECTIONS.iter().map(|&d| Step::EndCpu(d)));
        for step in next {
            let toggled = match step {
                Step::Map(dev, _) | Step::Unmap(dev) => Some(dev),
                _ => None,
            };
            if let Some(dev) = toggled {
                mapped[dev] = !mapped[dev];
            }
            prefix.push(step);
            grow(prefix, mapped, fenced, len, out);
            prefix.pop();
            if let Some(dev) = toggled {
                mapped[dev] = !mapped[dev];
            }
        }
    }
    let mut out = Vec::new();
    grow(
        &mut Vec::new(),
        &mut vec![false; fenced.len()],
        fenced,
        len,
        &mut out,
    );
    out
}

/// Whether `events` follow the strict contract: brackets balanced, not
/// nested, with the same direction at both ends, and no map or unmap inside
/// one.
pub fn is_strict(events: &[Step]) -> bool {
    let mut open: Option<crate::ownership::Direction> = None;
    for step in events {
        match (step, open) {
            (Step::BeginCpu(dir), None) => open = Some(*dir),
            (Step::EndCpu(dir), Some(begin)) if *dir == begin => open = None,
            (Step::Map(..) | Step::Unmap(_), None) => {}
            _ => return false,
        }
    }
    true
}

/// How the gaps between exporter events are filled.
#[derive(Clone, Copy, Debug)]
pub enum Adversary {
    /// Fill every line, then perform every legal access.
    FillThenAccessAll,
    /// Perform every legal access, then evict every line.
    AccessAllThenEvict,
    /// Random accesses, evictions and fills from this seed.
    Random(u64),
}

/// Builds the scenario: `events` with the adversary's steps in every gap
/// (before the first event and after the last one too).
pub fn play(
    coherent: &[bool],
    fenced: &[bool],
    events: &[Step],
    adversary: Adversary,
    writes: CpuWrites,
) -> Scenario {
    debug_assert!(events.iter().all(Step::is_exporter_event));
    // Pair each BeginCpu with the EndCpu that closes it, to know which
    // accesses the CPU may make inside (union of both directions).
    let mut end_of = vec![None; events.len()];
    let mut open = Vec::new();
    for (i, step) in events.iter().enumerate() {
        match step {
            Step::BeginCpu(_) => open.push(i),
            Step::EndCpu(dir) => {
                if let Some(begin) = open.pop() {
                    end_of[begin] = Some(*dir);
                }
            }
            _ => {}
        }
    }
    let mut rng = Rng::new(match adversary {
        Adversary::Random(seed) => seed,
        _ => 0,
    });
    let mut p = Protocol::new(coherent.to_vec());
    let mut steps = Vec::new();
    let gap = |p: &Protocol, steps: &mut Vec<Step>, rng: &mut Rng| {
        let mut legal = p.legal_accesses(writes);
        // A gap's accesses come without reports between them: no coherent
        // read in a gap where a non-coherent device writes (its snoop could
        // be served by a line older than that write, unreported yet).
        let noncoherent_writes = legal
            .iter()
            .flatten()
            .any(|s| matches!(s, Step::DeviceWrite(d, _) if !coherent[*d]));
        if noncoherent_writes {
            legal.retain(|access| {
                !access
                    .iter()
                    .any(|s| matches!(s, Step::DeviceRead(d, _) if coherent[*d]))
            });
        }
        match adversary {
            Adversary::FillThenAccessAll => {
                steps.extend((0..LINES).map(Step::Fill));
                steps.extend(legal.into_iter().flatten());
            }
            Adversary::AccessAllThenEvict => {
                steps.extend(legal.into_iter().flatten());
                steps.extend((0..LINES).map(Step::Evict));
            }
            Adversary::Random(_) => {
                for _ in 0..rng.below(6) {
                    match rng.below(4) {
                        0 => steps.push(Step::Evict(rng.below(LINES))),
                        1 => steps.push(Step::Fill(rng.below(LINES))),
                        _ if !legal.is_empty() => {
                            steps.extend(legal[rng.below(legal.len())].iter().copied())
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    // A fenced device may write in the gap before event `i` only if its
    // fence signals before the CPU or its own unmap depends on the data.
    let may_write = |i: usize, dev: usize| {
        !fenced[dev]
            || events[i..]
                .iter()
                .find(|e| {
                    matches!(e, Step::BeginCpu(_))
                        || **e == Step::Unmap(dev)
                        || **e == Step::DeviceWrote(dev)
                })
                .is_none_or(|e| *e == Step::DeviceWrote(dev))
    };
    for (i, &event) in events.iter().enumerate() {
        p.may_write = (0..coherent.len()).map(|dev| may_write(i, dev)).collect();
        let before = steps.len();
        gap(&p, &mut steps, &mut rng);
        // The protocol follows the gap's device writes (unreported ones
        // hold coherent readers back).
        for &step in &steps[before..] {
            p.apply(step);
        }
        match event {
            Step::BeginCpu(dir) => p
                .brackets
                .push(Bracket::whole(dir, end_of[i].unwrap_or(dir))),
            Step::EndCpu(_) => {
                p.brackets.pop();
            }
            _ => p.apply(event),
        }
        steps.push(event);
    }
    p.may_write = vec![true; coherent.len()];
    gap(&p, &mut steps, &mut rng);
    Scenario {
        coherent: coherent.to_vec(),
        fenced: fenced.to_vec(),
        bounce: vec![false; coherent.len()],
        steps,
    }
}
