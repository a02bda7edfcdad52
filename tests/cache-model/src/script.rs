// SPDX-License-Identifier: GPL-2.0

//! Event sequences: what the exporter sees (map, unmap, CPU brackets) and
//! what it does not (the accesses themselves, evictions, speculative fills).
//!
//! Sequences respect the dma-buf contract where the exporter relies on it —
//! a device accesses the buffer only while mapped, in its direction, and not
//! during a CPU bracket; the CPU accesses it only inside a bracket (but see
//! "User space that skips SYNC" below) — and include the misuse the core
//! lets through: `EndCpu` without `BeginCpu`, nested `BeginCpu`, and a
//! direction that differs between the two.
//!
//! Some non-coherent devices may *bounce* ([`random_bouncing`]): the DMA API
//! copies the whole buffer into the device's swiotlb slot when it maps and
//! when a CPU bracket ends, and the slot back into the buffer when it
//! unmaps and when the outermost CPU bracket begins (if the device may
//! write; [`crate::run`] has the details). Whole copies restrict what else
//! may happen, as with the upstream system heap:
//!
//! - while a bouncing device is mapped with a writing direction no other
//!   device writes, and a bouncing device writes only while no other device
//!   is mapped with a writing direction (the copies would clobber each
//!   other's words); for the same reason a bouncing device does not map
//!   with a writing direction while another device's writes wait in a slot;
//! - a device reads nothing while another device's writes wait in a slot,
//!   and a bouncing device reads nothing that another device wrote after
//!   the last copy into its slot (it cannot see it);
//! - a copy out of the buffer depends on the data like a CPU access: fences
//!   signal before a bouncing device maps and before an `EndCpu` that
//!   copies.
//!
//! The misuse is not restricted further: the exporter copies so that
//! nested `BeginCpu`, `EndCpu` without `BeginCpu` and the unmap of a
//! bouncing writer inside a bracket destroy nothing.
//!
//! # User space that skips SYNC
//!
//! [`random_undisciplined`] adds CPU accesses that no bracket declares
//! ([`Step::UserRead`], [`Step::UserWrite`]), mixed with bracketed ones.
//! Such user space still keeps the contract the upstream system heap
//! serves (it cleans at every device map and invalidates at every device
//! unmap, see `ownership.rs`; with strict brackets it never fails, which
//! `cache-model` checks): it writes the buffer without a bracket only
//! while no non-coherent device is mapped (bouncing devices are
//! non-coherent ones; coherent devices may be mapped), reads it so too
//! (or, in [`random_reading_beside_fenced_writers`], while every
//! non-coherent device mapped reports its writes through fences), and
//! either only after the fences of the fenced devices that wrote have
//! signalled. Nothing else is
//! required: such an access may write part of a line, and it may fall
//! inside an open bracket whose direction does not cover it.

use crate::{
    ownership::Direction,
    rng::Rng,
    sim::{LINES, WORDS, WORDS_PER_LINE},
};

/// One step of a sequence. Device numbers index [`Scenario::coherent`]. A
/// bouncing device's accesses touch its slot, not the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Map(usize, Direction),
    Unmap(usize),
    BeginCpu(Direction),
    EndCpu(Direction),
    /// A bracket of cache lines `.1..2` only (the heap's range SYNC).
    BeginRange(Direction, usize, usize),
    EndRange(Direction, usize, usize),
    /// A CPU access inside a bracket that declares it.
    CpuRead(usize),
    CpuWrite(usize),
    /// A CPU access that no bracket declares (user space skipped
    /// `DMA_BUF_IOCTL_SYNC`). For the machine it is the same access as
    /// [`Step::CpuRead`]; the step says that the exporter learns of it only
    /// through a page fault, if it traps user access.
    UserRead(usize),
    UserWrite(usize),
    DeviceRead(usize, usize),
    DeviceWrite(usize, usize),
    /// A fenced device's fence signalled after it wrote.
    DeviceWrote(usize),
    /// The process that opened the brackets still open died: its range
    /// brackets were ended just before (the release of its control file
    /// ends them, each in its begin's direction), its whole-buffer ones
    /// stay open for the exporter, which nothing tells.
    ProcessDied,
    Evict(usize),
    Fill(usize),
}

impl Step {
    /// The word and whether it is written, if this is a CPU access
    /// (bracketed or not).
    pub fn cpu_access(&self) -> Option<(usize, bool)> {
        match *self {
            Step::CpuRead(word) | Step::UserRead(word) => Some((word, false)),
            Step::CpuWrite(word) | Step::UserWrite(word) => Some((word, true)),
            _ => None,
        }
    }

    /// Whether the exporter sees this step.
    pub fn is_exporter_event(&self) -> bool {
        matches!(
            self,
            Step::Map(..)
                | Step::Unmap(_)
                | Step::BeginCpu(_)
                | Step::EndCpu(_)
                | Step::BeginRange(..)
                | Step::EndRange(..)
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
    /// Per device: whether its mappings bounce through a swiotlb slot (never
    /// for a coherent device).
    pub bounce: Vec<bool>,
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

/// An open CPU bracket: its begin direction, the end direction it will use,
/// and the cache lines it covers (all for a whole-buffer bracket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bracket {
    pub begin: Direction,
    pub end: Direction,
    pub lines: std::ops::Range<usize>,
}

impl Bracket {
    /// A whole-buffer bracket.
    pub fn whole(begin: Direction, end: Direction) -> Self {
        Self {
            begin,
            end,
            lines: 0..LINES,
        }
    }

    /// Whether it is a range bracket.
    pub fn is_range(&self) -> bool {
        self.lines != (0..LINES)
    }

    /// The step that opens it.
    pub fn begin_step(&self) -> Step {
        if self.is_range() {
            Step::BeginRange(self.begin, self.lines.start, self.lines.end)
        } else {
            Step::BeginCpu(self.begin)
        }
    }

    /// The step that closes it.
    pub fn end_step(&self) -> Step {
        if self.is_range() {
            Step::EndRange(self.end, self.lines.start, self.lines.end)
        } else {
            Step::EndCpu(self.end)
        }
    }
}

/// Tracks the protocol while a sequence is built, so that only legal
/// accesses are generated.
#[derive(Clone)]
pub struct Protocol {
    pub coherent: Vec<bool>,
    /// Per device: whether its mappings bounce.
    pub bounce: Vec<bool>,
    /// Fenced devices may write only where a `DeviceWrote` will follow
    /// before anything depends on the data; the builder keeps this current.
    pub may_write: Vec<bool>,
    pub mapped: Vec<Option<Direction>>,
    /// Open CPU brackets.
    pub brackets: Vec<Bracket>,
    /// Per bouncing device: it wrote its slot since the slot was last
    /// copied into the buffer.
    slot_ahead: Vec<bool>,
    /// Per bouncing device: another device wrote the buffer since the
    /// buffer was last copied into its slot.
    slot_behind: Vec<bool>,
    /// Per non-coherent device that does not bounce: it wrote memory and
    /// has not reported it yet (by its unmap, or its fence's signal).
    /// Until then a coherent device does not read: its snoop could be
    /// served by CPU lines older than that write, and no exporter could
    /// know (the pipeline waits for the writer, as real ones do).
    unreported: Vec<bool>,
    /// Per non-coherent device: it was mapped when a process died inside
    /// its brackets, so the end that would have cleaned that process's
    /// writes for it never came. It does not access the buffer again
    /// until it maps again (whose clean covers them).
    mapped_at_death: Vec<bool>,
}

impl Protocol {
    /// Devices that do not bounce.
    pub fn new(coherent: Vec<bool>) -> Self {
        let bounce = vec![false; coherent.len()];
        Self::with_bounce(coherent, bounce)
    }

    /// Devices that bounce where `bounce` says so.
    pub fn with_bounce(coherent: Vec<bool>, bounce: Vec<bool>) -> Self {
        let n = coherent.len();
        Self {
            coherent,
            bounce,
            may_write: vec![true; n],
            mapped: vec![None; n],
            brackets: Vec::new(),
            slot_ahead: vec![false; n],
            slot_behind: vec![false; n],
            unreported: vec![false; n],
            mapped_at_death: vec![false; n],
        }
    }

    fn writer_mapped(&self, dev: usize) -> bool {
        self.mapped[dev].is_some_and(Direction::device_writes)
    }

    /// Whether a bouncing device is mapped.
    pub fn bouncing_mapped(&self) -> bool {
        (0..self.mapped.len()).any(|dev| self.bounce[dev] && self.mapped[dev].is_some())
    }

    /// Whether `dev` may write now: whole-slot copies clobber concurrent
    /// writers.
    fn writes_alone(&self, dev: usize) -> bool {
        (0..self.mapped.len())
            .filter(|&other| other != dev && self.writer_mapped(other))
            .all(|other| !self.bounce[dev] && !self.bounce[other])
    }

    /// Whether `dev` may read now: no other device's writes wait in a slot,
    /// and nothing newer than its own slot exists if it bounces.
    fn sees_the_latest(&self, dev: usize) -> bool {
        !self.slot_behind[dev]
            && (0..self.mapped.len()).all(|other| other == dev || !self.slot_ahead[other])
    }

    /// Whether a coherent device must not read now: a non-coherent device
    /// (that does not bounce) wrote without reporting it yet.
    fn snoop_must_wait(&self) -> bool {
        self.unreported.contains(&true)
    }

    /// Whether `dev` may map with `dir` now: a bouncing writer's slot, if
    /// it missed writes waiting in another slot, would be copied back over
    /// them.
    pub fn may_map(&self, dev: usize, dir: Direction) -> bool {
        !(self.bounce[dev] && dir.device_writes() && self.slot_ahead.contains(&true))
    }

    /// Bouncing writers' slots are copied into the buffer.
    fn slots_into_buffer(&mut self) {
        for dev in 0..self.mapped.len() {
            if std::mem::take(&mut self.slot_ahead[dev]) {
                self.buffer_written_by(dev);
            }
        }
    }

    /// Another device than `writer` changed the buffer: the slots of the
    /// mapped bouncing devices are behind it.
    fn buffer_written_by(&mut self, writer: usize) {
        for dev in 0..self.mapped.len() {
            if dev != writer && self.bounce[dev] && self.mapped[dev].is_some() {
                self.slot_behind[dev] = true;
            }
        }
    }

    /// Whether user space may touch the buffer without a bracket now: no
    /// non-coherent device (bouncing or not) is mapped. The fences that
    /// must have signalled first are the builder's business.
    pub fn may_skip_sync(&self) -> bool {
        (0..self.mapped.len()).all(|dev| self.coherent[dev] || self.mapped[dev].is_none())
    }

    /// Whether user space may read the buffer without a bracket now: every
    /// non-coherent device mapped reports its writes through fences (and
    /// does not bounce), so that a read once they signalled must see them.
    /// The fences that must have signalled first are the builder's
    /// business.
    pub fn may_read_without_sync(&self, fenced: &[bool]) -> bool {
        (0..self.mapped.len()).all(|dev| {
            self.coherent[dev] || self.mapped[dev].is_none() || (fenced[dev] && !self.bounce[dev])
        })
    }

    /// Whether a coherent device is mapped.
    pub fn snooper_mapped(&self) -> bool {
        (0..self.mapped.len()).any(|dev| self.coherent[dev] && self.mapped[dev].is_some())
    }

    /// The CPU may read / write `line` inside the open brackets that
    /// cover it (union of the directions given at begin and at end).
    pub fn cpu_may(&self, line: usize) -> (bool, bool) {
        self.brackets
            .iter()
            .filter(|b| b.lines.contains(&line))
            .fold((false, false), |(r, w), b| {
                (
                    r || cpu_reads(b.begin) || cpu_reads(b.end),
                    w || b.begin.cpu_writes() || b.end.cpu_writes(),
                )
            })
    }

    /// Appends the accesses that are legal now, as steps.
    pub fn legal_accesses(&self, writes: CpuWrites) -> Vec<Vec<Step>> {
        let mut out = Vec::new();
        for word in 0..WORDS {
            let (read, write) = self.cpu_may(word / WORDS_PER_LINE);
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
                    if self.mapped_at_death[dev] {
                        continue;
                    }
                    if let Some(dir) = dir {
                        let snoop_waits = self.coherent[dev] && self.snoop_must_wait();
                        if device_reads(*dir) && self.sees_the_latest(dev) && !snoop_waits {
                            out.push(vec![Step::DeviceRead(dev, word)]);
                        }
                        if dir.device_writes() && self.may_write[dev] && self.writes_alone(dev) {
                            out.push(vec![Step::DeviceWrite(dev, word)]);
                        }
                    }
                }
            }
        }
        out
    }

    /// Applies a step to the protocol state (except the brackets, which the
    /// builder opens and closes).
    pub fn apply(&mut self, step: Step) {
        match step {
            Step::Map(dev, dir) => {
                self.mapped[dev] = Some(dir);
                self.slot_ahead[dev] = false;
                self.slot_behind[dev] = false;
                self.mapped_at_death[dev] = false;
            }
            Step::ProcessDied => {
                for dev in 0..self.mapped.len() {
                    self.mapped_at_death[dev] |= !self.coherent[dev] && self.mapped[dev].is_some();
                }
            }
            Step::Unmap(dev) => {
                if std::mem::take(&mut self.slot_ahead[dev]) {
                    self.buffer_written_by(dev);
                }
                self.mapped[dev] = None;
                self.unreported[dev] = false;
            }
            Step::DeviceWrite(dev, _) if self.bounce[dev] => self.slot_ahead[dev] = true,
            Step::DeviceWrite(dev, _) => {
                self.unreported[dev] |= !self.coherent[dev];
                self.buffer_written_by(dev)
            }
            Step::DeviceWrote(dev) => self.unreported[dev] = false,
            // Bouncing writers' slots are copied into the buffer (at the
            // outermost begin only; devices do not write inside a bracket,
            // so at a nested one no slot is ahead anyway).
            Step::BeginCpu(_) | Step::BeginRange(..) => self.slots_into_buffer(),
            // Without a `BeginCpu`, the slots are first copied into the
            // buffer as at a begin (inside a bracket none is ahead); then
            // the buffer is copied into every bouncing device's slot.
            Step::EndCpu(_) | Step::EndRange(..) => {
                self.slots_into_buffer();
                self.slot_behind.fill(false);
            }
            _ => {}
        }
    }
}

/// Percentage of non-coherent devices that bounce in [`random_bouncing`].
pub const BOUNCE_PERCENT: u32 = 40;

/// Percentage of CPU accesses that skip SYNC in [`random_undisciplined`],
/// where the contract lets them.
pub const UNBRACKETED_PERCENT: u32 = 50;

/// What a sequence mixes in besides what its [`Usage`] allows.
#[derive(Clone, Copy, Debug, Default)]
struct Mix {
    /// Percentage of non-coherent devices that bounce.
    bounce: u32,
    /// Percentage of CPU accesses that skip SYNC where the contract lets
    /// them.
    unbracketed: u32,
    /// Percentage of brackets that cover a range of lines.
    range: u32,
    /// Percentage of bracket closes where the process dies instead
    /// ([`Step::ProcessDied`]).
    dying: u32,
    /// User space that skips SYNC also reads while fenced non-coherent
    /// writers stay mapped, once their fences signalled.
    reads_beside_fenced_writers: bool,
    /// User space skips SYNC only while no coherent device is mapped
    /// either (the uncached heap's contract: a snoop may be served by a
    /// line that a write-combined write left older than memory, and no
    /// exporter event tells of that write).
    unbracketed_without_snoopers: bool,
}

/// A random sequence of about `len` steps with 1 to 3 devices, each
/// coherent or not and, if not, fenced or not at random.
pub fn random(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    generate(rng, len, usage, Mix::default())
}

/// Like [`random`], but each non-coherent device bounces with a chance of
/// [`BOUNCE_PERCENT`], fenced or not.
pub fn random_bouncing(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    let mix = Mix {
        bounce: BOUNCE_PERCENT,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

/// Like [`random`] (or [`random_bouncing`] if `bounce`), with user space
/// that skips SYNC: a CPU access is unbracketed with a chance of
/// [`UNBRACKETED_PERCENT`] whenever the contract lets it (see "User space
/// that skips SYNC" above); `usage` still governs the bracketed ones.
pub fn random_undisciplined(rng: &mut Rng, len: usize, usage: Usage, bounce: bool) -> Scenario {
    let mix = Mix {
        bounce: if bounce { BOUNCE_PERCENT } else { 0 },
        unbracketed: UNBRACKETED_PERCENT,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

/// Like [`random_undisciplined`] (no bouncing devices), where user space
/// also reads without SYNC while fenced non-coherent writers stay mapped,
/// once their fences signalled (what a process that waits for a job's
/// fence and then reads its output does). The upstream system heap has no
/// fence hooks: it cannot serve this.
pub fn random_reading_beside_fenced_writers(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    let mix = Mix {
        unbracketed: UNBRACKETED_PERCENT,
        reads_beside_fenced_writers: true,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

/// [`random_undisciplined`] with bouncing devices, for an uncached buffer:
/// user space skips SYNC (as uncached buffers are normally used) where the
/// contract lets it and no coherent device is mapped either.
pub fn random_undisciplined_uncached(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    let mix = Mix {
        bounce: BOUNCE_PERCENT,
        unbracketed: UNBRACKETED_PERCENT,
        unbracketed_without_snoopers: true,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

/// Percentage of bracket closes where the process dies instead in
/// [`random_dying`].
pub const DYING_PERCENT: u32 = 15;

/// Like [`random_ranged`] with user space that skips SYNC, where the process
/// that opened the brackets sometimes dies before it ends them; other
/// processes go on using the buffer, with SYNC or without.
pub fn random_dying(rng: &mut Rng, len: usize, usage: Usage) -> Scenario {
    let mix = Mix {
        unbracketed: UNBRACKETED_PERCENT,
        range: RANGE_PERCENT,
        dying: DYING_PERCENT,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

/// Percentage of brackets that cover a range of lines in [`random_ranged`].
pub const RANGE_PERCENT: u32 = 60;

/// Like [`random`], with brackets of ranges and of the whole buffer mixed
/// (nested and overlapping with `usage.misuse`); with unbracketed accesses
/// if `unbracketed`. No bouncing devices.
pub fn random_ranged(rng: &mut Rng, len: usize, usage: Usage, unbracketed: bool) -> Scenario {
    let mix = Mix {
        unbracketed: if unbracketed { UNBRACKETED_PERCENT } else { 0 },
        range: RANGE_PERCENT,
        ..Mix::default()
    };
    generate(rng, len, usage, mix)
}

fn generate(rng: &mut Rng, len: usize, usage: Usage, mix: Mix) -> Scenario {
    let writes = usage.cpu_writes;
    let devices = 1 + rng.below(3);
    let coherent: Vec<bool> = (0..devices).map(|_| rng.chance(25)).collect();
    let fenced: Vec<bool> = coherent.iter().map(|&c| !c && rng.chance(40)).collect();
    // No draws without bouncing devices: `random` stays what it was.
    let bounce: Vec<bool> = coherent
        .iter()
        .map(|&c| !c && mix.bounce > 0 && rng.chance(mix.bounce))
        .collect();
    let mut p = Protocol::with_bounce(coherent.clone(), bounce.clone());
    let mut steps = Vec::new();
    // Fenced devices that wrote and whose fence has not signalled yet.
    let mut pending = vec![false; devices];
    let signal = |dev: usize, pending: &mut Vec<bool>, steps: &mut Vec<Step>, p: &mut Protocol| {
        if std::mem::take(&mut pending[dev]) {
            steps.push(Step::DeviceWrote(dev));
            p.apply(Step::DeviceWrote(dev));
        }
    };
    while steps.len() < len {
        let roll = rng.below(100);
        if roll < 4 {
            // A fence signals.
            signal(rng.below(devices), &mut pending, &mut steps, &mut p);
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
                    signal(dev, &mut pending, &mut steps, &mut p);
                    Step::Unmap(dev)
                }
                None => {
                    let dir = DIRECTIONS[rng.below(3)];
                    if !p.may_map(dev, dir) {
                        continue;
                    }
                    if bounce[dev] {
                        // The copy into the slot waits for the fences.
                        for dev in 0..devices {
                            signal(dev, &mut pending, &mut steps, &mut p);
                        }
                    }
                    Step::Map(dev, dir)
                }
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
                    signal(dev, &mut pending, &mut steps, &mut p);
                }
                // No draw without ranges: the other generators stay what
                // they were.
                let mut bracket = Bracket::whole(begin, end);
                if mix.range > 0 && rng.chance(mix.range) {
                    let start = rng.below(LINES);
                    bracket.lines = start..start + 1 + rng.below(LINES - start);
                }
                let step = bracket.begin_step();
                p.brackets.push(bracket);
                p.apply(step);
                steps.push(step);
            }
        } else if roll < 54 && mix.dying > 0 && !p.brackets.is_empty() && rng.chance(mix.dying) {
            // The process dies in its brackets; its range brackets are
            // ended for it.
            while let Some(bracket) = p.brackets.pop() {
                if bracket.is_range() {
                    let step =
                        Step::EndRange(bracket.begin, bracket.lines.start, bracket.lines.end);
                    p.apply(step);
                    steps.push(step);
                }
            }
            p.apply(Step::ProcessDied);
            steps.push(Step::ProcessDied);
        } else if roll < 54 {
            // Close a bracket, or end one that never began.
            // With misuse, range brackets may close in any order.
            let at = match p.brackets.len() {
                0 => None,
                n if usage.misuse && mix.range > 0 => Some(rng.below(n)),
                n => Some(n - 1),
            };
            let step = match at.map(|i| p.brackets.remove(i)) {
                Some(bracket) => bracket.end_step(),
                None if usage.misuse && rng.chance(20) => {
                    let dir = DIRECTIONS[rng.below(3)];
                    if mix.range > 0 && rng.chance(mix.range) {
                        let start = rng.below(LINES);
                        Step::EndRange(dir, start, start + 1 + rng.below(LINES - start))
                    } else {
                        Step::EndCpu(dir)
                    }
                }
                None => continue,
            };
            if p.bouncing_mapped() {
                // The copy into the slots waits for the fences.
                for dev in 0..devices {
                    signal(dev, &mut pending, &mut steps, &mut p);
                }
            }
            p.apply(step);
            steps.push(step);
        } else if mix.unbracketed > 0
            && rng.chance(mix.unbracketed)
            && (p.may_skip_sync()
                || (mix.reads_beside_fenced_writers && p.may_read_without_sync(&fenced)))
            && !(mix.unbracketed_without_snoopers && p.snooper_mapped())
        {
            // No draw without unbracketed accesses: the other generators
            // stay what they were. With no non-coherent device mapped no
            // fence is pending (unmaps signal first); signal anyway, as the
            // contract wants.
            for dev in 0..devices {
                signal(dev, &mut pending, &mut steps, &mut p);
            }
            // Writes only while no non-coherent device is mapped: a fenced
            // reader's next job would miss them.
            let word = rng.below(WORDS);
            steps.push(if !p.may_skip_sync() || rng.chance(50) {
                Step::UserRead(word)
            } else {
                Step::UserWrite(word)
            });
        } else {
            let legal = p.legal_accesses(writes);
            if !legal.is_empty() {
                let chosen = &legal[rng.below(legal.len())];
                for &step in chosen {
                    if let Step::DeviceWrite(dev, _) = step {
                        pending[dev] |= fenced[dev];
                    }
                    p.apply(step);
                }
                steps.extend(chosen.iter().copied());
            }
        }
    }
    for dev in 0..devices {
        signal(dev, &mut pending, &mut steps, &mut p);
    }
    // Close what is open so that the final state is a quiet one.
    while let Some(bracket) = p.brackets.pop() {
        steps.push(bracket.end_step());
    }
    Scenario {
        coherent,
        fenced,
        bounce,
        steps,
    }
}
