// SPDX-License-Identifier: GPL-2.0

//! A heap buffer: its chunks, the importers attached to it and its kernel
//! mapping. Every operation the dma-buf core can ask for is a safe method
//! here ([`Exporter`]); `rust/kernel/dma_buf.rs` translates pointers and
//! errors. No `unsafe` in this file.
//!
//! # Lock order
//!
//! 1. a control file's range list (`control.rs`, `OpenFile::ranges`);
//! 2. the buffer lock (`HeapBuffer::state`, a mutex), which the dma-buf
//!    core's calls take with the reservation lock held (`map`, `unmap`) or
//!    not (CPU access, faults with the mmap or vma lock held);
//! 3. an attachment's lock (`Attachment::mapping`, a mutex);
//! 4. the rules' spinlock (`coherence.rs`, IRQ-safe), also taken by fence
//!    callbacks under a fence's lock.
//!
//! The page pool's spinlock (`pool.rs`) is taken with none of them held;
//! fences are waited for with none held.

use crate::{
    cache_ops::{direction, MaintainedTable, MapSync},
    coherence::{Coherence, FENCED_WRITER},
    context::HeapContext,
    dma_buf::{Exporter, ExporterTables, Fault, MappedTable, Mmap, UserMappings},
    dma_mapping::{self, Bounce, DeviceTable},
    dma_resv::Resv,
    fence_hooks::{self, FenceHooks, Reservation, Watch, WriteFences},
    glue,
    mm_pfnmap::{self, VmFault, HUGE_PAGES},
    ownership::{self, Decision, Device, Event, Lines, Ownership, Policy, Range},
    pages::{PageChunk, PAGE_SIZE},
    pool::Memory,
    sg_table::BlockTable,
    stats::CacheStats,
    vmap::{KernelAddress, KernelMapping},
};
use core::{cell::Cell, sync::atomic::Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    debugfs,
    device::Device as DmaDevice,
    dma::DataDirection,
    new_mutex,
    prelude::*,
    sync::{Arc, ArcBorrow, Mutex},
};

/// A buffer's debugfs file (`debugfs.rs` writes it): it keeps the buffer
/// alive until removed, which the buffer's `release` does.
pub(crate) type BufferFile = Pin<KBox<debugfs::File<Arc<HeapBuffer>>>>;

/// One importer's view of the buffer, from `attach` to `detach`: the
/// dma-buf core keeps one reference (in the attachment), the buffer's list
/// another.
#[pin_data]
pub(crate) struct Attachment {
    /// The device snoops the CPU caches.
    coherent: bool,
    /// Why the device's mappings may bounce through swiotlb, if they may.
    /// Such an attachment syncs its own mapping (the DMA API copies its data
    /// only then), and its copies count as CPU accesses (`BounceRead`,
    /// `BounceWrote` in `ownership.rs`).
    bounce: Option<Bounce>,
    /// Taken under the buffer lock.
    #[pin]
    mapping: Mutex<AttachedTable>,
}

/// An attachment's table and what changes about it.
struct AttachedTable {
    /// A private copy of the table for the device: mapping writes device
    /// addresses into it. No entry is longer than the device can map.
    table: DeviceTable,
    /// The attachment declared its accesses with fences (see
    /// [`HeapBuffer::reserve_access`]).
    fenced: bool,
}

impl Attachment {
    /// Whether the mapping syncs itself: the device's mappings may bounce,
    /// so the DMA API must copy, in this mapping's own calls (under either
    /// policy; the ownership rules see the copies as CPU accesses).
    fn self_synced(&self) -> bool {
        self.bounce.is_some()
    }

    /// What the ownership rules need to know of the device now.
    fn device(&self, mapping: &AttachedTable) -> Device {
        Device {
            coherent: self.coherent,
            fenced: mapping.fenced,
        }
    }
}

/// The kernel mapping of the whole buffer, shared by vmap users.
struct SharedKernelMapping {
    mapping: KernelMapping,
    users: usize,
}

/// Everything that changes after allocation, under the buffer lock.
struct BufferState {
    attachments: KVec<Arc<Attachment>>,
    kernel_mapping: Option<SharedKernelMapping>,
    /// The buffer's debugfs file, once exported.
    debugfs_file: Option<BufferFile>,
    /// Fences of fenced attachments the buffer watches.
    fences: FenceHooks,
    /// The reservation object's write fences at the last CPU access.
    write_fences_seen: WriteFences,
    /// The user mappings, once user space mapped the buffer (trapped).
    user_mappings: Option<UserMappings>,
    /// An access outside a bracket has been logged for this buffer.
    reported_unbracketed: bool,
    /// Range brackets open that were begun as whole-buffer ones (see
    /// [`HeapBuffer::part`]).
    ranges_as_whole: u32,
}

/// A buffer allocated from the heap.
///
/// Field order is drop order: the attachments' tables and the fence
/// callbacks (in `state`, which hold `coherence` too) go first, then the
/// maintenance mapping's table (in `coherence`), all before the chunks
/// they point to; those go back to the pool before the heap can go.
#[pin_data]
pub(crate) struct HeapBuffer {
    len: usize,
    /// User mappings get their entries from faults (`unbracketed_cpu=trap`).
    trap_user: bool,
    /// CPU mappings are write-combined (policy `uncached`).
    write_combined: bool,
    /// The cache maintenance policy (see `ownership.rs`).
    policy: Policy,
    #[pin]
    state: Mutex<BufferState>,
    /// The ownership rules and the maintenance mapping, shared with the
    /// callbacks of the fences in `state` (which go first).
    coherence: Arc<Coherence>,
    /// The chunks.
    memory: Memory,
    /// The heap's context: its maintenance device outlives the
    /// maintenance mapping.
    heap: Arc<HeapContext>,
}

impl HeapBuffer {
    /// Allocates a zeroed buffer of `len` bytes (a non-zero multiple of the
    /// page size) from `heap`, under the heap's policy.
    pub(crate) fn new(heap: Arc<HeapContext>, len: usize) -> Result<Arc<Self>> {
        let policy = heap.sync_policy();
        Self::with_policy(heap, len, policy)
    }

    /// Allocates a buffer with an explicit cache maintenance policy
    /// (`always` whatever is asked if the maintenance device would bounce:
    /// then there is nothing to track with).
    pub(crate) fn with_policy(
        heap: Arc<HeapContext>,
        len: usize,
        policy: Policy,
    ) -> Result<Arc<Self>> {
        let policy = match heap.maintenance().bounce() {
            Some(_) => Policy::Always,
            None => policy,
        };
        // Under `always` unbracketed access is as safe as with the system
        // heap already.
        let trap_user = policy == Policy::Tracked && glue::trap_user_access();
        let memory = if policy == Policy::Uncached {
            Self::uncached_memory(&heap, len)?
        } else {
            heap.pool().allocate(len)?
        };
        let lines = if policy == Policy::Uncached {
            Lines::CLEAN
        } else if memory.is_clean() {
            // Pooled chunks were cleaned: a first map needs no clean.
            Lines::CLEAN
        } else {
            Lines::ZEROED
        };
        let ownership = Ownership::with_lines(policy, (len / PAGE_SIZE) as u64, lines);
        let coherence = Coherence::new(ownership, heap.clone())?;
        let buffer = Arc::pin_init(
            try_pin_init!(Self {
                len,
                trap_user,
                write_combined: policy == Policy::Uncached,
                policy,
                state <- new_mutex!(BufferState {
                    attachments: KVec::new(),
                    kernel_mapping: None,
                    debugfs_file: None,
                    fences: FenceHooks::new(coherence.clone()),
                    write_fences_seen: WriteFences::default(),
                    user_mappings: None,
                    reported_unbracketed: false,
                    ranges_as_whole: 0,
                }),
                coherence,
                memory,
                heap,
            }),
            GFP_KERNEL,
        )?;
        let totals = buffer.heap.totals();
        totals.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        totals
            .bytes_allocated
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok(buffer)
    }

    /// An uncached buffer's memory: zeroes in memory and no dirty line
    /// (see `ownership.rs`, "Uncached buffers"). Chunks from the pool are
    /// so already (its worker zeroed and cleaned them; clean copies left in
    /// the cache are no worse than the speculative fills the rules allow
    /// for); fresh ones, and pooled ones not cleaned yet, are flushed here,
    /// counted as the heap's `allocation_flush_bytes`.
    fn uncached_memory(heap: &HeapContext, len: usize) -> Result<Memory> {
        // The uncached heap exists only where the maintenance device does
        // not bounce (`Heap::uncached`).
        let cleaner = heap.maintenance().cleaner().ok_or(ENODEV)?;
        let pool = heap.pool();
        let flushed = Cell::new(0);
        let flush = |chunk: &PageChunk| {
            if !cleaner.flush(chunk) {
                return Err(ENOMEM);
            }
            flushed.set(flushed.get() + chunk.size() as u64);
            Ok(())
        };
        let memory = if pool.cleans() {
            pool.allocate_then(len, flush)?
        } else {
            // Cannot happen (the pool cleans on the same device), but a
            // pool that did not clean would hand out dirty lines.
            let memory = pool.allocate(len)?;
            memory.chunks().iter().try_for_each(flush)?;
            memory
        };
        heap.totals()
            .allocation_flush_bytes
            .fetch_add(flushed.get(), Ordering::Relaxed);
        Ok(memory)
    }

    /// Buffer size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether CPU mappings are write-combined (the uncached heap's).
    pub(crate) fn write_combined(&self) -> bool {
        self.write_combined
    }

    /// Whether user mappings get their entries from faults.
    pub(crate) fn traps_user_access(&self) -> bool {
        self.trap_user
    }

    /// How many 2 MiB runs of the buffer one huge user entry can map each
    /// (its chunks of order 9 or more, which are naturally aligned).
    pub(crate) fn huge_runs(&self) -> usize {
        let chunks = self.memory.chunks().iter();
        chunks
            .map(|chunk| chunk.as_ref().page_count() / HUGE_PAGES)
            .sum()
    }

    /// Makes the maintenance mapping if there is none yet and the buffer
    /// tracks ownership (`tracked` or `uncached`).
    /// Maintenance is needed only once a device may have accessed the
    /// buffer: so this runs at the first attach, and at a CPU access after
    /// a new write fence in the reservation object (its driver may never
    /// have attached); both can fail.
    /// Takes the buffer lock's guard: only one makes it.
    fn need_maintenance(&self, _locked: &mut BufferState) -> Result {
        // Under `always` the importers' own mappings sync (and a bouncing
        // maintenance device forces `always`).
        if self.policy != Policy::Always && !self.coherence.has_maintenance() {
            let table = BlockTable::new(self.memory.chunks(), usize::MAX)?;
            let table = MaintainedTable::new(table, self.heap.maintenance())?;
            self.coherence.set_maintenance(table);
        }
        Ok(())
    }

    /// Keeps the buffer's debugfs file until [`Self::take_debugfs_file`].
    pub(crate) fn set_debugfs_file(&self, file: BufferFile) {
        self.state.lock().debugfs_file = Some(file);
    }

    /// Takes the debugfs file back, to remove it before the buffer goes.
    pub(crate) fn take_debugfs_file(&self) -> Option<BufferFile> {
        self.state.lock().debugfs_file.take()
    }

    /// The ownership state and counters, read together.
    pub(crate) fn snapshot(&self) -> (Ownership, CacheStats) {
        self.coherence.snapshot()
    }

    /// Feeds one event to the ownership rules and performs what they
    /// decide: the revocation of the user entries first (so that no user
    /// write slips in between a clean and the revocation), outside the
    /// rules' spinlock, since it sleeps; then the maintenance. A fence
    /// signal in between changes neither the user entries nor the counts
    /// the revocation depends on, only which lines may be stale.
    /// The rules run twice only when the decision may need a step that
    /// cannot be taken under their spinlock: revoking (only while user
    /// entries exist) or making the maintenance mapping.
    fn decide(&self, state: &mut BufferState, event: Event) -> Decision {
        let mut revoked = false;
        if self.coherence.may_need_steps_outside() {
            let preview = self.coherence.preview(event);
            if !preview.ops.is_empty() {
                // Made already by the entry points that can fail; making
                // it here can only fail where the DMA layer cannot map.
                if self.need_maintenance(state).is_err() {
                    pr_err!("no maintenance mapping: cache maintenance skipped\n");
                }
            }
            if preview.revoke {
                self.revoke(state);
                revoked = true;
            }
        }
        let decision = self.coherence.apply(event);
        if decision.revoke && !revoked {
            // Not reached (see above); were it, late beats never.
            self.revoke(state);
        }
        decision
    }

    /// Removes every user entry of the buffer.
    fn revoke(&self, state: &BufferState) {
        if let Some(user_mappings) = &state.user_mappings {
            user_mappings.revoke();
        }
    }

    /// How an importer's mapping syncs.
    fn map_sync(&self, attachment: &Attachment) -> MapSync {
        if self.policy == Policy::Always || attachment.self_synced() {
            MapSync::Default
        } else {
            MapSync::Skip
        }
    }

    /// Adds an importer.
    pub(crate) fn attach(&self, dev: &DmaDevice) -> Result<Arc<Attachment>> {
        let table = BlockTable::new(self.memory.chunks(), dma_mapping::max_segment(dev))?;
        let mut bounce = dma_mapping::bounce(dev);
        // A device that cannot address all memory may still reach all of
        // this buffer's (a 32-bit device, a DMA32 heap's buffer): then its
        // mappings never bounce.
        let within_reach = bounce == Some(Bounce::AddressingLimited)
            && dma_mapping::reaches(dev, self.memory.phys_end());
        if within_reach {
            bounce = None;
        }
        let attachment = Arc::pin_init(
            pin_init!(Attachment {
                coherent: dma_mapping::is_coherent(dev),
                bounce,
                mapping <- new_mutex!(AttachedTable {
                    table: DeviceTable::new(dev.into(), table),
                    fenced: false,
                }),
            }),
            GFP_KERNEL,
        )?;
        let mut state = self.state.lock();
        self.need_maintenance(&mut state)?;
        state.attachments.push(attachment.clone(), GFP_KERNEL)?;
        drop(state);
        self.heap.totals().count_attachment(bounce, within_reach);
        Ok(attachment)
    }

    /// Removes an importer. A mapping the importer failed to undo is undone
    /// here (and counts as an unmap), so the DMA layer never keeps a mapping
    /// of freed memory.
    pub(crate) fn detach(&self, attachment: Arc<Attachment>) {
        let mut state = self.state.lock();
        self.unmap_locked(&mut state, &attachment);
        let index = state
            .attachments
            .iter()
            .position(|a| Arc::ptr_eq(a, &attachment));
        if let Some(index) = index {
            drop(state.attachments.remove(index));
        }
    }

    /// Maps the buffer for an importer's device; returns its table.
    pub(crate) fn map(&self, attachment: &Attachment, dir: DataDirection) -> Result<MappedTable> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut mapping = attachment.mapping.lock();
        if mapping.table.mapped().is_some() {
            return Err(EBUSY);
        }
        let (sync, self_synced) = (self.map_sync(attachment), attachment.self_synced());
        // A self-synced writer is mapped both ways: its slot then also
        // takes the CPU's writes at the end of each CPU access, which its
        // unmap would otherwise overwrite with the slot's older copy.
        let dir = if self_synced && direction(dir).device_writes() {
            DataDirection::Bidirectional
        } else {
            dir
        };
        if self_synced {
            // Mapping copies the buffer into the bounce slot.
            self.decide(state, Event::BounceRead);
        }
        mapping.table.map(dir, sync.skips())?;
        let (device, table) = (
            attachment.device(&mapping),
            MappedTable::new(mapping.table.table()),
        );
        drop(mapping);
        if !self_synced {
            self.decide(state, Event::Map(device, direction(dir)));
        }
        Ok(table)
    }

    /// Undoes [`Self::map`].
    pub(crate) fn unmap(&self, attachment: &Attachment) {
        let mut state = self.state.lock();
        self.unmap_locked(&mut state, attachment);
    }

    fn unmap_locked(&self, state: &mut BufferState, attachment: &Attachment) {
        let self_synced = attachment.self_synced();
        // Inside a CPU bracket the buffer may hold CPU writes the slot has
        // not seen: copy them in before the unmap copies the slot back.
        let writer = attachment
            .mapping
            .lock()
            .table
            .mapped()
            .is_some_and(|d| direction(d).device_writes());
        if self_synced && writer && self.cpu_inside() {
            self.bounce_out(state, Some(attachment));
        }
        let mut mapping = attachment.mapping.lock();
        let Some(dir) = mapping.table.mapped() else {
            return;
        };
        let device = attachment.device(&mapping);
        mapping.table.unmap();
        drop(mapping);
        if !self_synced {
            self.decide(state, Event::Unmap(device, direction(dir)));
        } else if direction(dir).device_writes() {
            // Unmapping copied the bounce slot into the buffer.
            self.decide(state, Event::BounceWrote);
        }
    }

    /// Reserves the declaration that an attachment accesses the buffer in
    /// direction `dir` until a fence given to `fence_hooks::commit` signals
    /// (see `include/linux/rust_dmabuf_heap.h`). From the first reservation on,
    /// the attachment counts as fenced: its writes are reported by its
    /// fences, not assumed whenever it is mapped. Allocates first: on
    /// failure nothing changed.
    pub(crate) fn reserve_access(
        &self,
        attachment: ArcBorrow<'_, Attachment>,
        dir: DataDirection,
    ) -> Result<Reservation> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let self_synced = attachment.self_synced();
        // CPU reads wait for every writer, coherent or bouncing too; only a
        // non-coherent device that accesses the pages itself leaves stale
        // lines behind.
        let writes = direction(dir).device_writes();
        let stales = writes && !attachment.coherent && !self_synced;
        let reservation = state.fences.reserve(writes, stales)?;
        let mut mapping = attachment.mapping.lock();
        let (before, mapped) = (attachment.device(&mapping), mapping.table.mapped());
        mapping.fenced = true;
        let after = attachment.device(&mapping);
        drop(mapping);
        // Under `always` fences change nothing (and no mapping changed); a
        // self-synced mapping's writes arrive through its syncs.
        if !before.fenced && self.policy != Policy::Always && !self_synced {
            if let Some(mapped) = mapped {
                // Re-enter the mapping as fenced; what it may have written
                // until now still counts.
                self.decide(state, Event::Unmap(before, direction(mapped)));
                self.decide(state, Event::Map(after, direction(mapped)));
            }
        }
        Ok(reservation)
    }

    /// Drops a reservation of [`Self::reserve_access`] that will not be
    /// committed.
    pub(crate) fn cancel_access(&self, watch: &Watch) {
        self.state.lock().fences.cancel(watch);
    }

    /// Begins (`start`) or ends CPU access in direction `dir` to bytes
    /// `offset..offset + len`; `resv` is the dma-buf's reservation object.
    pub(crate) fn sync_range(
        &self,
        start: bool,
        dir: DataDirection,
        resv: &Resv,
        offset: u64,
        len: u64,
    ) -> Result {
        let pages = self.pages_of(offset, len)?;
        if start {
            self.begin_cpu_access_in(dir, resv, Some(pages))
        } else {
            self.end_cpu_access_in(dir, Some(pages));
            Ok(())
        }
    }

    /// The pages of bytes `offset..offset + len`, widened to whole pages;
    /// `EINVAL` for no byte, or bytes past the end.
    pub(crate) fn pages_of(&self, offset: u64, len: u64) -> Result<Range> {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if len == 0 || end > self.len as u64 {
            return Err(EINVAL);
        }
        let page = PAGE_SIZE as u64;
        Ok(Range::new(offset / page, end.div_ceil(page)))
    }

    /// Whether a CPU bracket is open, of the whole buffer or of a range: the
    /// buffer may hold CPU writes that bouncing slots have not seen.
    fn cpu_inside(&self) -> bool {
        let rules = self.coherence.ownership();
        rules.cpu_depth() > 0 || rules.open_ranges().next().is_some()
    }

    /// How a CPU access to `pages` (`None`: the whole buffer) is fed to the
    /// rules: as a range, or as the whole buffer when this buffer's rules
    /// cannot keep ranges apart: under `always` (the system heap syncs
    /// whole attachments), or with a mapping that bounces (its copies are
    /// whole-buffer CPU accesses). A range END whose START was fed as the
    /// whole buffer is too.
    fn part(&self, state: &BufferState, pages: Option<Range>, begin: bool) -> Option<Range> {
        let pages = pages?;
        let whole_only =
            self.policy == Policy::Always || state.attachments.iter().any(|a| a.self_synced());
        let began_as_range = self
            .coherence
            .ownership()
            .open_ranges()
            .any(|open| open == pages);
        if whole_only && (begin || !began_as_range) {
            return None;
        }
        if !begin && !began_as_range && state.ranges_as_whole > 0 {
            return None;
        }
        Some(pages)
    }

    /// The CPU is about to access the buffer in direction `dir`. Waits first
    /// for the device work it depends on (fenced attachments' fences and
    /// the reservation object's), so that the decision sees that work
    /// complete; the wait is interruptible.
    pub(crate) fn begin_cpu_access(&self, dir: DataDirection, resv: &Resv) -> Result {
        self.begin_cpu_access_in(dir, resv, None)
    }

    /// [`Self::begin_cpu_access`] for `pages` only (`None`: all).
    pub(crate) fn begin_cpu_access_in(
        &self,
        dir: DataDirection,
        resv: &Resv,
        pages: Option<Range>,
    ) -> Result {
        let cpu_writes = direction(dir).cpu_writes();
        let pending = self.state.lock().fences.pending(cpu_writes)?;
        for fence in pending.iter() {
            fence.wait(true)?;
        }
        drop(pending);
        fence_hooks::wait_for_cpu(resv, cpu_writes)?;
        let write_fences = fence_hooks::write_fences(resv)?;
        let mut guard = self.state.lock();
        let state = &mut *guard;
        // A write fence that was not there at the previous CPU access means
        // a device wrote since, whether it signalled before this access or
        // during the wait above.
        let implicit_writer = write_fences.has_new_since(&state.write_fences_seen);
        if implicit_writer {
            // Its driver may never have attached: the invalidate below needs
            // the maintenance mapping.
            self.need_maintenance(state)?;
        }
        let part = self.part(state, pages, true);
        let event = match part {
            Some(range) => Event::BeginCpuRange(direction(dir), range),
            None => Event::BeginCpu(direction(dir)),
        };
        // Nested deeper than the rules can count, or too many ranges open:
        // refused (documented in docs/uapi.rst), before anything changes.
        let rules = self.coherence.ownership();
        let ranges_open = rules.open_ranges().count() + state.ranges_as_whole as usize;
        if !rules.accepts(event) || (pages.is_some() && ranges_open >= ownership::MAX_OPEN_RANGES) {
            return Err(EBUSY);
        }
        if pages.is_some() && part.is_none() {
            state.ranges_as_whole += 1;
        }
        if implicit_writer {
            self.decide(state, Event::DeviceWrote(FENCED_WRITER));
        }
        state.write_fences_seen = write_fences;
        if let Some(mapping) = &state.kernel_mapping {
            mapping.mapping.invalidate_aliases();
        }
        // The outermost bracket takes what bouncing devices wrote (the
        // decision below then sees those writes); a nested one must not copy
        // again over what the CPU wrote since.
        if !self.cpu_inside() && part.is_none() {
            self.bounce_in(state);
        }
        self.decide(state, event);
        if self.policy == Policy::Always {
            for attachment in state.attachments.iter().filter(|a| !a.self_synced()) {
                attachment.mapping.lock().table.sync_for_cpu(dir);
            }
        }
        Ok(())
    }

    /// The CPU finished accessing the buffer in direction `dir`.
    pub(crate) fn end_cpu_access(&self, dir: DataDirection) {
        self.end_cpu_access_in(dir, None)
    }

    /// [`Self::end_cpu_access`] for `pages` only (`None`: all).
    pub(crate) fn end_cpu_access_in(&self, dir: DataDirection, pages: Option<Range>) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if let Some(mapping) = &state.kernel_mapping {
            mapping.mapping.flush_aliases();
        }
        if let Some(range) = self.part(state, pages, false) {
            self.decide(state, Event::EndCpuRange(direction(dir), range));
            // A mapping that bounces, made since the range began, gets
            // what the CPU wrote.
            self.bounce_out(state, None);
            return;
        }
        if pages.is_some() {
            state.ranges_as_whole = state.ranges_as_whole.saturating_sub(1);
        }
        // An END without START: take what bouncing devices wrote first, or
        // the copy below would overwrite it in their slots.
        if !self.cpu_inside() {
            self.bounce_in(state);
        }
        self.decide(state, Event::EndCpu(direction(dir)));
        // The CPU may have written: copy the buffer into the slots of the
        // bouncing mappings (all of them read; writers are mapped both ways).
        self.bounce_out(state, None);
        if self.policy == Policy::Always {
            for attachment in state.attachments.iter().filter(|a| !a.self_synced()) {
                attachment.mapping.lock().table.sync_for_device(dir);
            }
        }
    }

    /// Copies the slots of the bouncing mappings whose device may write into
    /// the buffer (a sync for the CPU), and tells the rules.
    fn bounce_in(&self, state: &mut BufferState) {
        let mut copied = false;
        for attachment in state.attachments.iter().filter(|a| a.self_synced()) {
            let mapping = attachment.mapping.lock();
            match mapping.table.mapped() {
                Some(mapped) if direction(mapped).device_writes() => {
                    mapping.table.sync_for_cpu(mapped);
                    copied = true;
                }
                _ => {}
            }
        }
        if copied {
            self.decide(state, Event::BounceWrote);
        }
    }

    /// Copies the buffer into the slots of the bouncing mappings whose
    /// device reads (a sync for the device), after telling the rules: all
    /// of them, or only `only`.
    fn bounce_out(&self, state: &mut BufferState, only: Option<&Attachment>) {
        let reads = |a: &Attachment| {
            only.is_none_or(|only| core::ptr::eq(only, a))
                && a.self_synced()
                && a.mapping
                    .lock()
                    .table
                    .mapped()
                    .is_some_and(|d| direction(d).device_reads())
        };
        if !state.attachments.iter().any(|a| reads(a)) {
            return;
        }
        self.decide(state, Event::BounceRead);
        for attachment in state.attachments.iter().filter(|a| reads(a)) {
            let mapping = attachment.mapping.lock();
            if let Some(mapped) = mapping.table.mapped() {
                mapping.table.sync_for_device(mapped);
            }
        }
    }

    /// Maps the buffer into a user vma: at once, or, when the buffer traps
    /// user access, on faults.
    pub(crate) fn mmap(&self, mmap: &Mmap<'_>) -> Result {
        let vma = mmap.vma();
        let count = (vma.end() - vma.start()) / PAGE_SIZE;
        let total = self.len / PAGE_SIZE;
        let pgoff = mm_pfnmap::pgoff(vma);
        if pgoff.checked_add(count).is_none_or(|last| last > total) {
            return Err(EINVAL);
        }
        let pfn_map = if self.trap_user {
            mmap.fault_in()
        } else {
            mmap.map_now()
        };
        pfn_map.forbid_cow()?;
        if self.write_combined {
            pfn_map.write_combine();
        }
        if self.trap_user {
            // What revocations act on, learnt at the first mmap (allocation
            // stays free of it).
            let mut state = self.state.lock();
            if state.user_mappings.is_none() {
                state.user_mappings = Some(mmap.user_mappings());
            }
            Ok(())
        } else {
            pfn_map.remap(self.memory.chunks())
        }
    }

    /// A user access to buffer page `fault.page` faulted. If no fault the
    /// rules saw granted that page's entries (see `ownership.rs`), tells
    /// them (an implicit CPU access begin): for the range of an open range
    /// bracket that holds the page, or the whole buffer. Then maps what was
    /// granted: asked for a huge entry, the 2 MiB run around the page if it
    /// was granted whole, else the granted pages but other runs that can
    /// have a huge entry of their own (`mm_pfnmap::insert_pages`).
    pub(crate) fn fault(&self, fault: &Fault<'_>) -> VmFault {
        let totals = self.heap.totals();
        totals.fault_calls.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let write = fault.write;
        let dir = if write {
            ownership::Direction::ToDevice
        } else {
            ownership::Direction::FromDevice
        };
        let unit = fault.page as u64;
        let rules = self.coherence.ownership();
        let pages = match rules.granted(write, unit) {
            Some(granted) => granted,
            None => {
                let range = rules.fault_range(unit);
                let unbracketed = rules.cpu_depth() == 0 && range.is_none();
                let pages = match range {
                    Some(range) => {
                        self.decide(state, Event::UserFaultRange(dir, range));
                        range
                    }
                    None => {
                        self.decide(state, Event::UserFault(dir));
                        rules.whole()
                    }
                };
                self.coherence.record_user_fault(unbracketed);
                if unbracketed && !state.reported_unbracketed {
                    state.reported_unbracketed = true;
                    if let Some(user_mappings) = &state.user_mappings {
                        glue::report_unbracketed(
                            user_mappings.inode(),
                            user_mappings.size(),
                            write,
                        );
                    }
                }
                pages
            }
        };
        let writable = self
            .coherence
            .ownership()
            .granted(true, pages.start)
            .is_some_and(|granted| granted.start <= pages.start && pages.end <= granted.end);
        if fault.upgrade {
            mm_pfnmap::zap(fault.vma);
        }
        let (result, entries) = match &fault.huge {
            // One entry for the run, if it is granted whole (alike), and
            // its pages allow it; else the PTE fault that follows maps it.
            Some(huge) => {
                let run = huge.first_page() as u64..(huge.first_page() + HUGE_PAGES) as u64;
                if pages.start > run.start || run.end > pages.end {
                    return VmFault::FALLBACK;
                }
                let result = huge.insert(self.memory.chunks(), writable);
                let written = usize::from(result == VmFault::NOPAGE);
                totals
                    .user_huge_entries
                    .fetch_add(written as u64, Ordering::Relaxed);
                (result, written)
            }
            None => mm_pfnmap::insert_pages(
                fault.vma,
                self.memory.chunks(),
                pages.start as usize..pages.end as usize,
                fault.page,
                writable,
            ),
        };
        totals
            .user_entries
            .fetch_add(entries as u64, Ordering::Relaxed);
        result
    }

    /// Returns a kernel virtual address for the whole buffer.
    pub(crate) fn vmap(&self) -> Result<KernelAddress> {
        let mut state = self.state.lock();
        if let Some(shared) = &mut state.kernel_mapping {
            shared.users += 1;
            return Ok(shared.mapping.addr());
        }
        let mapping = KernelMapping::new(self.memory.chunks(), self.write_combined)?;
        let addr = mapping.addr();
        state.kernel_mapping = Some(SharedKernelMapping { mapping, users: 1 });
        Ok(addr)
    }

    /// Drops one vmap user; the last one removes the mapping.
    pub(crate) fn vunmap(&self) {
        let mut state = self.state.lock();
        if let Some(shared) = &mut state.kernel_mapping {
            shared.users -= 1;
            if shared.users == 0 {
                state.kernel_mapping = None;
            }
        }
    }
}

/// The dma-buf side of a buffer (`rust/kernel/dma_buf.rs` calls these).
#[vtable]
impl Exporter for HeapBuffer {
    type Attachment = Arc<Attachment>;

    fn attach(&self, dev: &DmaDevice) -> Result<Arc<Attachment>> {
        HeapBuffer::attach(self, dev)
    }

    fn detach(&self, attachment: Arc<Attachment>) {
        HeapBuffer::detach(self, attachment)
    }

    fn map(
        &self,
        attachment: ArcBorrow<'_, Attachment>,
        dir: DataDirection,
    ) -> Result<MappedTable> {
        HeapBuffer::map(self, &attachment, dir)
    }

    fn unmap(&self, attachment: ArcBorrow<'_, Attachment>, _dir: DataDirection) {
        HeapBuffer::unmap(self, &attachment)
    }

    fn begin_cpu_access(&self, dir: DataDirection, resv: &Resv) -> Result {
        HeapBuffer::begin_cpu_access(self, dir, resv)
    }

    fn end_cpu_access(&self, dir: DataDirection) -> Result {
        HeapBuffer::end_cpu_access(self, dir);
        Ok(())
    }

    fn mmap(&self, mmap: &Mmap<'_>) -> Result {
        HeapBuffer::mmap(self, mmap)
    }

    fn fault(&self, fault: &Fault<'_>) -> VmFault {
        HeapBuffer::fault(self, fault)
    }

    fn vmap(&self) -> Result<KernelAddress> {
        HeapBuffer::vmap(self)
    }

    fn vunmap(&self) {
        HeapBuffer::vunmap(self)
    }

    /// The debugfs file goes first: it holds a reference on the buffer,
    /// and removal waits for its readers.
    fn release(&self) {
        drop(self.take_debugfs_file());
    }

    fn tables() -> &'static ExporterTables {
        static TABLES: ExporterTables = ExporterTables::of::<HeapBuffer>();
        &TABLES
    }
}

#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[kunit_tests(rust_dmabuf_heap_buffer)]
mod tests {
    use super::*;
    use crate::{dma_mapping::Bounce, kunit::support, pool::PoolMode};

    const KIB: usize = 1 << 10;

    /// A private heap's context (its own maintenance device, no debugfs,
    /// no pool: buffers are always fresh).
    fn heap() -> Result<Arc<HeapContext>> {
        HeapContext::new(c"private", PoolMode::Off)
    }

    /// Why a heap's maintenance mappings would bounce on this boot.
    fn heap_bounce() -> Result<Option<Bounce>> {
        Ok(heap()?.maintenance().bounce())
    }

    /// A buffer of a private uncached heap; `None` (the case skipped)
    /// where DMA bounces: then there is no uncached heap.
    fn uncached_buffer(len: usize) -> Result<Option<Arc<HeapBuffer>>> {
        if heap_bounce()?.is_some() {
            support::skip(c"DMA mappings bounce on this boot");
            return Ok(None);
        }
        Ok(Some(HeapBuffer::new(heap()?.uncached()?, len)?))
    }

    #[test]
    fn every_buffer_is_always_when_the_maintenance_device_would_bounce() -> Result {
        let buffer = HeapBuffer::with_policy(heap()?, PAGE_SIZE, Policy::Tracked)?;
        let expected = match heap_bounce()? {
            Some(_) => Policy::Always,
            None => Policy::Tracked,
        };
        assert_eq!(buffer.snapshot().0.policy(), expected);
        Ok(())
    }

    #[test]
    fn vmap_sees_the_pages_and_is_refcounted() -> Result {
        let buffer = HeapBuffer::new(heap()?, 64 * KIB + 4 * KIB)?;
        buffer.memory.chunks()[1].fill_page(0, 0x5a);
        let first = buffer.vmap()?;
        let second = buffer.vmap()?;
        assert_eq!(first, second);
        // SAFETY: The mapping covers the whole buffer; byte 64 KiB is the
        // first byte of the second chunk.
        let byte = unsafe { first.as_ptr().cast::<u8>().add(64 * KIB).read_volatile() };
        assert_eq!(byte, 0x5a);
        buffer.vunmap();
        assert!(buffer.state.lock().kernel_mapping.is_some());
        buffer.vunmap();
        assert!(buffer.state.lock().kernel_mapping.is_none());
        Ok(())
    }

    #[test]
    fn uncached_kernel_mapping_is_write_combined() -> Result {
        let Some(buffer) = uncached_buffer(64 * KIB + 4 * KIB)? else {
            return Ok(());
        };
        let cached = HeapBuffer::new(heap()?, 4 * KIB)?;
        let (wc, normal) = (buffer.vmap()?, cached.vmap()?);
        // The last page is in the uncached buffer's second chunk.
        let second_chunk = wc.as_ptr().wrapping_byte_add(64 * KIB);
        let attrs = [wc.as_ptr(), second_chunk, normal.as_ptr()]
            .map(|addr| support::kernel_mapping_is_writecombine(addr));
        buffer.vunmap();
        cached.vunmap();
        if attrs.contains(&None) {
            support::skip(c"page-table walk for arm64 only");
            return Ok(());
        }
        assert_eq!(attrs, [Some(true), Some(true), Some(false)]);
        Ok(())
    }

    #[test]
    fn uncached_kernel_mapping_reads_and_writes_the_pages() -> Result {
        let Some(buffer) = uncached_buffer(64 * KIB + 4 * KIB)? else {
            return Ok(());
        };
        let first = buffer.vmap()?;
        assert_eq!(buffer.vmap()?, first);
        // Through the mapping only: the linear map is another alias, which
        // may hold older lines.
        // SAFETY: The mapping covers the whole buffer; byte 64 KiB is the
        // first byte of the second chunk.
        let byte = unsafe {
            let at = first.as_ptr().cast::<u8>().add(64 * KIB);
            let zero = at.read_volatile();
            at.write_volatile(0x5a);
            (zero, at.read_volatile())
        };
        assert_eq!(byte, (0, 0x5a));
        buffer.vunmap();
        buffer.vunmap();
        Ok(())
    }

    #[test]
    fn pages_of_widens_to_whole_pages_and_refuses_bytes_past_the_end() -> Result {
        let buffer = HeapBuffer::new(heap()?, 4 * PAGE_SIZE)?;
        let page = PAGE_SIZE as u64;
        assert_eq!(buffer.pages_of(1, 1)?, Range::new(0, 1));
        assert_eq!(buffer.pages_of(page - 1, 2)?, Range::new(0, 2));
        assert_eq!(buffer.pages_of(3 * page, page)?, Range::new(3, 4));
        assert!(matches!(buffer.pages_of(0, 0), Err(e) if e == EINVAL));
        assert!(matches!(buffer.pages_of(3 * page, page + 1), Err(e) if e == EINVAL));
        assert!(matches!(buffer.pages_of(u64::MAX, 2), Err(e) if e == EINVAL));
        Ok(())
    }
}
