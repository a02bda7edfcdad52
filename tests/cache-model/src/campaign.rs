// SPDX-License-Identifier: GPL-2.0

//! Many sequences at once: random ones from a seed (with or without
//! bouncing devices, with or without user space that skips SYNC), and the
//! exhaustive set.
//!
//! A [`Comparison`] runs the same sequences under several [`Config`]s and
//! compares each one's maintenance with the first one's, sequence by
//! sequence: that is how the model shows that trapping user access costs a
//! disciplined user nothing (trap against trust) and an undisciplined one
//! no more than the system heap (trap against `Always`).

pub use crate::run::Config;

use crate::{
    exhaustive::{self, Adversary},
    oracle,
    ownership::Policy,
    rng::Rng,
    run::{self, Cost, Mode, Mutation},
    script::{self, Scenario, Usage},
    sim::Violation,
};

/// Which minima the sequences are compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracles {
    /// The exporter oracle and the ground truth.
    Both,
    /// The ground truth only: the exporter oracle knows CPU accesses only
    /// from brackets.
    GroundTruth,
    /// Neither: they do not model bouncing devices.
    None,
}

/// Totals over a campaign for one configuration.
#[derive(Debug, Default)]
pub struct Summary {
    pub sequences: u64,
    pub steps: u64,
    pub stale_reads: u64,
    /// Of `stale_reads`: coherent devices' reads served by a CPU line older
    /// than memory.
    pub stale_snoops: u64,
    pub lost_writes: u64,
    pub cost: Cost,
    pub oracle: Cost,
    pub ground_truth: Cost,
    /// Sequences where the policy's clean or invalidate bytes differ from
    /// the exporter oracle's.
    pub differs_from_oracle: u64,
    /// In a [`Comparison`]: sequences where this configuration's
    /// maintenance bytes (clean + invalidate) exceed the reference's.
    pub exceeds_reference: u64,
    /// The first failing sequence: its seed (random) or index, and why.
    pub first_failure: Option<(u64, String)>,
    /// The first sequence that exceeds the reference, and by how much.
    pub first_excess: Option<(u64, String)>,
}

impl Summary {
    /// Whether every sequence was safe.
    pub fn safe(&self) -> bool {
        self.stale_reads == 0 && self.lost_writes == 0
    }

    /// Whether every sequence was safe but for coherent snoops served by
    /// stale lines (what the system heap leaves open).
    pub fn safe_but_snoops(&self) -> bool {
        self.stale_reads == self.stale_snoops && self.lost_writes == 0
    }

    /// Adds one sequence's result; `id` names it for reproduction.
    pub fn record(&mut self, id: u64, scenario: &Scenario, policy: Policy, mutation: Mutation) {
        let config = Config::new(policy, Mode::Trust).with(mutation);
        let minima = Minima::of(scenario, Oracles::Both);
        self.add(
            id,
            scenario,
            config,
            &run::run_with(scenario, config),
            &minima,
        );
    }

    /// Adds one sequence's safety and cost, without the oracles (which do
    /// not model bouncing devices).
    pub fn record_unoracled(
        &mut self,
        id: u64,
        scenario: &Scenario,
        policy: Policy,
        mutation: Mutation,
    ) {
        let config = Config::new(policy, Mode::Trust).with(mutation);
        let outcome = run::run_with(scenario, config);
        self.add(id, scenario, config, &outcome, &Minima::default());
    }

    /// Counts one sequence's violations and cost, and compares it with the
    /// minima that were computed.
    fn add(
        &mut self,
        id: u64,
        scenario: &Scenario,
        config: Config,
        outcome: &run::Outcome,
        minima: &Minima,
    ) {
        self.sequences += 1;
        self.steps += scenario.steps.len() as u64;
        for v in &outcome.violations {
            match v {
                Violation::StaleDeviceRead { coherent: true, .. } => {
                    self.stale_reads += 1;
                    self.stale_snoops += 1;
                }
                Violation::StaleCpuRead { .. } | Violation::StaleDeviceRead { .. } => {
                    self.stale_reads += 1
                }
                Violation::LostWrite { .. } => self.lost_writes += 1,
            }
        }
        self.cost.add(outcome.cost);
        if self.first_failure.is_none() {
            if let Some(v) = outcome.violations.first() {
                self.first_failure = Some((id, format!("{v:?}")));
            }
        }
        if let Some(ground_truth) = minima.ground_truth {
            self.ground_truth.add(ground_truth);
        }
        if let Some(oracle) = minima.exporter {
            self.oracle.add(oracle);
            if outcome.cost.bytes() != oracle.bytes() {
                self.differs_from_oracle += 1;
                if self.first_failure.is_none() && config.policy == Policy::Tracked {
                    self.first_failure = Some((
                        id,
                        format!("cost {:?} but oracle {:?}", outcome.cost, oracle),
                    ));
                }
            }
        }
    }
}

/// The minima of one sequence, those that were asked for.
#[derive(Default)]
struct Minima {
    exporter: Option<Cost>,
    ground_truth: Option<Cost>,
}

impl Minima {
    fn of(scenario: &Scenario, oracles: Oracles) -> Self {
        Self {
            exporter: (oracles == Oracles::Both).then(|| oracle::exporter_minimum(scenario)),
            ground_truth: (oracles != Oracles::None)
                .then(|| oracle::ground_truth_minimum(scenario)),
        }
    }
}

/// The same sequences under several configurations; the first is the
/// reference the others' bytes are compared with, sequence by sequence.
#[derive(Debug)]
pub struct Comparison {
    pub configs: Vec<Config>,
    pub summaries: Vec<Summary>,
}

impl Comparison {
    /// No sequences yet; `configs[0]` is the reference.
    pub fn new(configs: &[Config]) -> Self {
        assert!(!configs.is_empty());
        Self {
            configs: configs.to_vec(),
            summaries: configs.iter().map(|_| Summary::default()).collect(),
        }
    }

    /// The summary of `config`.
    pub fn get(&self, config: Config) -> &Summary {
        let i = self.configs.iter().position(|&c| c == config);
        &self.summaries[i.expect("a configuration of the comparison")]
    }

    /// Runs one sequence under every configuration.
    pub fn record(&mut self, id: u64, scenario: &Scenario, oracles: Oracles) {
        let minima = Minima::of(scenario, oracles);
        let mut reference = 0;
        for (i, (&config, summary)) in self.configs.iter().zip(&mut self.summaries).enumerate() {
            let outcome = run::run_with(scenario, config);
            summary.add(id, scenario, config, &outcome, &minima);
            if i == 0 {
                reference = outcome.cost.total();
            } else if outcome.cost.total() > reference {
                summary.exceeds_reference += 1;
                if summary.first_excess.is_none() {
                    summary.first_excess = Some((
                        id,
                        format!(
                            "{} bytes ({:?}), reference {reference}",
                            outcome.cost.total(),
                            outcome.cost
                        ),
                    ));
                }
            }
        }
    }

    /// The only summary, of a comparison of one configuration.
    fn into_summary(mut self) -> Summary {
        self.summaries.swap_remove(0)
    }
}

/// The seed of the `i`-th random sequence of a campaign.
pub fn sequence_seed(base: u64, i: u64) -> u64 {
    base ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Runs `count` sequences, each built by `scenario` from the generator of
/// its seed, under every configuration of `configs`.
fn seeded(
    base_seed: u64,
    count: u64,
    configs: &[Config],
    oracles: Oracles,
    mut scenario: impl FnMut(&mut Rng) -> Scenario,
) -> Comparison {
    let mut comparison = Comparison::new(configs);
    for i in 0..count {
        let seed = sequence_seed(base_seed, i);
        comparison.record(seed, &scenario(&mut Rng::new(seed)), oracles);
    }
    comparison
}

/// Checks `count` random sequences of about `len` steps.
pub fn random(
    base_seed: u64,
    count: u64,
    len: usize,
    policy: Policy,
    usage: Usage,
    mutation: Mutation,
) -> Summary {
    let config = Config::new(policy, Mode::Trust).with(mutation);
    random_compared(base_seed, count, len, usage, &[config]).into_summary()
}

/// [`random`] under every configuration of `configs`.
pub fn random_compared(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    configs: &[Config],
) -> Comparison {
    seeded(base_seed, count, configs, Oracles::Both, |rng| {
        script::random(rng, len, usage)
    })
}

/// Checks `count` random sequences of about `len` steps in which some
/// non-coherent devices bounce ([`script::random_bouncing`]), under
/// `Tracked`. The oracles do not model bounces: only safety and cost are
/// counted.
pub fn bouncing(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    mutation: Mutation,
) -> Summary {
    let config = Config::TRACKED_TRUST.with(mutation);
    bouncing_compared(base_seed, count, len, usage, &[config]).into_summary()
}

/// [`bouncing`] under every configuration of `configs`.
pub fn bouncing_compared(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    configs: &[Config],
) -> Comparison {
    seeded(base_seed, count, configs, Oracles::None, |rng| {
        script::random_bouncing(rng, len, usage)
    })
}

/// Checks `count` random sequences of about `len` steps whose user space
/// skips SYNC ([`script::random_undisciplined`]; with bouncing devices if
/// `bounce`) under every configuration of `configs`. Only the ground truth
/// applies, and not with bouncing devices.
pub fn undisciplined(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    bounce: bool,
    configs: &[Config],
) -> Comparison {
    let oracles = if bounce {
        Oracles::None
    } else {
        Oracles::GroundTruth
    };
    seeded(base_seed, count, configs, oracles, |rng| {
        script::random_undisciplined(rng, len, usage, bounce)
    })
}

/// A script generator: the scenario of about `len` steps that `usage`
/// allows, from a seeded generator.
pub type Generator = fn(&mut Rng, usize, Usage) -> Scenario;

/// Checks `count` random sequences of about `len` steps made by
/// `generator` (for example [`script::random_undisciplined_uncached`],
/// [`script::random_dying`], [`script::random_reading_beside_fenced_writers`])
/// under every configuration of `configs`, against `oracles`.
pub fn generated(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    generator: Generator,
    oracles: Oracles,
    configs: &[Config],
) -> Comparison {
    seeded(base_seed, count, configs, oracles, |rng| {
        generator(rng, len, usage)
    })
}

/// Checks `count` random sequences of about `len` steps with range
/// brackets mixed into whole-buffer ones ([`script::random_ranged`]; with
/// user space that skips SYNC if `unbracketed`) under every configuration
/// of `configs`. The exporter oracle, per cache line, applies to the
/// bracketed ones.
pub fn ranged(
    base_seed: u64,
    count: u64,
    len: usize,
    usage: Usage,
    unbracketed: bool,
    configs: &[Config],
) -> Comparison {
    let oracles = if unbracketed {
        Oracles::GroundTruth
    } else {
        Oracles::Both
    };
    seeded(base_seed, count, configs, oracles, |rng| {
        script::random_ranged(rng, len, usage, unbracketed)
    })
}

/// Device sets for the exhaustive campaign, as (coherent, fenced) pairs: two
/// non-coherent devices, a non-coherent one next to a coherent one, and a
/// fenced non-coherent one next to an unfenced one.
pub const EXHAUSTIVE_DEVICES: [[(bool, bool); 2]; 3] = [
    [(false, false), (false, false)],
    [(false, false), (true, false)],
    [(false, true), (false, false)],
];

/// Checks every exporter-event sequence of up to `depth` events, each
/// against the fixed adversaries and `random_adversaries` random ones.
pub fn exhaustive(
    depth: usize,
    random_adversaries: u64,
    policy: Policy,
    usage: Usage,
    mutation: Mutation,
) -> Summary {
    let config = Config::new(policy, Mode::Trust).with(mutation);
    exhaustive_compared(depth, random_adversaries, usage, &[config]).into_summary()
}

/// [`exhaustive`] under every configuration of `configs`.
pub fn exhaustive_compared(
    depth: usize,
    random_adversaries: u64,
    usage: Usage,
    configs: &[Config],
) -> Comparison {
    let mut comparison = Comparison::new(configs);
    let mut id = 0;
    for devices in EXHAUSTIVE_DEVICES {
        let coherent: Vec<bool> = devices.iter().map(|d| d.0).collect();
        let fenced: Vec<bool> = devices.iter().map(|d| d.1).collect();
        for len in 0..=depth {
            for events in exhaustive::event_sequences(&fenced, len) {
                if !usage.misuse && !exhaustive::is_strict(&events) {
                    continue;
                }
                let adversaries = [Adversary::FillThenAccessAll, Adversary::AccessAllThenEvict]
                    .into_iter()
                    .chain((0..random_adversaries).map(|s| Adversary::Random(s + 1)));
                for adversary in adversaries {
                    let scenario =
                        exhaustive::play(&coherent, &fenced, &events, adversary, usage.cpu_writes);
                    comparison.record(id, &scenario, Oracles::Both);
                    id += 1;
                }
            }
        }
    }
    comparison
}
