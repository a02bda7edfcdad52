// SPDX-License-Identifier: GPL-2.0

//! Who owns a buffer, and the cache maintenance each change of owner needs.
//!
//! This is a pure state machine: no `unsafe`, no kernel imports, so the same
//! file is built into the module and tested on the host against a cache
//! model (`tests/cache-model`). It decides; `cache_ops.rs` acts.
//!
//! # The problem
//!
//! On arm64 a non-coherent device reads and writes memory directly while the
//! CPU works through a write-back cache that may also fill lines
//! speculatively at any time. Three things can go wrong:
//!
//! 1. the device reads memory the CPU has not written back yet;
//! 2. dirty CPU lines are evicted on top of what the device wrote;
//! 3. the CPU reads (or partially writes) lines that predate a device write.
//!
//! A *clean* (write back dirty lines) cures 1 and 2; an *invalidate* (drop
//! lines) cures 3. Coherent devices snoop the CPU cache and need no clean;
//! but a snoop may be served by a clean line too, so after a non-coherent
//! device wrote they need the lines older than memory gone (3 again).
//!
//! # State
//!
//! What the exporter knows, per buffer:
//!
//! - [`Lines`]: what the CPU cache may hold for the memory — possibly dirty
//!   lines (the CPU may have written since the last clean; freshly zeroed
//!   pages start dirty, pages from the page pool, zeroed and cleaned by its
//!   worker, start clean) and possibly stale lines (a non-coherent device may
//!   have written since the last invalidate). `Lines` is the part that a
//!   later change can keep per range of pages; the rules below apply to
//!   whichever ranges an access covers.
//! - Who may access the memory: how many non-coherent devices are mapped,
//!   how many of them may write without telling us when they did (see
//!   [`Event::DeviceWrote`]), and how deep the CPU is in
//!   `begin_cpu_access` brackets.
//! - What user page-table entries let the CPU do unseen ([`UserAccess`]):
//!   when the exporter traps user access (see "User space that skips
//!   SYNC"), nothing, reading, or writing.
//!
//! # Transitions (policy `Tracked`)
//!
//! | event | cache operation | why |
//! |---|---|---|
//! | `Map` by a non-coherent device | clean, if lines may be dirty | 1 and 2: the device may read or write from now on |
//! | `Map` by a coherent device | invalidate, if lines may be stale; clean first if they may also be dirty | it snoops the CPU cache, and a snoop may be served by a clean line too: none may be older than memory |
//! | `Unmap` by a non-coherent, unfenced writer | none; lines become possibly stale (invalidate at once while a coherent device is mapped) | the invalidate waits for the next CPU access, so device-to-device hand-over costs nothing |
//! | `BeginCpu` (any direction) | invalidate, if lines may be stale; clean first if they may also be dirty | 3; an invalidate must never drop dirty data; a CPU *write* needs it too (partial lines) |
//! | `EndCpu`, non-coherent device mapped | clean, if lines may be dirty | 1: a long-lived mapping sees the CPU's writes |
//! | `EndCpu`, none mapped | none | the clean waits for the next map; a CPU that owns a clean buffer pays nothing |
//! | `DeviceWrote` (a fence signalled) | none; lines become possibly stale (invalidate at once while a coherent device is mapped or user entries exist) | 3, found out precisely instead of assumed; applied where the fence signals (the exporter's callback), before any reader that waits for it |
//! | `Unmap` by a reader or a fenced device | none | memory did not change, or its writes were reported |
//! | `BounceRead` | invalidate, if lines may be stale; clean first if they may also be dirty | the bounce copy is a CPU read: 3 |
//! | `BounceWrote`, non-coherent device mapped | clean (lines were just dirtied) | the bounce copy is a CPU write: 1 |
//! | `BounceWrote`, none mapped | none; lines become possibly dirty | the clean waits for the next map |
//!
//! A non-coherent device that may write and is mapped without fence
//! reporting (`unfenced`) keeps the lines possibly stale for as long as it
//! is mapped: every CPU access invalidates once, whatever the number of
//! mapped devices.
//!
//! A CPU write bracket marks the lines possibly dirty when it begins *or*
//! ends with a write direction, so a direction that differs between
//! `BeginCpu` and `EndCpu` can only cause more maintenance, never less.
//! While a write bracket is open the lines stay possibly dirty even after a
//! clean (a device mapped meanwhile gets cleaned again at `EndCpu`), and a
//! nested `BeginCpu` that must invalidate cleans first whatever the open
//! bracket declared, because its `EndCpu` may still declare a write. An
//! `EndCpu` without `BeginCpu` is handled as an end; a nested `BeginCpu`
//! checks staleness again. Each operation covers the whole buffer (or, later,
//! the range in question), once: never once per device.
//!
//! # Mappings that bounce
//!
//! A device whose mappings go through swiotlb bounce slots (`swiotlb=force`,
//! a DMA mask that cannot reach the pages, a restricted DMA pool, a
//! confidential guest) never touches the buffer's pages: the DMA API copies
//! between the pages and the slot, with the CPU, inside that mapping's own
//! map, unmap and sync calls, and only if they are made without
//! `DMA_ATTR_SKIP_CPU_SYNC`. So such an attachment syncs its own mapping
//! (under either policy) and does not take part in `Map`/`Unmap`; for the pages,
//! its copies are CPU accesses: `BounceRead` before a copy out of the
//! buffer (map, sync for the device), `BounceWrote` after a copy into it
//! (unmap or sync for the CPU, when the device may write). A bouncing
//! writer is mapped both ways whatever the importer asked, so that the end
//! of a CPU access copies the CPU's writes into its slot as well (its unmap
//! copies the whole slot back). Two bouncing mappings that write at the
//! same time overwrite each other's copies, as with any heap.
//!
//! # User space that skips SYNC
//!
//! User space may touch an mmap without `DMA_BUF_IOCTL_SYNC`; the upstream
//! system heap mostly hides that (it cleans at every device map and
//! invalidates at every device unmap). To keep such user space correct
//! without taxing the one that brackets, the exporter can *trap* user
//! access: user mappings start without page-table entries, a user access
//! faults, and the fault is [`Event::UserFault`], an implicit CPU access
//! begin that stays open for as long as the entries exist. A read fault
//! maps the pages read-only, a write fault writable.
//!
//! | event | revoke user entries? | why |
//! |---|---|---|
//! | `UserFault` | no (it maps them) | outside a bracket: invalidate, if lines may be stale, as `BeginCpu`; inside one: nothing (its begin did it), unless a non-coherent device reported a write since it began (its process may have died without ending it); writable entries keep lines possibly dirty |
//! | `Map` by a non-coherent device | yes, if any | the next user access must fault: a write becomes dirty lines this map's clean missed, a read may need an invalidate |
//! | lines become possibly stale by `Unmap` of an unfenced non-coherent writer | yes, if any | the next user read must fault and invalidate |
//! | `DeviceWrote` | no | it comes in atomic context, where revoking (which sleeps) cannot; it invalidates at once instead where entries remain |
//! | outermost `EndCpu` that cleans, entries writable | yes | so that the clean stays valid: a later write outside a bracket faults instead of dirtying lines unseen |
//! | outermost `EndCpu` while a fenced non-coherent writer is mapped | yes | so that a disciplined user's entries never meet its signal (which would have to invalidate for them) |
//!
//! A decision that revokes must revoke *before* its maintenance, so that
//! no user write slips in between a clean and the revocation. The
//! guarantee for user space that skips brackets is the system heap's: a
//! device mapped after a CPU write sees it, and a CPU read after a device
//! is unmapped (or its write fence has been seen) sees the device's data.
//!
//! # Uncached buffers (policy `Uncached`)
//!
//! The uncached heap's buffers are mapped write-combined for the CPU, user
//! and kernel, and flushed once at allocation (fresh chunks; pooled ones
//! were zeroed and cleaned by the pool, which leaves at most clean copies,
//! like a speculative fill): the CPU then neither dirties
//! lines of its own nor reads stale ones, and non-coherent devices need no
//! maintenance at all. The cache may still hold lines of the buffer,
//! filled speculatively through the kernel's cacheable linear alias; after
//! a write around the cache (the CPU's, a non-coherent device's) they are
//! older than memory. Two readers go through the cache and must not see
//! them: a coherent importer, which snoops, and a bounce copy. User space
//! normally writes an uncached buffer without SYNC, so nothing tells the
//! exporter when lines became older than memory: a coherent importer's map
//! and every copy out of the buffer drop every line first (so does a CPU
//! access's end while a coherent importer is mapped), and every copy into
//! it (which leaves dirty lines) writes them back and drops them at once.
//! User space that skips SYNC
//! while a coherent importer is mapped is not covered: a snoop may be
//! served by a line filled before a write-combined write that no event
//! reports.
//!
//! # Policy `Always`
//!
//! The upstream system heap, kept as the baseline: every map cleans, every
//! unmap invalidates unless the device only read, and `BeginCpu`/`EndCpu`
//! invalidate/clean once *per mapped attachment*.

/// Direction of an access, as the DMA API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The device reads (the CPU wrote); `DMA_TO_DEVICE`.
    ToDevice,
    /// The device writes (the CPU will read); `DMA_FROM_DEVICE`.
    FromDevice,
    /// Both; `DMA_BIDIRECTIONAL`.
    Bidirectional,
}

impl Direction {
    /// Whether a device access in this direction may write memory.
    pub fn device_writes(self) -> bool {
        !matches!(self, Direction::ToDevice)
    }

    /// Whether a device access in this direction may read memory.
    pub fn device_reads(self) -> bool {
        !matches!(self, Direction::FromDevice)
    }

    /// Whether a CPU access in this direction may write memory. A CPU
    /// bracket uses the DMA direction the dma-buf core passes: `ToDevice`
    /// for `DMA_BUF_SYNC_WRITE`, `FromDevice` for `DMA_BUF_SYNC_READ`.
    pub fn cpu_writes(self) -> bool {
        !matches!(self, Direction::FromDevice)
    }
}

/// What user page-table entries of the buffer let the CPU do without the
/// exporter seeing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserAccess {
    /// No entries: every user access faults first.
    None,
    /// Read-only entries: a user write faults first.
    Read,
    /// Writable entries: the CPU may read and write at any moment.
    Write,
}

impl UserAccess {
    /// What a user fault in CPU direction `dir` maps.
    pub fn of(dir: Direction) -> Self {
        if dir.cpu_writes() {
            UserAccess::Write
        } else {
            UserAccess::Read
        }
    }
}

/// What the exporter knows about a device mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// The device snoops the CPU cache (`dev_is_dma_coherent`).
    pub coherent: bool,
    /// The device reports every write through [`Event::DeviceWrote`] (fence
    /// hooks), so its mapping alone does not make the lines stale.
    pub fenced: bool,
}

/// Something the exporter saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An importer device started DMA access (`map_dma_buf`).
    Map(Device, Direction),
    /// An importer device finished (`unmap_dma_buf`, or detach while mapped).
    Unmap(Device, Direction),
    /// The CPU is about to access the buffer (`begin_cpu_access`).
    BeginCpu(Direction),
    /// The CPU finished accessing the buffer (`end_cpu_access`).
    EndCpu(Direction),
    /// A fenced device completed work that may have written the buffer (its
    /// fence signalled). Comes before any CPU access that depends on it:
    /// CPU access waits for the buffer's fences.
    DeviceWrote(Device),
    /// A mapping that bounces is about to copy the buffer into its bounce
    /// slot: the CPU reads the memory on the device's behalf.
    BounceRead,
    /// A user access faulted (trap mode): the CPU is about to access the
    /// buffer in CPU direction `ToDevice` (a write) or `FromDevice` (a
    /// read), inside a bracket or not, and the exporter then maps the
    /// pages for that ([`UserAccess::of`]).
    UserFault(Direction),
    /// A mapping that bounces copied its slot into the buffer: the CPU wrote
    /// the memory on the device's behalf.
    BounceWrote,
    /// The CPU is about to access a range of the buffer (the heap's range
    /// SYNC). Brackets of ranges and of the whole buffer nest and overlap
    /// freely; each range bracket is ended by an `EndCpuRange` of the same
    /// range.
    BeginCpuRange(Direction, Range),
    /// The CPU finished accessing a range of the buffer.
    EndCpuRange(Direction, Range),
    /// A user access faulted, and the exporter maps only `Range` for it
    /// (the range of an open range bracket that holds the faulting page).
    UserFaultRange(Direction, Range),
}

/// Cache maintenance to perform, in this order: clean, then invalidate.
///
/// Each count is a number of passes over the decision's spans
/// ([`Decision::clean`], [`Decision::invalidate`]); only the `Always`
/// policy ever asks for more than one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOps {
    /// Write back dirty lines (`dma_sync_*_for_device`).
    pub clean: u32,
    /// Drop lines (`dma_sync_*_for_cpu`).
    pub invalidate: u32,
}

impl CacheOps {
    /// No maintenance.
    pub const NONE: CacheOps = CacheOps {
        clean: 0,
        invalidate: 0,
    };

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.clean == 0 && self.invalidate == 0
    }
}

/// Why an event that the upstream system heap would have paid for cost
/// nothing (for statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The device snoops the CPU cache.
    Coherent,
    /// The CPU cache holds no dirty lines for the buffer.
    NotDirty,
    /// No device wrote since the last invalidate.
    NotStale,
    /// The invalidate is deferred to the next CPU access.
    DeferredToCpuAccess,
    /// No non-coherent device is mapped; the clean waits for the next map.
    DeferredToMap,
}

/// The result of one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// What to do now.
    pub ops: CacheOps,
    /// Where to clean (`ops.clean` passes over each span).
    pub clean: Spans,
    /// Where to invalidate (`ops.invalidate` passes over each span), after
    /// the clean.
    pub invalidate: Spans,
    /// Why an operation the baseline would do was not done, if so.
    pub skipped: Option<Skip>,
    /// Remove every user page-table entry of the buffer, before `ops`.
    pub revoke: bool,
}

/// Which rules to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Maintenance only on real ownership transitions (the default).
    Tracked,
    /// What the upstream system heap does, as a baseline for comparison.
    Always,
    /// A buffer the CPU maps write-combined (the uncached heap's, see
    /// "Uncached buffers"), flushed once at allocation.
    Uncached,
}

impl Policy {
    /// The policy's name, as the `sync_policy` module parameter spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Tracked => "tracked",
            Policy::Always => "always",
            Policy::Uncached => "uncached",
        }
    }
}

/// What the CPU cache may hold for some memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    /// The CPU may have written since the last clean.
    pub maybe_dirty: bool,
    /// A non-coherent device may have written since the last invalidate.
    pub maybe_stale: bool,
    /// A bracket with a write direction began over these lines and they
    /// have been inside some open bracket ever since: the CPU may dirty
    /// them at any moment, so no clean makes them clean for good until no
    /// bracket covers them (which one of several an end closes is not for
    /// the exporter to know).
    pub cpu_writing: bool,
}

impl Lines {
    /// Freshly zeroed pages: the zeroes were written through the cache.
    pub const ZEROED: Lines = Lines {
        maybe_dirty: true,
        maybe_stale: false,
        cpu_writing: false,
    };

    /// Zeroed pages that were cleaned since (the page pool's): memory holds
    /// the zeroes, any line the cache holds is clean and equal to memory.
    pub const CLEAN: Lines = Lines {
        maybe_dirty: false,
        maybe_stale: false,
        cpu_writing: false,
    };

    /// What two pieces of memory may hold together: whatever either may.
    pub fn union(self, other: Lines) -> Lines {
        Lines {
            maybe_dirty: self.maybe_dirty || other.maybe_dirty,
            maybe_stale: self.maybe_stale || other.maybe_stale,
            cpu_writing: self.cpu_writing || other.cpu_writing,
        }
    }

    fn dirty(self) -> Lines {
        Lines {
            maybe_dirty: true,
            ..self
        }
    }

    fn writing(self) -> Lines {
        Lines {
            cpu_writing: true,
            ..self
        }
    }

    fn stale(self) -> Lines {
        Lines {
            maybe_stale: true,
            ..self
        }
    }
}

/// Units `start..end` of a buffer: pages in the exporter, cache lines in
/// the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// Units `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// The number of units.
    pub fn len(self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no unit.
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// The units in both (empty if none).
    pub fn intersect(self, other: Range) -> Range {
        Range::new(self.start.max(other.start), self.end.min(other.end))
    }

    /// The smallest range holding both (`other` may be empty).
    fn hull(self, other: Range) -> Range {
        if self.is_empty() {
            other
        } else if other.is_empty() {
            self
        } else {
            Range::new(self.start.min(other.start), self.end.max(other.end))
        }
    }
}

/// The most runs of different [`Lines`] a buffer keeps apart; beyond it,
/// neighbouring runs merge into one that may hold what either may (more
/// maintenance later, never less). Ranges that user space or importers
/// name are few (a region of interest, a metadata line, a few tiles), and
/// each adds at most two runs.
pub const MAX_RUNS: usize = 16;

/// A run of units with the same [`Lines`]: from `start` to the next run's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    start: u64,
    lines: Lines,
}

/// What the CPU cache may hold, per range of a buffer's units.
///
/// # Invariants
///
/// `runs[..len]` start at 0 and strictly increase, all below `units`;
/// neighbours differ, and `1 <= len <= MAX_RUNS` between operations (an
/// operation may split two more runs before it merges back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extents {
    runs: [Run; MAX_RUNS + 2],
    len: usize,
    units: u64,
}

impl Extents {
    /// `units` (at least one) that all hold `lines`.
    pub fn new(units: u64, lines: Lines) -> Self {
        let mut runs = [Run {
            start: 0,
            lines: Lines::CLEAN,
        }; MAX_RUNS + 2];
        runs[0].lines = lines;
        // INVARIANT: One run from 0.
        Self {
            runs,
            len: 1,
            units: units.max(1),
        }
    }

    /// All units.
    pub fn whole(&self) -> Range {
        Range::new(0, self.units)
    }

    /// The runs, each with the range it covers.
    pub fn runs(&self) -> impl Iterator<Item = (Range, Lines)> + '_ {
        (0..self.len).map(move |i| {
            (
                Range::new(self.runs[i].start, self.end_of(i)),
                self.runs[i].lines,
            )
        })
    }

    /// What any unit of `range` may hold.
    pub fn lines_in(&self, range: Range) -> Lines {
        self.runs()
            .filter(|(r, _)| !r.intersect(range).is_empty())
            .fold(Lines::CLEAN, |acc, (_, lines)| acc.union(lines))
    }

    fn end_of(&self, i: usize) -> u64 {
        if i + 1 < self.len {
            self.runs[i + 1].start
        } else {
            self.units
        }
    }

    /// Makes a run start at `at`, splitting the one that holds it.
    fn split_at(&mut self, at: u64) {
        if at == 0 || at >= self.units {
            return;
        }
        let i = (0..self.len)
            .rev()
            .find(|&i| self.runs[i].start <= at)
            .unwrap_or(0);
        if self.runs[i].start == at {
            return;
        }
        self.runs.copy_within(i + 1..self.len, i + 2);
        self.runs[i + 1] = Run {
            start: at,
            lines: self.runs[i].lines,
        };
        self.len += 1;
    }

    /// Applies `f` to what the units of `range` may hold.
    pub fn update(&mut self, range: Range, f: impl Fn(Lines) -> Lines) {
        let range = range.intersect(self.whole());
        if range.is_empty() {
            return;
        }
        // At most two more runs: there is room for them.
        self.split_at(range.start);
        self.split_at(range.end);
        for i in 0..self.len {
            if self.runs[i].start >= range.start && self.end_of(i) <= range.end {
                self.runs[i].lines = f(self.runs[i].lines);
            }
        }
        self.coalesce();
        while self.len > MAX_RUNS {
            self.merge_shortest();
        }
    }

    /// Joins neighbours that hold the same.
    fn coalesce(&mut self) {
        let mut kept = 1;
        for i in 1..self.len {
            if self.runs[i].lines != self.runs[kept - 1].lines {
                self.runs[kept] = self.runs[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Merges the shortest run with its shorter neighbour: the merged run
    /// may hold what either may.
    fn merge_shortest(&mut self) {
        let len_of = |this: &Self, i: usize| this.end_of(i) - this.runs[i].start;
        let Some(i) = (0..self.len).min_by_key(|&i| len_of(self, i)) else {
            return;
        };
        let into_previous =
            i + 1 == self.len || (i > 0 && len_of(self, i - 1) <= len_of(self, i + 1));
        let (a, b) = if into_previous {
            (i - 1, i)
        } else {
            (i, i + 1)
        };
        self.runs[a].lines = self.runs[a].lines.union(self.runs[b].lines);
        self.runs.copy_within(b + 1..self.len, b);
        self.len -= 1;
        self.coalesce();
    }

    /// The parts of `range` whose units hold what `wanted` accepts, as
    /// spans maintained `passes` times.
    pub fn spans(&self, range: Range, passes: u32, wanted: impl Fn(Lines) -> bool) -> Spans {
        let mut spans = Spans::NONE;
        for (run, lines) in self.runs() {
            let part = run.intersect(range);
            if !part.is_empty() && wanted(lines) {
                spans.push(part);
            }
        }
        if !spans.is_empty() {
            spans.passes = passes;
        }
        spans
    }
}

/// Where to perform one kind of cache maintenance: disjoint ranges in
/// increasing order, each `passes` times (only the `Always` policy asks
/// for more than one: once per mapped attachment). Made from the runs of
/// an [`Extents`], so there are never more than [`MAX_RUNS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spans {
    items: [Range; MAX_RUNS],
    len: usize,
    passes: u32,
}

impl Default for Spans {
    fn default() -> Self {
        Spans::NONE
    }
}

impl Spans {
    /// Nowhere.
    pub const NONE: Spans = Spans {
        items: [Range::new(0, 0); MAX_RUNS],
        len: 0,
        passes: 0,
    };

    /// `range`, `passes` times.
    fn of(range: Range, passes: u32) -> Spans {
        let mut spans = Spans::NONE;
        if passes > 0 {
            spans.push(range);
            spans.passes = passes;
        }
        spans
    }

    /// Adds `range`, after all others (joined to the last if they touch).
    fn push(&mut self, range: Range) {
        if range.is_empty() {
            return;
        }
        if self.len > 0 && self.items[self.len - 1].end == range.start {
            self.items[self.len - 1].end = range.end;
        } else if self.len < MAX_RUNS {
            self.items[self.len] = range;
            self.len += 1;
        } else {
            // Unreachable: spans are only made from the runs of one
            // `Extents` (at most `MAX_RUNS`) or from one range. Were it
            // reached, widening the last span covers the units between:
            // harmless for a clean, but an invalidate there could drop
            // dirty lines — hence spans are never made any other way.
            self.items[self.len - 1].end = range.end;
        }
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range> + '_ {
        self.items[..self.len].iter().copied()
    }

    /// How many times each range is maintained (0 when there is none).
    pub fn passes(&self) -> u32 {
        self.passes
    }

    /// Units maintained in all, passes counted.
    pub fn units(&self) -> u64 {
        self.iter().map(Range::len).sum::<u64>() * u64::from(self.passes)
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The ownership state of one buffer.
///
/// # Invariants
///
/// `noncoherent_mapped` counts `Map`s minus `Unmap`s of non-coherent
/// devices, `unfenced_writers_mapped` the subset that may write and do not
/// report their writes, `fenced_writers_mapped` those that may write and
/// do; none underflows (an unbalanced `Unmap` is ignored by the counts).
/// `cpu_depth` never exceeds [`MAX_CPU_DEPTH`]
/// (a `BeginCpu` beyond it is refused, see [`Ownership::accepts`]), and
/// `open` never holds more than [`MAX_OPEN_RANGES`] brackets. Between
/// events, every unit that is `cpu_writing`, and every unit the user's
/// writable entries may reach (`user_writable`), is possibly dirty in
/// `lines`; no unit outside every open bracket is `cpu_writing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    policy: Policy,
    lines: Extents,
    /// Mapped attachments of any kind (for the `Always` policy).
    mapped: u32,
    noncoherent_mapped: u32,
    unfenced_writers_mapped: u32,
    fenced_writers_mapped: u32,
    /// Open whole-buffer brackets.
    cpu_depth: u32,
    /// Open range brackets.
    open: [Range; MAX_OPEN_RANGES],
    open_len: usize,
    /// A non-coherent device reported a write (its unmap, or its fence)
    /// since the outermost open bracket began: the brackets' begins no
    /// longer vouch for the lines. A bracket whose
    /// process died is never ended; this keeps it from excusing later
    /// faults from their invalidate for ever.
    device_wrote_in_bracket: bool,
    /// What user page-table entries allow (always `None` unless the
    /// exporter traps user access).
    user: UserAccess,
    /// Units that writable user entries may reach (a hull; empty if none).
    user_writable: Range,
    /// Units whose entries were granted for reading / writing by a fault
    /// the rules saw, since the last revocation: a fault there may map
    /// them again without telling the rules. Never more than was granted
    /// (a grant that does not touch the last one replaces it).
    granted_read: Range,
    granted_write: Range,
}

/// The deepest nesting of CPU access brackets; one more `BeginCpu` is
/// refused (the exporter returns `EBUSY`) instead of overflowing.
pub const MAX_CPU_DEPTH: u32 = u32::MAX;

/// The most range brackets open at once on one buffer; one more
/// `BeginCpuRange` is refused (`EBUSY`).
pub const MAX_OPEN_RANGES: usize = 8;

impl Ownership {
    /// A new buffer of `units` freshly zeroed units, owned by nobody.
    pub fn new(policy: Policy, units: u64) -> Self {
        Self::with_lines(policy, units, Lines::ZEROED)
    }

    /// A new buffer of `units` (at least one) whose cache lines are as
    /// `lines` says (`ZEROED` for fresh pages, `CLEAN` for pooled ones),
    /// owned by nobody.
    pub fn with_lines(policy: Policy, units: u64, lines: Lines) -> Self {
        Self {
            policy,
            lines: Extents::new(units, lines),
            mapped: 0,
            noncoherent_mapped: 0,
            unfenced_writers_mapped: 0,
            fenced_writers_mapped: 0,
            cpu_depth: 0,
            open: [Range::default(); MAX_OPEN_RANGES],
            open_len: 0,
            device_wrote_in_bracket: false,
            user: UserAccess::None,
            user_writable: Range::default(),
            granted_read: Range::default(),
            granted_write: Range::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// What the CPU cache may hold for any unit of the buffer.
    pub fn lines(&self) -> Lines {
        self.lines.lines_in(self.lines.whole())
    }

    /// What the CPU cache may hold, per range.
    pub fn extents(&self) -> &Extents {
        &self.lines
    }

    /// All units of the buffer.
    pub fn whole(&self) -> Range {
        self.lines.whole()
    }

    /// Number of mapped attachments.
    pub fn mapped(&self) -> u32 {
        self.mapped
    }

    /// Depth of open whole-buffer CPU access brackets.
    pub fn cpu_depth(&self) -> u32 {
        self.cpu_depth
    }

    /// Open range brackets.
    pub fn open_ranges(&self) -> impl Iterator<Item = Range> + '_ {
        self.open[..self.open_len].iter().copied()
    }

    /// What user page-table entries allow now.
    pub fn user_access(&self) -> UserAccess {
        self.user
    }

    /// Whether `event` can be applied: a `BeginCpu` beyond
    /// [`MAX_CPU_DEPTH`] cannot, nor a `BeginCpuRange` beyond
    /// [`MAX_OPEN_RANGES`], nor a range event whose range is empty or
    /// reaches past the buffer (the caller must refuse them).
    pub fn accepts(&self, event: Event) -> bool {
        let fits = |range: Range| !range.is_empty() && range.end <= self.lines.units;
        match event {
            Event::BeginCpu(_) => self.cpu_depth < MAX_CPU_DEPTH,
            Event::BeginCpuRange(_, range) => fits(range) && self.open_len < MAX_OPEN_RANGES,
            Event::EndCpuRange(_, range) | Event::UserFaultRange(_, range) => fits(range),
            _ => true,
        }
    }

    /// Applies `event` and returns the maintenance it needs. An event that
    /// is not [accepted](Self::accepts) changes nothing.
    pub fn on(&mut self, event: Event) -> Decision {
        if !self.accepts(event) {
            return Decision::default();
        }
        let mut decision = match self.policy {
            Policy::Tracked => self.tracked(event),
            Policy::Always => self.always(event),
            Policy::Uncached => self.uncached(event),
        };
        decision.revoke = self.user != UserAccess::None && self.revokes(event, &decision);
        self.count(event);
        if decision.revoke {
            self.user = UserAccess::None;
            self.user_writable = Range::default();
            self.granted_read = Range::default();
            self.granted_write = Range::default();
        }
        // A clean does not outlast an open write bracket, or writable user
        // entries. (Write-combined writes do not dirty lines: they leave
        // them older than memory.)
        let whole = self.whole();
        let written = if self.policy == Policy::Uncached {
            Lines::stale
        } else {
            Lines::dirty
        };
        self.lines.update(whole, |lines| {
            if lines.cpu_writing {
                written(lines)
            } else {
                lines
            }
        });
        self.lines.update(self.user_writable, Lines::dirty);
        decision
    }

    /// Whether user entries must go before `decision` is carried out (see
    /// "User space that skips SYNC"). Called before `count`.
    fn revokes(&self, event: Event, decision: &Decision) -> bool {
        let cleans_writable = self.user == UserAccess::Write && decision.ops.clean > 0;
        match event {
            Event::Map(dev, _) => !dev.coherent,
            Event::Unmap(dev, dir) => !dev.coherent && dir.device_writes() && !dev.fenced,
            // While a fenced writer is mapped, every entry goes at the
            // end of a CPU access: its signal, in atomic context, cannot
            // revoke (it invalidates at once where entries remain).
            Event::EndCpu(_) => {
                self.cpu_depth <= 1 && (cleans_writable || self.fenced_writers_mapped > 0)
            }
            Event::EndCpuRange(..) => {
                self.cpu_depth == 0 && (cleans_writable || self.fenced_writers_mapped > 0)
            }
            _ => false,
        }
    }

    /// Updates who may access the buffer (after the decision, so that an
    /// unmapping device is still counted while deciding).
    fn count(&mut self, event: Event) {
        let stales = match event {
            Event::Unmap(dev, dir) => !dev.coherent && dir.device_writes() && !dev.fenced,
            Event::DeviceWrote(dev) => !dev.coherent,
            _ => false,
        };
        if stales && (self.cpu_depth > 0 || self.open_len > 0) {
            self.device_wrote_in_bracket = true;
        }
        match event {
            Event::Map(dev, dir) => {
                self.mapped += 1;
                if !dev.coherent {
                    self.noncoherent_mapped += 1;
                    if dir.device_writes() && !dev.fenced {
                        self.unfenced_writers_mapped += 1;
                    }
                    if dir.device_writes() && dev.fenced {
                        self.fenced_writers_mapped += 1;
                    }
                }
            }
            Event::Unmap(dev, dir) => {
                self.mapped = self.mapped.saturating_sub(1);
                if !dev.coherent {
                    self.noncoherent_mapped = self.noncoherent_mapped.saturating_sub(1);
                    if dir.device_writes() && !dev.fenced {
                        self.unfenced_writers_mapped =
                            self.unfenced_writers_mapped.saturating_sub(1);
                    }
                    if dir.device_writes() && dev.fenced {
                        self.fenced_writers_mapped = self.fenced_writers_mapped.saturating_sub(1);
                    }
                }
            }
            Event::BeginCpu(dir) => {
                self.cpu_depth += 1;
                if dir.cpu_writes() {
                    self.lines.update(self.whole(), Lines::writing);
                }
            }
            Event::BeginCpuRange(dir, range) => {
                // Room checked by `accepts`.
                self.open[self.open_len] = range;
                self.open_len += 1;
                if dir.cpu_writes() {
                    self.lines.update(range, Lines::writing);
                }
            }
            Event::UserFault(dir) => self.user_fault(dir, self.whole()),
            Event::UserFaultRange(dir, range) => self.user_fault(dir, range),
            Event::EndCpu(_) => {
                self.cpu_depth = self.cpu_depth.saturating_sub(1);
                self.stop_writing_outside_brackets();
            }
            Event::EndCpuRange(_, range) => {
                // The latest bracket of that range; none for an end without
                // a begin.
                if let Some(i) = (0..self.open_len).rev().find(|&i| self.open[i] == range) {
                    self.open.copy_within(i + 1..self.open_len, i);
                    self.open_len -= 1;
                }
                self.stop_writing_outside_brackets();
            }
            Event::DeviceWrote(_) | Event::BounceRead | Event::BounceWrote => {}
        }
    }

    /// Units that no open bracket covers any longer are not `cpu_writing`.
    fn stop_writing_outside_brackets(&mut self) {
        if self.cpu_depth > 0 {
            return;
        }
        if self.open_len == 0 {
            self.device_wrote_in_bracket = false;
        }
        let mut open = self.open;
        let open = &mut open[..self.open_len];
        open.sort_unstable_by_key(|range| range.start);
        let stop = |lines: Lines| Lines {
            cpu_writing: false,
            ..lines
        };
        let mut from = 0;
        for range in open.iter() {
            self.lines.update(Range::new(from, range.start), stop);
            from = from.max(range.end);
        }
        self.lines.update(Range::new(from, self.lines.units), stop);
    }

    /// Records the entries a user fault maps.
    fn user_fault(&mut self, dir: Direction, range: Range) {
        self.user = self.user.max(UserAccess::of(dir));
        let grant = |granted: Range| {
            let joined = granted.hull(range);
            if joined.len() <= granted.len() + range.len() {
                joined
            } else {
                range
            }
        };
        self.granted_read = grant(self.granted_read);
        if dir.cpu_writes() {
            self.user_writable = self.user_writable.hull(range);
            self.granted_write = grant(self.granted_write);
        }
    }

    /// For a user fault on `unit` (a write if `write`) whose page has no
    /// entry allowing it: the units its entries may be mapped for without
    /// telling the rules, if a fault they saw granted them.
    pub fn granted(&self, write: bool, unit: u64) -> Option<Range> {
        let granted = if write {
            self.granted_write
        } else {
            self.granted_read
        };
        (granted.start <= unit && unit < granted.end).then_some(granted)
    }

    /// For a user fault on `unit` that the rules must see: the range of
    /// the latest open range bracket that holds it, outside any
    /// whole-buffer bracket (the fault is then [`Event::UserFaultRange`]
    /// and maps only that range), else `None` ([`Event::UserFault`], the
    /// whole buffer).
    pub fn fault_range(&self, unit: u64) -> Option<Range> {
        if self.cpu_depth > 0 {
            return None;
        }
        self.open_ranges()
            .filter(|r| r.start <= unit && unit < r.end)
            .last()
    }

    fn tracked(&mut self, event: Event) -> Decision {
        let whole = self.whole();
        // A coherent importer's snoop may be served by any line the CPU
        // holds, clean ones too: none may be older than memory while one is
        // mapped.
        let coherent_mapped = self.mapped > self.noncoherent_mapped;
        match event {
            Event::Map(dev, _) if dev.coherent => match self.invalidate_if_stale(whole, false) {
                decision if decision.ops.is_empty() => skip(Skip::Coherent),
                decision => decision,
            },
            Event::Map(_, _) => self.clean_if_dirty(whole),
            Event::Unmap(dev, _) if dev.coherent => skip(Skip::Coherent),
            // A fenced device reported its writes already.
            Event::Unmap(dev, dir) if dir.device_writes() && !dev.fenced => {
                self.lines.update(whole, Lines::stale);
                if coherent_mapped {
                    return self.invalidate_if_stale(whole, false);
                }
                skip(Skip::DeferredToCpuAccess)
            }
            Event::Unmap(_, _) => Decision::default(),
            Event::BeginCpu(dir) => self.begin(dir, whole),
            Event::BeginCpuRange(dir, range) => self.begin(dir, range),
            Event::BounceRead => self.invalidate_if_stale(whole, false),
            Event::UserFault(dir) => self.fault(dir, whole),
            Event::UserFaultRange(dir, range) => self.fault(dir, range),
            Event::BounceWrote => {
                self.lines.update(whole, Lines::dirty);
                if self.noncoherent_mapped > 0 {
                    self.clean_if_dirty(whole)
                } else {
                    skip(Skip::DeferredToMap)
                }
            }
            Event::EndCpu(dir) => self.end(dir, whole),
            Event::EndCpuRange(dir, range) => self.end(dir, range),
            Event::DeviceWrote(dev) => {
                if !dev.coherent {
                    self.lines.update(whole, Lines::stale);
                    // The exporter applies a signal from the fence's
                    // callback, and nothing of the reader's comes after
                    // it: whoever reads through the cache meanwhile (a
                    // coherent importer's snoops, the user's entries) must
                    // find no line older than memory, now.
                    if coherent_mapped || self.user != UserAccess::None {
                        return self.invalidate_if_stale(whole, false);
                    }
                }
                Decision::default()
            }
        }
    }

    fn begin(&mut self, dir: Direction, range: Range) -> Decision {
        let decision = self.invalidate_if_stale(range, false);
        if dir.cpu_writes() {
            self.lines.update(range, Lines::dirty);
        }
        decision
    }

    fn fault(&mut self, dir: Direction, range: Range) -> Decision {
        // Inside a whole-buffer bracket its begin already did what an
        // access needs (devices do not access the buffer meanwhile); so did
        // a range bracket's begin for its range. Unless a device reported
        // a write since: then the bracket may be one whose process died.
        let vouched = !self.device_wrote_in_bracket;
        let decision = if self.cpu_depth > 0 && vouched {
            Decision::default()
        } else {
            self.invalidate_if_stale(range, vouched)
        };
        if dir.cpu_writes() {
            self.lines.update(range, Lines::dirty);
        }
        decision
    }

    fn end(&mut self, dir: Direction, range: Range) -> Decision {
        if dir.cpu_writes() {
            self.lines.update(range, Lines::dirty);
        }
        if self.noncoherent_mapped > 0 {
            self.clean_if_dirty(range)
        } else if self.lines.lines_in(range).maybe_dirty {
            skip(Skip::DeferredToMap)
        } else {
            Decision::default()
        }
    }

    /// Before the CPU reads `range`: drop lines that may predate a device
    /// write (not those of open range brackets if `skip_open`: their
    /// begins did).
    fn invalidate_if_stale(&mut self, range: Range, skip_open: bool) -> Decision {
        // What the decision works on: the lines, plus what the rules know
        // besides them.
        let mut view = self.lines;
        if self.unfenced_writers_mapped > 0 {
            view.update(range, Lines::stale);
        }
        let whole = self.whole();
        for i in 0..self.open_len {
            let open = self.open[i];
            if skip_open {
                view.update(open, |lines| Lines {
                    maybe_stale: false,
                    ..lines
                });
            }
            // Never drop dirty data: clean first where there may be any.
            // Inside an open bracket there may be: its end may yet reveal a
            // write direction.
            view.update(open, Lines::dirty);
        }
        // (Units that writable user entries reach are dirty already.)
        if self.cpu_depth > 0 {
            view.update(whole, Lines::dirty);
        }
        let invalidate = view.spans(range, 1, |lines| lines.maybe_stale);
        if invalidate.is_empty() {
            return if self.mapped > 0 {
                skip(Skip::NotStale)
            } else {
                Decision::default()
            };
        }
        let clean = view.spans(range, 1, |lines| lines.maybe_stale && lines.maybe_dirty);
        for span in invalidate.iter() {
            self.lines.update(span, |lines| Lines {
                maybe_dirty: false,
                maybe_stale: false,
                ..lines
            });
        }
        act(clean, invalidate)
    }

    fn clean_if_dirty(&mut self, range: Range) -> Decision {
        let clean = self.lines.spans(range, 1, |lines| lines.maybe_dirty);
        if clean.is_empty() {
            return skip(Skip::NotDirty);
        }
        for span in clean.iter() {
            self.lines.update(span, |lines| Lines {
                maybe_dirty: false,
                ..lines
            });
        }
        act(clean, Spans::NONE)
    }

    /// The upstream system heap: `dma_map_sgtable` cleans,
    /// `dma_unmap_sgtable` invalidates unless `DMA_TO_DEVICE`, and CPU
    /// brackets sync every mapped attachment (a range bracket counts as a
    /// whole-buffer one: the exporter syncs whole attachments under this
    /// policy). Coherent devices cost nothing
    /// there too (the DMA API skips them), but the per-attachment loop
    /// counts only non-coherent mappings for the same reason. Mappings that
    /// bounce sync themselves there as well: their events cost nothing here.
    fn always(&mut self, event: Event) -> Decision {
        let noncoherent = self.noncoherent_mapped;
        let whole = self.whole();
        let (clean, invalidate) = match event {
            Event::Map(dev, _) if !dev.coherent => (Spans::of(whole, 1), Spans::NONE),
            Event::Unmap(dev, dir) if !dev.coherent && dir.device_writes() => {
                (Spans::NONE, Spans::of(whole, 1))
            }
            Event::BeginCpu(dir) | Event::BeginCpuRange(dir, _) if dir.device_writes() => {
                (Spans::NONE, Spans::of(whole, noncoherent))
            }
            Event::EndCpu(_) | Event::EndCpuRange(..) => {
                (Spans::of(whole, noncoherent), Spans::NONE)
            }
            _ => (Spans::NONE, Spans::NONE),
        };
        // Keep `lines` meaningful for statistics: after any clean nothing
        // there is dirty, after any invalidate nothing there is stale.
        for span in clean.iter() {
            self.lines.update(span, |lines| Lines {
                maybe_dirty: false,
                ..lines
            });
        }
        for span in invalidate.iter() {
            self.lines.update(span, |lines| Lines {
                maybe_stale: false,
                ..lines
            });
        }
        match event {
            Event::BeginCpu(dir) | Event::EndCpu(dir) if dir.cpu_writes() => {
                self.lines.update(whole, Lines::dirty)
            }
            Event::BeginCpuRange(dir, range) | Event::EndCpuRange(dir, range)
                if dir.cpu_writes() =>
            {
                self.lines.update(range, Lines::dirty)
            }
            Event::Unmap(dev, dir)
                if !dev.coherent && dir.device_writes() && invalidate.is_empty() =>
            {
                self.lines.update(whole, Lines::stale)
            }
            _ => {}
        }
        act(clean, invalidate)
    }
}

impl Ownership {
    /// Policy `Uncached` (see "Uncached buffers"): the CPU writes around
    /// the cache, which may still hold lines of the buffer (speculative
    /// fills through the cacheable kernel alias), so after CPU or device
    /// writes those lines may be older than memory (`maybe_stale`). Only
    /// what reads through the cache needs them gone: a coherent importer,
    /// which snoops, and bounce copies; a bounce copy into the buffer
    /// leaves dirty lines, written back and dropped at once.
    fn uncached(&mut self, event: Event) -> Decision {
        let whole = self.whole();
        let coherent_mapped = self.mapped > self.noncoherent_mapped;
        match event {
            // It snoops from now on, and user space may have written around
            // the cache since anything was seen.
            Event::Map(dev, _) if dev.coherent => {
                self.lines.update(whole, Lines::stale);
                self.invalidate_if_older()
            }
            // A write reported while a coherent importer is mapped: it may
            // read it now.
            Event::Unmap(dev, dir) if !dev.coherent && dir.device_writes() && !dev.fenced => {
                self.lines.update(whole, Lines::stale);
                self.invalidate_if(coherent_mapped)
            }
            Event::DeviceWrote(dev) if !dev.coherent => {
                self.lines.update(whole, Lines::stale);
                self.invalidate_if(coherent_mapped)
            }
            Event::BeginCpu(dir) | Event::BeginCpuRange(dir, _) => {
                self.written(dir, event);
                Decision::default()
            }
            // A coherent importer may read what the CPU wrote.
            Event::EndCpu(dir) | Event::EndCpuRange(dir, _) => {
                self.written(dir, event);
                self.invalidate_if(coherent_mapped)
            }
            // A bounce copy reads through the cache, and user space may
            // have written around it at any moment without telling anyone
            // (it skips SYNC, as uncached buffers are normally used): every
            // line may be older than memory.
            Event::BounceRead => {
                self.lines.update(whole, Lines::stale);
                self.invalidate_if_older()
            }
            // The copy into the buffer went through the cache: write it
            // back, and leave no line that a later write-combined write
            // would leave older than memory, unseen.
            Event::BounceWrote => {
                self.lines.update(whole, |lines| Lines {
                    maybe_dirty: false,
                    maybe_stale: false,
                    ..lines
                });
                act(Spans::of(whole, 1), Spans::of(whole, 1))
            }
            _ => Decision::default(),
        }
    }

    /// A CPU access in `dir` (a bracket's begin or end) may have written
    /// around the cache: its lines may be older than memory.
    fn written(&mut self, dir: Direction, event: Event) {
        let range = match event {
            Event::BeginCpuRange(_, range) | Event::EndCpuRange(_, range) => range,
            _ => self.whole(),
        };
        if dir.cpu_writes() {
            self.lines.update(range, Lines::stale);
        }
    }

    /// Drops lines that may be older than memory, if `wanted`.
    fn invalidate_if(&mut self, wanted: bool) -> Decision {
        if wanted {
            self.invalidate_if_older()
        } else {
            Decision::default()
        }
    }

    /// Drops the lines that may be older than memory (none is dirty: the
    /// CPU writes around the cache, and bounce copies are cleaned at once).
    fn invalidate_if_older(&mut self) -> Decision {
        let whole = self.whole();
        // A mapped writer that reports nothing may have written anywhere.
        if self.unfenced_writers_mapped > 0 {
            self.lines.update(whole, Lines::stale);
        }
        let invalidate = self.lines.spans(whole, 1, |lines| lines.maybe_stale);
        for span in invalidate.iter() {
            self.lines.update(span, |lines| Lines {
                maybe_stale: false,
                ..lines
            });
        }
        act(Spans::NONE, invalidate)
    }
}

fn act(clean: Spans, invalidate: Spans) -> Decision {
    Decision {
        ops: CacheOps {
            clean: clean.passes(),
            invalidate: invalidate.passes(),
        },
        clean,
        invalidate,
        ..Decision::default()
    }
}

fn skip(reason: Skip) -> Decision {
    Decision {
        skipped: Some(reason),
        ..Decision::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random updates of a large buffer against a per-unit record: the
    /// runs never claim less than the record (a merge may only add), equal
    /// it exactly until the first merge, and never exceed `MAX_RUNS`.
    #[test]
    fn extents_never_forget_what_a_unit_may_hold() {
        const UNITS: u64 = 2048;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut extents = Extents::new(UNITS, Lines::CLEAN);
            let mut record = vec![Lines::CLEAN; UNITS as usize];
            let mut merged = false;
            for _ in 0..60 {
                let start = next(UNITS);
                let range = Range::new(start, start + 1 + next(UNITS - start));
                let f: fn(Lines) -> Lines = match next(4) {
                    0 => Lines::dirty,
                    1 => Lines::stale,
                    2 => |l| Lines {
                        maybe_dirty: false,
                        ..l
                    },
                    _ => |l| Lines {
                        maybe_stale: false,
                        ..l
                    },
                };
                let runs_before = extents.runs().count();
                extents.update(range, f);
                for unit in range.start..range.end {
                    record[unit as usize] = f(record[unit as usize]);
                }
                // Two splits more than there is room for: a merge.
                merged |= runs_before + 2 > MAX_RUNS;
                assert!(extents.runs().count() <= MAX_RUNS);
                for (run, lines) in extents.runs() {
                    for unit in run.start..run.end {
                        let want = record[unit as usize];
                        assert_eq!(lines.union(want), lines, "unit {unit} forgot {want:?}");
                        if !merged {
                            assert_eq!(lines, want, "unit {unit}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn begin_cpu_at_the_deepest_nesting_is_refused_and_changes_nothing() {
        let mut own = Ownership::new(Policy::Tracked, 1);
        own.cpu_depth = MAX_CPU_DEPTH - 1;
        assert!(own.accepts(Event::BeginCpu(Direction::ToDevice)));
        own.on(Event::BeginCpu(Direction::ToDevice));
        assert_eq!(own.cpu_depth(), MAX_CPU_DEPTH);
        let before = own;
        assert!(!own.accepts(Event::BeginCpu(Direction::FromDevice)));
        assert_eq!(
            own.on(Event::BeginCpu(Direction::FromDevice)),
            Decision::default()
        );
        assert_eq!(own, before);
        // Ends still work, and another begin is accepted again.
        own.on(Event::EndCpu(Direction::ToDevice));
        assert!(own.accepts(Event::BeginCpu(Direction::FromDevice)));
    }
}

#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[::kernel::macros::kunit_tests(rust_dmabuf_heap_ownership)]
mod tests {
    use super::*;

    /// The rules, compiled for the kernel, decide as on the host.
    #[test]
    fn ownership_rules_run_in_the_kernel() {
        use Direction::*;
        let nc = Device {
            coherent: false,
            fenced: false,
        };
        let mut own = Ownership::new(Policy::Tracked, 2048);
        let script = [
            (Event::Map(nc, FromDevice), (1, 0)), // zeroed pages cleaned
            (Event::Unmap(nc, FromDevice), (0, 0)),
            (Event::Map(nc, ToDevice), (0, 0)), // hand-over: free
            (Event::Unmap(nc, ToDevice), (0, 0)),
            (Event::BeginCpu(FromDevice), (0, 1)), // camera data: invalidate
            (Event::EndCpu(FromDevice), (0, 0)),
            (Event::BeginCpu(FromDevice), (0, 0)), // still CPU-owned: free
            (Event::EndCpu(ToDevice), (0, 0)),     // dirty, nobody mapped
            (Event::Map(nc, ToDevice), (1, 0)),    // the clean happens now
        ];
        for (event, (clean, invalidate)) in script {
            assert_eq!(own.on(event).ops, CacheOps { clean, invalidate });
        }
    }
}
