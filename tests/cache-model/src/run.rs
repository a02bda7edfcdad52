// SPDX-License-Identifier: GPL-2.0

//! Drives the real state machine through a sequence on the simulated
//! machine, performing exactly the operations it returns.
//!
//! A bouncing device is handled as the kernel handles it (the DMA API
//! copies, the exporter reports the copies): it never sends `Map` or
//! `Unmap`, and its mapping is `Bidirectional` if the importer asked for a
//! direction in which the device writes, else `ToDevice`.
//!
//! - map: `BounceRead`, then the buffer is copied into its slot;
//! - unmap: if the device may write, its slot is copied into the buffer,
//!   then `BounceWrote`. Inside a CPU bracket, `BounceRead` is sent and the
//!   buffer copied into its slot first, so that the copy back keeps what
//!   the CPU wrote since the bracket began;
//! - `BeginCpu` that opens the outermost bracket (none is open): first the
//!   slots of every mapped bouncing writer are copied into the buffer, and
//!   if there was one `BounceWrote` is sent (once). A nested `BeginCpu`
//!   copies nothing: the slots hold nothing newer (devices do not write
//!   inside a bracket), and the copy would put their older words back over
//!   what the CPU wrote since the outermost one;
//! - `EndCpu`: if no bracket is open (an `EndCpu` without `BeginCpu`),
//!   first the copy of an outermost `BeginCpu`, so that the copy below
//!   does not destroy device writes waiting in the slots. Then `EndCpu` is
//!   sent, and if a bouncing device is mapped, `BounceRead` (once) and the
//!   buffer is copied into every mapped bouncing device's slot;
//! - its accesses use its slot, and its fence signals are not sent: its
//!   writes reach the buffer only through the copies.
//!
//! Whether a bracket is open is what the rules count
//! ([`Ownership::cpu_depth`]), as in the exporter.
//!
//! The `Always` campaigns have no bouncing devices.

use crate::{
    ownership::{CacheOps, Device, Direction, Event, Ownership, Policy},
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
    /// Never tell the rules about bounce copies (`BounceRead`,
    /// `BounceWrote`).
    IgnoreBounceEvents,
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

/// The direction a bouncing device's mapping is made with: the device may
/// write only if the copy into the slot at map is made too.
fn bounced(dir: Direction) -> Direction {
    if dir.device_writes() {
        Direction::Bidirectional
    } else {
        Direction::ToDevice
    }
}

/// The rules and the machine they act on.
struct Driver {
    own: Ownership,
    machine: Machine,
    cost: Cost,
    mutation: Mutation,
}

impl Driver {
    /// Tells the rules about `event` and performs what they return.
    fn feed(&mut self, event: Event) {
        let ignored = match self.mutation {
            Mutation::IgnoreFences => matches!(event, Event::DeviceWrote(_)),
            Mutation::IgnoreBounceEvents => {
                matches!(event, Event::BounceRead | Event::BounceWrote)
            }
            _ => false,
        };
        if ignored {
            return;
        }
        let mut ops = self.own.on(event).ops;
        match self.mutation {
            Mutation::None | Mutation::IgnoreFences | Mutation::IgnoreBounceEvents => {}
            Mutation::DropInvalidates => ops.invalidate = 0,
            Mutation::DropCleans => ops.clean = 0,
        }
        self.cost.charge(ops);
        apply(&mut self.machine, ops);
    }

    /// What an outermost `BeginCpu` (or an `EndCpu` without one) does
    /// first: the slots of the bouncing `writers` are copied into the
    /// buffer, then one `BounceWrote` is sent if there was any.
    fn slots_into_buffer(&mut self, writers: &[usize]) {
        for &dev in writers {
            self.machine.bounce_out(dev);
        }
        if !writers.is_empty() {
            self.feed(Event::BounceWrote);
        }
    }
}

/// Runs `scenario` under `policy`.
pub fn run(scenario: &Scenario, policy: Policy, mutation: Mutation) -> Outcome {
    let mut d = Driver {
        own: Ownership::new(policy),
        machine: Machine::new(),
        cost: Cost::default(),
        mutation,
    };
    let devices = scenario.coherent.len();
    let mut mapped = vec![None; devices];
    let device = |dev: usize| Device {
        coherent: scenario.coherent[dev],
        fenced: scenario.fenced[dev],
    };
    let bounce = |dev: usize| scenario.bounce[dev];
    // Mapped bouncing devices whose mapping lets them write / read.
    let bouncing = |mapped: &[Option<Direction>], writes: bool| -> Vec<usize> {
        (0..devices)
            .filter(|&dev| {
                bounce(dev)
                    && mapped[dev].is_some_and(|dir: Direction| {
                        if writes {
                            dir.device_writes()
                        } else {
                            dir.device_reads()
                        }
                    })
            })
            .collect()
    };
    for &step in &scenario.steps {
        match step {
            Step::Map(dev, dir) if bounce(dev) => {
                let dir = bounced(dir);
                mapped[dev] = Some(dir);
                d.feed(Event::BounceRead);
                d.machine.bounce_in(dev, dir.device_writes());
            }
            Step::Map(dev, dir) => {
                mapped[dev] = Some(dir);
                d.feed(Event::Map(device(dev), dir));
            }
            Step::Unmap(dev) if bounce(dev) => {
                if let Some(dir) = mapped[dev].take() {
                    if dir.device_writes() {
                        if d.own.cpu_depth() > 0 {
                            // Inside a bracket the slot first takes what
                            // the CPU wrote since the bracket began.
                            d.feed(Event::BounceRead);
                            d.machine.bounce_in(dev, true);
                        }
                        d.machine.bounce_out(dev);
                        d.feed(Event::BounceWrote);
                    }
                    d.machine.release_slot(dev);
                }
            }
            Step::Unmap(dev) => {
                if let Some(dir) = mapped[dev].take() {
                    d.feed(Event::Unmap(device(dev), dir));
                }
            }
            Step::BeginCpu(dir) => {
                if d.own.cpu_depth() == 0 {
                    d.slots_into_buffer(&bouncing(&mapped, true));
                }
                d.feed(Event::BeginCpu(dir));
            }
            Step::EndCpu(dir) => {
                if d.own.cpu_depth() == 0 {
                    // No bracket began: do what its begin would have.
                    d.slots_into_buffer(&bouncing(&mapped, true));
                }
                d.feed(Event::EndCpu(dir));
                let readers = bouncing(&mapped, false);
                if !readers.is_empty() {
                    d.feed(Event::BounceRead);
                }
                for &dev in &readers {
                    let writes = mapped[dev].is_some_and(Direction::device_writes);
                    d.machine.bounce_in(dev, writes);
                }
            }
            // Its writes reach the buffer only through the copies.
            Step::DeviceWrote(dev) if bounce(dev) => {}
            Step::DeviceWrote(dev) => d.feed(Event::DeviceWrote(device(dev))),
            Step::CpuRead(w) => d.machine.cpu_read(w),
            Step::CpuWrite(w) => d.machine.cpu_write(w),
            Step::DeviceRead(dev, w) if bounce(dev) => d.machine.slot_read(dev, w),
            Step::DeviceRead(dev, w) => d.machine.device_read(scenario.coherent[dev], w),
            Step::DeviceWrite(dev, w) if bounce(dev) => d.machine.slot_write(dev, w),
            Step::DeviceWrite(dev, w) => d.machine.device_write(scenario.coherent[dev], w),
            Step::Evict(line) => d.machine.evict(line),
            Step::Fill(line) => d.machine.speculative_fill(line),
        }
    }
    d.machine.check_nothing_lost();
    Outcome {
        violations: d.machine.violations,
        cost: d.cost,
    }
}
