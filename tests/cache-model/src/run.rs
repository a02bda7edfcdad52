// SPDX-License-Identifier: GPL-2.0

//! Drives the real state machine through a sequence on the simulated
//! machine, performing exactly the operations it returns.

use crate::{
    ownership::{CacheOps, Device, Event, Ownership, Policy},
    script::{Scenario, Step},
    sim::{Machine, Violation, BUFFER_BYTES},
};

/// Bytes of cache maintenance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub clean_bytes: u64,
    pub invalidate_bytes: u64,
}

impl Cost {
    pub fn total(&self) -> u64 {
        self.clean_bytes + self.invalidate_bytes
    }

    pub fn add(&mut self, other: Cost) {
        self.clean_bytes += other.clean_bytes;
        self.invalidate_bytes += other.invalidate_bytes;
    }

    fn charge(&mut self, ops: CacheOps) {
        self.clean_bytes += u64::from(ops.clean) * BUFFER_BYTES;
        self.invalidate_bytes += u64::from(ops.invalidate) * BUFFER_BYTES;
    }
}

/// A deliberately broken variant of the rules, to prove the model catches
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// Ignore every invalidate the rules ask for.
    DropInvalidates,
    /// Ignore every clean the rules ask for.
    DropCleans,
    /// Never tell the rules that a fence signalled.
    IgnoreFences,
}

/// What happened in one run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    pub cost: Cost,
}

fn apply(machine: &mut Machine, ops: CacheOps) {
    for _ in 0..ops.clean {
        machine.clean();
    }
    for _ in 0..ops.invalidate {
        machine.invalidate();
    }
}

/// Runs `scenario` under `policy`.
pub fn run(scenario: &Scenario, policy: Policy, mutation: Mutation) -> Outcome {
    let mut own = Ownership::new(policy);
    let mut machine = Machine::new();
    let mut mapped = vec![None; scenario.coherent.len()];
    let mut cost = Cost::default();
    let device = |dev: usize| Device {
        coherent: scenario.coherent[dev],
        fenced: scenario.fenced[dev],
    };
    for &step in &scenario.steps {
        let event = match step {
            Step::Map(dev, dir) => {
                mapped[dev] = Some(dir);
                Some(Event::Map(device(dev), dir))
            }
            Step::Unmap(dev) => mapped[dev].take().map(|dir| Event::Unmap(device(dev), dir)),
            Step::BeginCpu(dir) => Some(Event::BeginCpu(dir)),
            Step::DeviceWrote(dev) => Some(Event::DeviceWrote(device(dev))),
            Step::EndCpu(dir) => Some(Event::EndCpu(dir)),
            Step::CpuRead(w) => {
                machine.cpu_read(w);
                None
            }
            Step::CpuWrite(w) => {
                machine.cpu_write(w);
                None
            }
            Step::DeviceRead(dev, w) => {
                machine.device_read(scenario.coherent[dev], w);
                None
            }
            Step::DeviceWrite(dev, w) => {
                machine.device_write(scenario.coherent[dev], w);
                None
            }
            Step::Evict(line) => {
                machine.evict(line);
                None
            }
            Step::Fill(line) => {
                machine.speculative_fill(line);
                None
            }
        };
        let event = event.filter(|e| {
            !(mutation == Mutation::IgnoreFences && matches!(e, Event::DeviceWrote(_)))
        });
        if let Some(event) = event {
            let mut ops = own.on(event).ops;
            match mutation {
                Mutation::None | Mutation::IgnoreFences => {}
                Mutation::DropInvalidates => ops.invalidate = 0,
                Mutation::DropCleans => ops.clean = 0,
            }
            cost.charge(ops);
            apply(&mut machine, ops);
        }
    }
    machine.check_nothing_lost();
    Outcome {
        violations: machine.violations,
        cost,
    }
}
