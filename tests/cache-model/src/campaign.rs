// SPDX-License-Identifier: GPL-2.0

//! Many sequences at once: random ones from a seed (with or without
//! bouncing devices), and the exhaustive set.

use crate::{
    exhaustive::{self, Adversary},
    oracle,
    ownership::Policy,
    rng::Rng,
    run::{self, Cost, Mutation},
    script::{self, Scenario, Usage},
    sim::Violation,
};

/// Totals over a campaign for one policy.
#[derive(Debug, Default)]
pub struct Summary {
    pub sequences: u64,
    pub steps: u64,
    pub stale_reads: u64,
    pub lost_writes: u64,
    pub cost: Cost,
    pub oracle: Cost,
    pub ground_truth: Cost,
    /// Sequences where the policy's clean or invalidate bytes differ from
    /// the exporter oracle's.
    pub differs_from_oracle: u64,
    /// The first failing sequence: its seed (random) or index, and why.
    pub first_failure: Option<(u64, String)>,
}

impl Summary {
    /// Whether every sequence was safe.
    pub fn safe(&self) -> bool {
        self.stale_reads == 0 && self.lost_writes == 0
    }

    /// Adds one sequence's result; `id` names it for reproduction.
    pub fn record(&mut self, id: u64, scenario: &Scenario, policy: Policy, mutation: Mutation) {
        let outcome = self.check(id, scenario, policy, mutation);
        let oracle = oracle::exporter_minimum(scenario);
        self.oracle.add(oracle);
        self.ground_truth
            .add(oracle::ground_truth_minimum(scenario));
        if outcome.cost != oracle {
            self.differs_from_oracle += 1;
        }
        if self.first_failure.is_none() && policy == Policy::Tracked && outcome.cost != oracle {
            self.first_failure = Some((
                id,
                format!("cost {:?} but oracle {:?}", outcome.cost, oracle),
            ));
        }
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
        self.check(id, scenario, policy, mutation);
    }

    /// Runs one sequence and counts its violations and cost.
    fn check(
        &mut self,
        id: u64,
        scenario: &Scenario,
        policy: Policy,
        mutation: Mutation,
    ) -> run::Outcome {
        let outcome = run::run(scenario, policy, mutation);
        self.sequences += 1;
        self.steps += scenario.steps.len() as u64;
        for v in &outcome.violations {
            match v {
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
        outcome
    }
}

/// The seed of the `i`-th random sequence of a campaign.
pub fn sequence_seed(base: u64, i: u64) -> u64 {
    base ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)
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
    seeded(base_seed, count, |summary, seed, rng| {
        summary.record(seed, &script::random(rng, len, usage), policy, mutation)
    })
}

/// Runs `one` for `count` sequences, each with the generator of its seed.
fn seeded(base_seed: u64, count: u64, mut one: impl FnMut(&mut Summary, u64, &mut Rng)) -> Summary {
    let mut summary = Summary::default();
    for i in 0..count {
        let seed = sequence_seed(base_seed, i);
        one(&mut summary, seed, &mut Rng::new(seed));
    }
    summary
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
    seeded(base_seed, count, |summary, seed, rng| {
        let scenario = script::random_bouncing(rng, len, usage);
        summary.record_unoracled(seed, &scenario, Policy::Tracked, mutation)
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
    let mut summary = Summary::default();
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
                    summary.record(id, &scenario, policy, mutation);
                    id += 1;
                }
            }
        }
    }
    summary
}
