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
//!
//! # User access: [`Mode`]
//!
//! Under [`Mode::Trap`] the driver keeps the user page-table entries the
//! exporter has handed out, apart from the rules' own record
//! ([`Ownership::user_access`]), so that a mutation can make them
//! disagree. Every CPU access, bracketed or not (in the kernel every user
//! access goes through the page tables), first checks them: a read needs
//! read-only or writable entries, a write writable ones. If they do not
//! allow it, the access faults: `UserFault` is fed, its maintenance done,
//! and the entries the fault maps are recorded; then the access happens.
//! A decision that revokes removes the entries *before* its maintenance.
//! Under [`Mode::Trust`] entries always exist and accesses go straight to
//! the machine (the exporter sees nothing of them).
//!
//! Under [`Mode::TrapHuge`] lines `0..HUGE_LINES` stand for a 2 MiB chunk
//! mapped at an aligned address, which one huge entry maps: as in
//! `buffer.rs`, a fault there maps the whole block with one entry if its
//! grant covers the block, else the granted lines one by one; a fault
//! elsewhere maps the granted lines but that block (its own fault maps it).

use crate::{
    ownership::{Device, Direction, Event, Lines, Ownership, Policy, Range, Spans, UserAccess},
    script::{Scenario, Step},
    sim::{Machine, Violation, LINES, LINE_BYTES, WORDS_PER_LINE},
};

/// Bytes of cache maintenance, and what trapping user access took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub clean_bytes: u64,
    pub invalidate_bytes: u64,
    /// User accesses that faulted ([`Mode::Trap`]).
    pub faults: u64,
    /// Decisions that removed the user's page-table entries.
    pub revokes: u64,
}

impl Cost {
    /// Bytes of maintenance, cleaned and invalidated.
    pub fn total(&self) -> u64 {
        self.clean_bytes + self.invalidate_bytes
    }

    /// The maintenance alone, for comparing with the oracles (which know
    /// nothing of faults).
    pub fn bytes(&self) -> (u64, u64) {
        (self.clean_bytes, self.invalidate_bytes)
    }

    pub fn add(&mut self, other: Cost) {
        self.clean_bytes += other.clean_bytes;
        self.invalidate_bytes += other.invalidate_bytes;
        self.faults += other.faults;
        self.revokes += other.revokes;
    }

    /// Adds the bytes of the spans, each line counting `line_bytes`.
    fn charge(&mut self, clean: &Spans, invalidate: &Spans, line_bytes: &[u64; LINES]) {
        let bytes = |spans: &Spans| {
            let per_pass: u64 = spans
                .iter()
                .flat_map(|span| span.start as usize..span.end as usize)
                .map(|line| line_bytes[line])
                .sum();
            per_pass * u64::from(spans.passes())
        };
        self.clean_bytes += bytes(clean);
        self.invalidate_bytes += bytes(invalidate);
    }
}

/// How the exporter handles user mappings (`unbracketed_cpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Entries always exist: the exporter sees only the brackets. The old
    /// behaviour, and the system heap's (policy `Always`).
    Trust,
    /// Entries come from faults, which feed `UserFault`, and go when a
    /// decision revokes them. The exporter traps only under `Tracked`
    /// (`buffer.rs`); the model lets any policy trap.
    Trap,
    /// [`Mode::Trap`], with huge entries for lines `0..HUGE_LINES`.
    TrapHuge,
}

/// The lines one huge entry maps under [`Mode::TrapHuge`] (from line 0).
pub const HUGE_LINES: usize = 2;

impl Mode {
    /// The mode's name, as the `unbracketed_cpu` module parameter spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Trust => "trust",
            Mode::Trap => "trap",
            Mode::TrapHuge => "trap-huge",
        }
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
    /// Take every device to reach the buffer (a 32-bit device and a DMA32
    /// heap's buffer): a mapping that does bounce is then made like a
    /// direct one, with `DMA_ATTR_SKIP_CPU_SYNC`, so the DMA API copies the
    /// buffer into the slot at map (it always does) but never back, and
    /// the exporter syncs nothing of the slot at CPU brackets.
    AssumeReach,
    /// Never remove user page-table entries ([`Mode::Trap`]): the rules
    /// believe them gone, the user keeps accessing through them.
    IgnoreRevoke,
    /// Remove user entries only after the decision's maintenance, and let a
    /// user access that races with the decision (the next step, if it is a
    /// CPU access the entries allow) slip in between.
    RevokeAfterOps,
    /// A page pool that zeroes freed pages but does not clean them, while
    /// the rules are told the buffer starts clean ([`Start::Pooled`]).
    PoolSkipsClean,
    /// Tell the rules a range bracket one line shorter than the CPU uses
    /// (an off-by-one in the exporter's offset-to-page conversion).
    RangesMissLastLine,
    /// Deliver a fence's signal only at the next exporter call, as an
    /// exporter whose fence callback merely sets a flag would.
    FencesAtNextCall,
    /// [`Mode::TrapHuge`]: map the huge block with one entry even where
    /// the grant covers only part of it (the check that it is granted
    /// whole, dropped).
    HugeBeyondGrant,
}

/// How a buffer's memory starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Freshly allocated with `__GFP_ZERO`: the zeroes sit in dirty lines
    /// over someone else's old data (`Lines::ZEROED`).
    Fresh,
    /// From the page pool: zeroed and cleaned by its worker, so memory
    /// holds the zeroes and the cache only clean copies (`Lines::CLEAN`).
    Pooled,
}

/// How a sequence is run: the rules, how user access is handled, and a
/// mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub policy: Policy,
    pub mode: Mode,
    pub mutation: Mutation,
    pub start: Start,
    /// The bytes each cache line stands for in the cost (`LINE_BYTES`
    /// unless a benchmark scenario cut its buffer into unequal parts).
    pub line_bytes: [u64; LINES],
}

impl Config {
    /// `policy` in `mode`, unmutated.
    pub const fn new(policy: Policy, mode: Mode) -> Self {
        Self {
            policy,
            mode,
            mutation: Mutation::None,
            start: Start::Fresh,
            line_bytes: [LINE_BYTES; LINES],
        }
    }

    /// The same, with line `i` standing for `line_bytes[i]` bytes.
    pub const fn weighted(self, line_bytes: [u64; LINES]) -> Self {
        Self { line_bytes, ..self }
    }

    /// The same, for a buffer from the page pool.
    pub const fn pooled(self) -> Self {
        Self {
            start: Start::Pooled,
            ..self
        }
    }

    /// The same, with `mutation`.
    pub const fn with(self, mutation: Mutation) -> Self {
        Self { mutation, ..self }
    }

    /// Tracked rules, user access trusted (the exporter before it trapped).
    pub const TRACKED_TRUST: Config = Config::new(Policy::Tracked, Mode::Trust);
    /// Tracked rules, user access trapped (`unbracketed_cpu=trap`).
    pub const TRACKED_TRAP: Config = Config::new(Policy::Tracked, Mode::Trap);
    /// The upstream system heap: never traps.
    pub const ALWAYS: Config = Config::new(Policy::Always, Mode::Trust);
    /// The uncached heap: write-combined CPU mappings, never traps.
    pub const UNCACHED: Config = Config::new(Policy::Uncached, Mode::Trust);
}

/// What happened in one run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    pub cost: Cost,
}

impl Outcome {
    /// Whether the run read nothing stale and lost nothing.
    pub fn safe(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Performs the maintenance: every pass of the clean over its spans, then
/// of the invalidate (units are cache lines).
fn apply(machine: &mut Machine, clean: &Spans, invalidate: &Spans) {
    let lines = |span: Range| span.start as usize..span.end as usize;
    for _ in 0..clean.passes() {
        clean
            .iter()
            .for_each(|span| machine.clean_lines(lines(span)));
    }
    for _ in 0..invalidate.passes() {
        invalidate
            .iter()
            .for_each(|span| machine.invalidate_lines(lines(span)));
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

/// The CPU direction of a user access, as `UserFault` takes it.
fn user_direction(write: bool) -> Direction {
    if write {
        Direction::ToDevice
    } else {
        Direction::FromDevice
    }
}

/// The rules, the machine they act on, and the sequence's devices.
struct Driver<'a> {
    scenario: &'a Scenario,
    own: Ownership,
    machine: Machine,
    cost: Cost,
    mode: Mode,
    mutation: Mutation,
    /// Per device: the direction it is mapped with (a bouncing device's
    /// as [`bounced`] makes it).
    mapped: Vec<Option<Direction>>,
    /// Per line: the user page-table entries the exporter handed out
    /// ([`Mode::Trap`]).
    entries: [UserAccess; LINES],
    /// [`Mutation::RevokeAfterOps`]: a revocation waits until the step's
    /// maintenance is done.
    revoke_pending: bool,
    /// [`Mutation::FencesAtNextCall`]: signals not delivered yet.
    signals_pending: Vec<Event>,
    /// For replays: every step, and every event with what it cost.
    trace: Option<Vec<String>>,
    line_bytes: [u64; LINES],
}

impl Driver<'_> {
    fn device(&self, dev: usize) -> Device {
        Device {
            coherent: self.scenario.coherent[dev],
            fenced: self.scenario.fenced[dev],
        }
    }

    /// Whether `dev`'s mappings bounce (what the machine does).
    fn bounce(&self, dev: usize) -> bool {
        self.scenario.bounce[dev]
    }

    /// Whether the exporter lets `dev`'s mappings sync themselves: where
    /// they bounce, unless [`Mutation::AssumeReach`].
    fn self_synced(&self, dev: usize) -> bool {
        self.bounce(dev) && self.mutation != Mutation::AssumeReach
    }

    /// Mapped self-synced devices whose mapping lets them write / read.
    fn bouncing(&self, writes: bool) -> Vec<usize> {
        (0..self.mapped.len())
            .filter(|&dev| {
                self.self_synced(dev)
                    && self.mapped[dev].is_some_and(|dir| {
                        if writes {
                            dir.device_writes()
                        } else {
                            dir.device_reads()
                        }
                    })
            })
            .collect()
    }

    /// Tells the rules about `event` and performs what they return: the
    /// revocation first, then the maintenance.
    fn feed(&mut self, event: Event) {
        if self.mutation == Mutation::FencesAtNextCall {
            if matches!(event, Event::DeviceWrote(_)) {
                self.signals_pending.push(event);
                return;
            }
            for signal in std::mem::take(&mut self.signals_pending) {
                self.decide(signal);
            }
        }
        self.decide(event);
    }

    /// Tells the rules about `event` and performs what they return.
    fn decide(&mut self, event: Event) {
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
        let decision = self.own.on(event);
        let (mut clean, mut invalidate) = (decision.clean, decision.invalidate);
        match self.mutation {
            Mutation::DropInvalidates => invalidate = Spans::NONE,
            Mutation::DropCleans => clean = Spans::NONE,
            _ => {}
        }
        if let Some(trace) = &mut self.trace {
            let spans = |s: &Spans| {
                let ranges: Vec<_> = s
                    .iter()
                    .map(|r| format!("{}..{}", r.start, r.end))
                    .collect();
                format!("{} x [{}]", s.passes(), ranges.join(" "))
            };
            trace.push(format!(
                "      -> {event:?}: clean {} invalidate {}{}",
                spans(&clean),
                spans(&invalidate),
                if decision.revoke { ", revoke" } else { "" }
            ));
        }
        if decision.revoke {
            match self.mutation {
                Mutation::IgnoreRevoke => {}
                Mutation::RevokeAfterOps => self.revoke_pending = true,
                _ => self.revoke(),
            }
        }
        self.cost.charge(&clean, &invalidate, &self.line_bytes);
        apply(&mut self.machine, &clean, &invalidate);
    }

    /// Removes every user entry: the next user access faults.
    fn revoke(&mut self) {
        self.entries = [UserAccess::None; LINES];
        self.cost.revokes += 1;
    }

    /// The most any entry allows.
    fn entries_max(&self) -> UserAccess {
        self.entries
            .iter()
            .copied()
            .max()
            .unwrap_or(UserAccess::None)
    }

    /// Whether the user's entries let it make this access unseen.
    fn entries_allow(&self, word: usize, write: bool) -> bool {
        self.mode == Mode::Trust
            || self.entries[word / WORDS_PER_LINE] >= UserAccess::of(user_direction(write))
    }

    /// A CPU access, through the user's page tables. As the exporter's
    /// fault handler does, a fault maps again, unseen by the rules, what a
    /// fault they saw granted ([`Ownership::granted`]); else the rules see
    /// it, and it maps the lines of the latest open range bracket that
    /// holds the word ([`Ownership::fault_range`]), or all.
    fn cpu_access(&mut self, word: usize, write: bool) {
        if !self.entries_allow(word, write) {
            let dir = user_direction(write);
            if let Some(trace) = &mut self.trace {
                trace.push(format!("      fault: entries {:?}", self.entries));
            }
            let line = (word / WORDS_PER_LINE) as u64;
            let lines = match self.own.granted(write, line) {
                Some(granted) => granted,
                None => {
                    self.cost.faults += 1;
                    match self.own.fault_range(line) {
                        Some(range) => {
                            self.feed(Event::UserFaultRange(dir, range));
                            range
                        }
                        None => {
                            self.feed(Event::UserFault(dir));
                            self.own.whole()
                        }
                    }
                }
            };
            for line in self.mapped_by_fault(word / WORDS_PER_LINE, lines) {
                self.entries[line] = self.entries[line].max(UserAccess::of(dir));
            }
        }
        self.access(word, write);
    }

    /// The lines a fault on `line` maps, of the `granted` ones: all of
    /// them, or under [`Mode::TrapHuge`] what `buffer.rs` maps (see the
    /// module comment).
    fn mapped_by_fault(&self, line: usize, granted: Range) -> Vec<usize> {
        let granted = granted.start as usize..granted.end as usize;
        let huge = 0..HUGE_LINES;
        if self.mode != Mode::TrapHuge {
            return granted.collect();
        }
        let whole = granted.start <= huge.start && huge.end <= granted.end;
        if huge.contains(&line) && (whole || self.mutation == Mutation::HugeBeyondGrant) {
            return huge.collect();
        }
        granted
            .filter(|l| huge.contains(&line) || !huge.contains(l))
            .collect()
    }

    /// The access itself, on the machine (write-combined for an uncached
    /// buffer).
    fn access(&mut self, word: usize, write: bool) {
        match (self.own.policy() == Policy::Uncached, write) {
            (true, true) => self.machine.cpu_write_uncached(word),
            (true, false) => self.machine.cpu_read_uncached(word),
            (false, true) => self.machine.cpu_write(word),
            (false, false) => self.machine.cpu_read(word),
        }
    }

    /// What an outermost `BeginCpu` (or an `EndCpu` without one) does
    /// first: the slots of the bouncing writers are copied into the buffer,
    /// then one `BounceWrote` is sent if there was any.
    fn slots_into_buffer(&mut self) {
        let writers = self.bouncing(true);
        for &dev in &writers {
            self.machine.bounce_out(dev);
        }
        if !writers.is_empty() {
            self.feed(Event::BounceWrote);
        }
    }

    /// The range the rules are told for a bracket of lines `start..end`.
    fn told(&self, start: usize, end: usize) -> Range {
        assert!(
            self.bouncing(false).is_empty(),
            "ranges with bouncing devices"
        );
        let end = if self.mutation == Mutation::RangesMissLastLine && end - start > 1 {
            end - 1
        } else {
            end
        };
        Range::new(start as u64, end as u64)
    }

    fn step(&mut self, step: Step) {
        match step {
            // A bouncing mapping made as a direct one: the slot gets the
            // buffer at map, and is never copied back.
            Step::Map(dev, dir) if self.bounce(dev) && !self.self_synced(dev) => {
                self.mapped[dev] = Some(dir);
                self.feed(Event::Map(self.device(dev), dir));
                self.machine.bounce_in(dev, false);
            }
            Step::Unmap(dev) if self.bounce(dev) && !self.self_synced(dev) => {
                if let Some(dir) = self.mapped[dev].take() {
                    self.feed(Event::Unmap(self.device(dev), dir));
                    self.machine.release_slot(dev);
                }
            }
            Step::Map(dev, dir) if self.bounce(dev) => {
                let dir = bounced(dir);
                self.mapped[dev] = Some(dir);
                self.feed(Event::BounceRead);
                self.machine.bounce_in(dev, dir.device_writes());
            }
            Step::Map(dev, dir) => {
                self.mapped[dev] = Some(dir);
                self.feed(Event::Map(self.device(dev), dir));
            }
            Step::Unmap(dev) if self.bounce(dev) => {
                if let Some(dir) = self.mapped[dev].take() {
                    if dir.device_writes() {
                        if self.own.cpu_depth() > 0 {
                            // Inside a bracket the slot first takes what
                            // the CPU wrote since the bracket began.
                            self.feed(Event::BounceRead);
                            self.machine.bounce_in(dev, true);
                        }
                        self.machine.bounce_out(dev);
                        self.feed(Event::BounceWrote);
                    }
                    self.machine.release_slot(dev);
                }
            }
            Step::Unmap(dev) => {
                if let Some(dir) = self.mapped[dev].take() {
                    self.feed(Event::Unmap(self.device(dev), dir));
                }
            }
            Step::BeginCpu(dir) => {
                if self.own.cpu_depth() == 0 {
                    self.slots_into_buffer();
                }
                self.feed(Event::BeginCpu(dir));
            }
            Step::BeginRange(dir, start, end) => {
                let range = self.told(start, end);
                self.feed(Event::BeginCpuRange(dir, range));
            }
            Step::EndRange(dir, start, end) => {
                let range = self.told(start, end);
                self.feed(Event::EndCpuRange(dir, range));
            }
            Step::EndCpu(dir) => {
                if self.own.cpu_depth() == 0 {
                    // No bracket began: do what its begin would have.
                    self.slots_into_buffer();
                }
                self.feed(Event::EndCpu(dir));
                let readers = self.bouncing(false);
                if !readers.is_empty() {
                    self.feed(Event::BounceRead);
                }
                for &dev in &readers {
                    let writes = self.mapped[dev].is_some_and(Direction::device_writes);
                    self.machine.bounce_in(dev, writes);
                }
            }
            // Its writes reach the buffer only through the copies.
            Step::DeviceWrote(dev) if self.self_synced(dev) => {}
            Step::DeviceWrote(dev) => self.feed(Event::DeviceWrote(self.device(dev))),
            Step::CpuRead(w) | Step::UserRead(w) => self.cpu_access(w, false),
            Step::CpuWrite(w) | Step::UserWrite(w) => self.cpu_access(w, true),
            Step::DeviceRead(dev, w) if self.bounce(dev) => self.machine.slot_read(dev, w),
            Step::DeviceRead(dev, w) => self.machine.device_read(self.scenario.coherent[dev], w),
            Step::DeviceWrite(dev, w) if self.bounce(dev) => self.machine.slot_write(dev, w),
            Step::DeviceWrite(dev, w) => self.machine.device_write(self.scenario.coherent[dev], w),
            Step::Evict(line) => self.machine.evict(line),
            Step::Fill(line) => self.machine.speculative_fill(line),
            // Nothing reaches the exporter.
            Step::ProcessDied => {}
        }
    }
}

/// Runs `scenario` under `policy` with user access trusted ([`Mode::Trust`]),
/// as the exporter did before it could trap. For disciplined sequences
/// (no [`Step::UserRead`] or [`Step::UserWrite`]) that is what the brackets
/// promise; trapping them too adds faults and revocations, and is meant to
/// add no maintenance (`cache-model` checks that).
pub fn run(scenario: &Scenario, policy: Policy, mutation: Mutation) -> Outcome {
    run_in(scenario, policy, Mode::Trust, mutation)
}

/// Runs `scenario` under `policy`, with user access handled as `mode` says.
pub fn run_in(scenario: &Scenario, policy: Policy, mode: Mode, mutation: Mutation) -> Outcome {
    run_with(scenario, Config::new(policy, mode).with(mutation))
}

/// Runs `scenario` as `config` says.
pub fn run_with(scenario: &Scenario, config: Config) -> Outcome {
    drive(scenario, config, false).0
}

/// [`run_with`], and the trace of what happened: every step, and under it
/// every event fed to the rules with the maintenance and revocation it
/// got (for replays).
pub fn trace(scenario: &Scenario, config: Config) -> (Outcome, Vec<String>) {
    let (outcome, trace) = drive(scenario, config, true);
    (outcome, trace.unwrap_or_default())
}

fn drive(scenario: &Scenario, config: Config, traced: bool) -> (Outcome, Option<Vec<String>>) {
    let Config {
        policy,
        mode,
        mutation,
        start,
        line_bytes,
    } = config;
    let (lines, machine) = match start {
        // The uncached heap flushes fresh chunks at allocation, and takes
        // pooled ones as the pool's worker left them: zeroed and cleaned.
        Start::Fresh if policy == Policy::Uncached => (Lines::CLEAN, Machine::flushed()),
        Start::Pooled if policy == Policy::Uncached && mutation == Mutation::PoolSkipsClean => {
            (Lines::CLEAN, Machine::new())
        }
        Start::Pooled if policy == Policy::Uncached => (Lines::CLEAN, Machine::cleaned()),
        Start::Fresh => (Lines::ZEROED, Machine::new()),
        Start::Pooled if mutation == Mutation::PoolSkipsClean => (Lines::CLEAN, Machine::new()),
        Start::Pooled => (Lines::CLEAN, Machine::cleaned()),
    };
    let mut d = Driver {
        scenario,
        own: Ownership::with_lines(policy, LINES as u64, lines),
        machine,
        cost: Cost::default(),
        mode,
        mutation,
        mapped: vec![None; scenario.coherent.len()],
        entries: [UserAccess::None; LINES],
        revoke_pending: false,
        signals_pending: Vec::new(),
        trace: traced.then(Vec::new),
        line_bytes,
    };
    let steps = &scenario.steps;
    let mut i = 0;
    while i < steps.len() {
        if let Some(trace) = &mut d.trace {
            trace.push(format!("  {:?}", steps[i]));
        }
        let before = d.machine.violations.len();
        d.step(steps[i]);
        i += 1;
        if std::mem::take(&mut d.revoke_pending) {
            // The user was quicker than the revocation.
            if let Some((word, write)) = steps.get(i).and_then(Step::cpu_access) {
                if d.entries_allow(word, write) {
                    if let Some(trace) = &mut d.trace {
                        trace.push(format!("  {:?} (before the revocation)", steps[i]));
                    }
                    d.access(word, write);
                    i += 1;
                }
            }
            d.revoke();
        }
        if let Some(trace) = &mut d.trace {
            for v in &d.machine.violations[before..] {
                trace.push(format!("      VIOLATION {v:?}"));
            }
        }
        if mutation != Mutation::IgnoreRevoke {
            assert_eq!(
                d.entries_max(),
                if mode != Mode::Trust {
                    d.own.user_access()
                } else {
                    UserAccess::None
                },
                "the exporter's user entries and the rules' record disagree after {:?}",
                steps[i - 1]
            );
        }
    }
    let before = d.machine.violations.len();
    d.machine.check_nothing_lost();
    if let Some(trace) = &mut d.trace {
        for v in &d.machine.violations[before..] {
            trace.push(format!("  at the end: VIOLATION {v:?}"));
        }
    }
    let outcome = Outcome {
        violations: d.machine.violations,
        cost: d.cost,
    };
    (outcome, d.trace)
}
