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
//! speculatively at any time. Three things can go wrong (see
//! `shared/docs/ownership-model.md`):
//!
//! 1. the device reads memory the CPU has not written back yet;
//! 2. dirty CPU lines are evicted on top of what the device wrote;
//! 3. the CPU reads (or partially writes) lines that predate a device write.
//!
//! A *clean* (write back dirty lines) cures 1 and 2; an *invalidate* (drop
//! lines) cures 3. Coherent devices snoop the CPU cache and need neither.
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
//! | `Map` by a coherent device | none | it snoops the CPU cache |
//! | `Unmap` by a non-coherent, unfenced writer | none; lines become possibly stale | the invalidate waits for the next CPU access, so device-to-device hand-over costs nothing |
//! | `BeginCpu` (any direction) | invalidate, if lines may be stale; clean first if they may also be dirty | 3; an invalidate must never drop dirty data; a CPU *write* needs it too (partial lines) |
//! | `EndCpu`, non-coherent device mapped | clean, if lines may be dirty | 1: a long-lived mapping sees the CPU's writes |
//! | `EndCpu`, none mapped | none | the clean waits for the next map; a CPU that owns a clean buffer pays nothing |
//! | `DeviceWrote` (a fence signalled) | none; lines become possibly stale | 3, found out precisely instead of assumed |
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
//! | `UserFault` | no (it maps them) | outside a bracket: invalidate, if lines may be stale, as `BeginCpu`; inside one: nothing (its begin did it); writable entries keep lines possibly dirty |
//! | `Map` by a non-coherent device | yes, if any | the next user access must fault: a write becomes dirty lines this map's clean missed, a read may need an invalidate |
//! | lines become possibly stale (`Unmap` of an unfenced non-coherent writer, `DeviceWrote`) | yes, if any | the next user read must fault and invalidate |
//! | outermost `EndCpu` that cleans, entries writable | yes | so that the clean stays valid: a later write outside a bracket faults instead of dirtying lines unseen |
//!
//! A decision that revokes must revoke *before* its maintenance, so that
//! no user write slips in between a clean and the revocation. The
//! guarantee for user space that skips brackets is the system heap's: a
//! device mapped after a CPU write sees it, and a CPU read after a device
//! is unmapped (or its write fence has been seen) sees the device's data.
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
}

/// Cache maintenance to perform, in this order: clean, then invalidate.
///
/// Each count is a number of passes over the whole buffer (or range); only
/// the `Always` policy ever asks for more than one.
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
}

impl Policy {
    /// The policy's name, as the `sync_policy` module parameter spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Tracked => "tracked",
            Policy::Always => "always",
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
}

impl Lines {
    /// Freshly zeroed pages: the zeroes were written through the cache.
    pub const ZEROED: Lines = Lines {
        maybe_dirty: true,
        maybe_stale: false,
    };

    /// Zeroed pages that were cleaned since (the page pool's): memory holds
    /// the zeroes, any line the cache holds is clean and equal to memory.
    pub const CLEAN: Lines = Lines {
        maybe_dirty: false,
        maybe_stale: false,
    };
}

/// The ownership state of one buffer.
///
/// # Invariants
///
/// `noncoherent_mapped` counts `Map`s minus `Unmap`s of non-coherent
/// devices, and `unfenced_writers_mapped` the subset that may write and do
/// not report their writes; neither underflows (an unbalanced `Unmap` is
/// ignored by the counts). `cpu_depth` never exceeds [`MAX_CPU_DEPTH`]
/// (a `BeginCpu` beyond it is refused, see [`Ownership::accepts`]). While
/// `user` is [`UserAccess::Write`], `lines.maybe_dirty` is true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    policy: Policy,
    lines: Lines,
    /// Mapped attachments of any kind (for the `Always` policy).
    mapped: u32,
    noncoherent_mapped: u32,
    unfenced_writers_mapped: u32,
    cpu_depth: u32,
    /// A bracket with a write direction is open: the CPU may dirty lines at
    /// any moment, so no clean makes them clean for good until it closes.
    cpu_writing: bool,
    /// What user page-table entries allow (always `None` unless the
    /// exporter traps user access).
    user: UserAccess,
}

/// The deepest nesting of CPU access brackets; one more `BeginCpu` is
/// refused (the exporter returns `EBUSY`) instead of overflowing.
pub const MAX_CPU_DEPTH: u32 = u32::MAX;

impl Ownership {
    /// A new buffer of freshly zeroed pages, owned by nobody.
    pub fn new(policy: Policy) -> Self {
        Self::with_lines(policy, Lines::ZEROED)
    }

    /// A new buffer whose cache lines are as `lines` says (`ZEROED` for
    /// fresh pages, `CLEAN` for pooled ones), owned by nobody.
    pub fn with_lines(policy: Policy, lines: Lines) -> Self {
        Self {
            policy,
            lines,
            mapped: 0,
            noncoherent_mapped: 0,
            unfenced_writers_mapped: 0,
            cpu_depth: 0,
            cpu_writing: false,
            user: UserAccess::None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// What the CPU cache may hold.
    pub fn lines(&self) -> Lines {
        self.lines
    }

    /// Number of mapped attachments.
    pub fn mapped(&self) -> u32 {
        self.mapped
    }

    /// Depth of open CPU access brackets.
    pub fn cpu_depth(&self) -> u32 {
        self.cpu_depth
    }

    /// What user page-table entries allow now.
    pub fn user_access(&self) -> UserAccess {
        self.user
    }

    /// Whether `event` can be applied: a `BeginCpu` beyond
    /// [`MAX_CPU_DEPTH`] cannot (the caller must refuse it).
    pub fn accepts(&self, event: Event) -> bool {
        !matches!(event, Event::BeginCpu(_)) || self.cpu_depth < MAX_CPU_DEPTH
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
        };
        decision.revoke = self.user != UserAccess::None && self.revokes(event, &decision);
        self.count(event);
        if decision.revoke {
            self.user = UserAccess::None;
        }
        // A clean does not outlast an open write bracket, or writable user
        // entries.
        if self.cpu_writing || self.user == UserAccess::Write {
            self.lines.maybe_dirty = true;
        }
        decision
    }

    /// Whether user entries must go before `decision` is carried out (see
    /// "User space that skips SYNC"). Called before `count`.
    fn revokes(&self, event: Event, decision: &Decision) -> bool {
        match event {
            Event::Map(dev, _) => !dev.coherent,
            Event::Unmap(dev, dir) => !dev.coherent && dir.device_writes() && !dev.fenced,
            Event::DeviceWrote(dev) => !dev.coherent,
            Event::EndCpu(_) => {
                self.cpu_depth <= 1 && self.user == UserAccess::Write && decision.ops.clean > 0
            }
            _ => false,
        }
    }

    /// Updates who may access the buffer (after the decision, so that an
    /// unmapping device is still counted while deciding).
    fn count(&mut self, event: Event) {
        match event {
            Event::Map(dev, dir) => {
                self.mapped += 1;
                if !dev.coherent {
                    self.noncoherent_mapped += 1;
                    if dir.device_writes() && !dev.fenced {
                        self.unfenced_writers_mapped += 1;
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
                }
            }
            Event::BeginCpu(dir) => {
                self.cpu_depth += 1;
                self.cpu_writing |= dir.cpu_writes();
            }
            Event::UserFault(dir) => self.user = self.user.max(UserAccess::of(dir)),
            Event::EndCpu(_) => {
                self.cpu_depth = self.cpu_depth.saturating_sub(1);
                if self.cpu_depth == 0 {
                    self.cpu_writing = false;
                }
            }
            Event::DeviceWrote(_) | Event::BounceRead | Event::BounceWrote => {}
        }
    }

    fn tracked(&mut self, event: Event) -> Decision {
        match event {
            Event::Map(dev, _) if dev.coherent => skip(Skip::Coherent),
            Event::Map(_, _) => self.clean_if_dirty(),
            Event::Unmap(dev, _) if dev.coherent => skip(Skip::Coherent),
            // A fenced device reported its writes already.
            Event::Unmap(dev, dir) if dir.device_writes() && !dev.fenced => {
                self.lines.maybe_stale = true;
                skip(Skip::DeferredToCpuAccess)
            }
            Event::Unmap(_, _) => Decision::default(),
            Event::BeginCpu(dir) => {
                let decision = self.invalidate_if_stale();
                if dir.cpu_writes() {
                    self.lines.maybe_dirty = true;
                }
                decision
            }
            Event::BounceRead => self.invalidate_if_stale(),
            Event::UserFault(dir) => {
                // Inside a bracket its begin already did what an access
                // needs (devices do not access the buffer meanwhile).
                let decision = if self.cpu_depth > 0 {
                    Decision::default()
                } else {
                    self.invalidate_if_stale()
                };
                if dir.cpu_writes() {
                    self.lines.maybe_dirty = true;
                }
                decision
            }
            Event::BounceWrote => {
                self.lines.maybe_dirty = true;
                if self.noncoherent_mapped > 0 {
                    self.clean_if_dirty()
                } else {
                    skip(Skip::DeferredToMap)
                }
            }
            Event::EndCpu(dir) => {
                if dir.cpu_writes() {
                    self.lines.maybe_dirty = true;
                }
                if self.noncoherent_mapped > 0 {
                    self.clean_if_dirty()
                } else if self.lines.maybe_dirty {
                    skip(Skip::DeferredToMap)
                } else {
                    Decision::default()
                }
            }
            Event::DeviceWrote(dev) => {
                if !dev.coherent {
                    self.lines.maybe_stale = true;
                }
                Decision::default()
            }
        }
    }

    /// Before the CPU reads: drop lines that may predate a device write.
    fn invalidate_if_stale(&mut self) -> Decision {
        let stale = self.lines.maybe_stale || self.unfenced_writers_mapped > 0;
        if stale {
            // Never drop dirty data: clean first if there may be any. Inside
            // an open bracket there may be: its end may yet reveal a write
            // direction.
            let clean = u32::from(
                self.lines.maybe_dirty || self.cpu_depth > 0 || self.user == UserAccess::Write,
            );
            self.lines = Lines {
                maybe_dirty: false,
                maybe_stale: false,
            };
            act(CacheOps {
                clean,
                invalidate: 1,
            })
        } else if self.mapped > 0 {
            skip(Skip::NotStale)
        } else {
            Decision::default()
        }
    }

    fn clean_if_dirty(&mut self) -> Decision {
        if self.lines.maybe_dirty {
            self.lines.maybe_dirty = false;
            act(CacheOps {
                clean: 1,
                invalidate: 0,
            })
        } else {
            skip(Skip::NotDirty)
        }
    }

    /// The upstream system heap: `dma_map_sgtable` cleans,
    /// `dma_unmap_sgtable` invalidates unless `DMA_TO_DEVICE`, and CPU
    /// brackets sync every mapped attachment. Coherent devices cost nothing
    /// there too (the DMA API skips them), but the per-attachment loop
    /// counts only non-coherent mappings for the same reason. Mappings that
    /// bounce sync themselves there as well: their events cost nothing here.
    fn always(&mut self, event: Event) -> Decision {
        let noncoherent = self.noncoherent_mapped;
        let ops = match event {
            Event::Map(dev, _) if !dev.coherent => CacheOps {
                clean: 1,
                invalidate: 0,
            },
            Event::Unmap(dev, dir) if !dev.coherent && dir.device_writes() => CacheOps {
                clean: 0,
                invalidate: 1,
            },
            Event::BeginCpu(dir) if dir.device_writes() => CacheOps {
                clean: 0,
                invalidate: noncoherent,
            },
            Event::EndCpu(_) => CacheOps {
                clean: noncoherent,
                invalidate: 0,
            },
            _ => CacheOps::NONE,
        };
        // Keep `lines` meaningful for statistics: after any clean nothing is
        // dirty, after any invalidate nothing is stale.
        if ops.clean > 0 {
            self.lines.maybe_dirty = false;
        }
        if ops.invalidate > 0 {
            self.lines.maybe_stale = false;
        }
        match event {
            Event::BeginCpu(dir) | Event::EndCpu(dir) if dir.cpu_writes() => {
                self.lines.maybe_dirty = true
            }
            Event::Unmap(dev, dir)
                if !dev.coherent && dir.device_writes() && ops.invalidate == 0 =>
            {
                self.lines.maybe_stale = true
            }
            _ => {}
        }
        act(ops)
    }
}

fn act(ops: CacheOps) -> Decision {
    Decision {
        ops,
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

    #[test]
    fn begin_cpu_at_the_deepest_nesting_is_refused_and_changes_nothing() {
        let mut own = Ownership::new(Policy::Tracked);
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
