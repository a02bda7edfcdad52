// SPDX-License-Identifier: GPL-2.0

//! Where fences come in: the only module that touches `dma_fence` and
//! `dma_resv`.
//!
//! An importer driver that keeps a buffer mapped tells the heap, per job,
//! "this attachment accesses the buffer in direction D until fence F
//! signals" (`rdh_dma_buf_access_*`, declared for C in
//! `include/linux/rust_dmabuf_heap.h`). The heap hooks a callback on F. When a
//! write fence signals, the callback tells the buffer at once
//! ([`Signalled`]) that a device wrote, so that whoever reads next finds no
//! line older than memory; until then a CPU access costs nothing although
//! the writer stays mapped.
//!
//! Declaring an access has two steps, like `dma_resv_reserve_fences()` and
//! `dma_resv_add_fence()`: [`FenceHooks::reserve`] allocates and records
//! the access under the buffer lock, in process context, before the driver
//! publishes its job's fence; [`Watch::commit`] hooks the fence and neither
//! allocates nor takes a sleeping lock, so a driver may call it inside its
//! fence signalling critical section (between `dma_fence_begin_signalling`
//! and `dma_fence_end_signalling`), where waiting for memory reclaim could
//! wait for that very fence.
//!
//! Callbacks run in atomic context with the fence lock held, maybe in hard
//! IRQ: what they tell ([`Signalled::device_wrote`], shared with the buffer
//! through an [`Arc`]) must neither sleep nor take a lock that is held
//! while a fence's lock is taken. Every hooked fence is referenced
//! ([`ARef<Fence>`]) until its callback is removed, and callbacks are
//! removed (which waits out a signal in flight) before their memory is
//! freed.
//!
//! The fences and reservation objects themselves are the abstractions'
//! (`rust/kernel/dma_fence.rs`, `rust/kernel/dma_resv.rs`); this file holds
//! the buffer's rules about them.

use crate::{
    dma_fence::{Callback, Fence, OnSignal},
    dma_resv::{FenceId, Resv, Usage},
};
use core::{
    ptr::NonNull,
    sync::atomic::{AtomicU8, Ordering},
};
use kernel::{
    alloc::flags::GFP_KERNEL,
    prelude::*,
    sync::{aref::ARef, Arc},
};

/// Who learns of a watched writer's signal: called from the fence
/// callback, in atomic context (maybe hard IRQ) with the fence's lock held.
pub(crate) trait Signalled: Send + Sync {
    /// A watched device whose writes may leave stale CPU cache lines
    /// finished writing.
    fn device_wrote(&self);
}

/// [`Watch::state`]: reserved, no fence yet.
const RESERVED: u8 = 0;
/// [`Watch::state`]: the callback is registered, the fence referenced.
const ARMED: u8 = 1;
/// [`Watch::state`]: committed with a fence that had signalled already.
const DONE: u8 = 2;

/// What a watch's callback does: report the signal of a device whose
/// writes may leave stale CPU cache lines.
struct Report {
    signalled: Arc<dyn Signalled>,
    /// Its writes may leave stale CPU cache lines (a non-coherent device
    /// that accesses the pages itself): the signal is reported.
    stales: bool,
}

impl OnSignal for Report {
    fn signalled(&self) {
        if self.stales {
            self.signalled.device_wrote();
        }
    }
}

/// One declared access, and the fence that ends it once committed.
///
/// # Invariants
///
/// `state` is `ARMED` only after `callback` was registered (stored with
/// release ordering after it). Only [`Watch::commit`] moves a watch out of
/// `RESERVED`. A watch is pinned in its buffer's [`FenceHooks`] until the
/// buffer goes or the reservation is cancelled.
#[pin_data]
pub(crate) struct Watch {
    #[pin]
    callback: Callback<Report>,
    state: AtomicU8,
    /// The device writes: CPU reads wait for the fence.
    writes: bool,
}

impl Watch {
    /// The fence, if the watch is armed.
    fn armed_fence(&self) -> Option<&Fence> {
        if self.state.load(Ordering::Acquire) == ARMED {
            self.callback.fence()
        } else {
            None
        }
    }

    /// Whether the access is over for the buffer's purposes.
    fn finished(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            ARMED => self.callback.fence().is_none_or(Fence::is_signaled),
            DONE => true,
            _ => false,
        }
    }

    /// Ends the reserved access with `fence`: hooks its callback (a fence
    /// that already signalled counts at once). No allocation, no sleeping
    /// lock. A watch is committed once (the C API's contract); a second
    /// commit counts as a signal.
    pub(crate) fn commit(&self, fence: &Fence) {
        match self.callback.register(fence) {
            Ok(true) => {
                // INVARIANT: Registered before.
                self.state.store(ARMED, Ordering::Release);
            }
            Ok(false) | Err(_) => {
                self.callback.data().signalled();
                self.state.store(DONE, Ordering::Release);
            }
        }
    }
}

/// A reserved access: the watch, pinned in its buffer's [`FenceHooks`]
/// until committed and over, or cancelled ([`FenceHooks::cancel`]). C
/// holds it as a pointer (`c_api.rs`).
#[derive(Clone, Copy)]
pub(crate) struct Reservation(NonNull<Watch>);

impl Reservation {
    /// The watch's address, for C.
    pub(crate) fn as_ptr(self) -> *mut Watch {
        self.0.as_ptr()
    }
}

/// The fences a buffer watches.
pub(crate) struct FenceHooks {
    /// Told of the signals, shared with the watches' callbacks.
    signalled: Arc<dyn Signalled>,
    watches: KVec<Pin<KBox<Watch>>>,
}

impl FenceHooks {
    /// No fence yet; `signalled` will be told of write signals.
    pub(crate) fn new(signalled: Arc<dyn Signalled>) -> Self {
        Self {
            signalled,
            watches: KVec::new(),
        }
    }

    /// Reserves the watch of one access: a device accesses the buffer
    /// until a fence given later to [`Watch::commit`] signals, writing if
    /// `writes`; if `stales`, its writes may leave stale CPU cache lines
    /// and the signal is reported. Allocates; on failure nothing changed.
    pub(crate) fn reserve(&mut self, writes: bool, stales: bool) -> Result<Reservation> {
        self.prune();
        self.watches.reserve(1, GFP_KERNEL)?;
        let report = Report {
            signalled: self.signalled.clone(),
            stales,
        };
        let watch = KBox::pin_init(
            pin_init!(Watch {
                callback <- Callback::new(report),
                state: AtomicU8::new(RESERVED),
                writes,
            }),
            GFP_KERNEL,
        )?;
        // INVARIANT: The pinned watch is `RESERVED` and kept in the list.
        let reservation = Reservation(NonNull::from(&*watch));
        if self.watches.push_within_capacity(watch).is_err() {
            // Cannot happen: room was reserved above.
            return Err(ENOMEM);
        }
        Ok(reservation)
    }

    /// Drops the reservation of `watch`, which will not be committed.
    pub(crate) fn cancel(&mut self, watch: &Watch) {
        let index = self.watches.iter().position(|w| core::ptr::eq(&**w, watch));
        if let Some(index) = index {
            // Dropping a watch removes its callback.
            drop(self.watches.remove(index));
        }
    }

    /// Forgets accesses that are over.
    fn prune(&mut self) {
        let mut i = 0;
        while i < self.watches.len() {
            if self.watches[i].finished() {
                drop(self.watches.remove(i));
            } else {
                i += 1;
            }
        }
    }

    /// The fences a CPU access must wait for (writers', and also readers'
    /// if the CPU writes), to wait without the buffer lock.
    pub(crate) fn pending(&mut self, cpu_writes: bool) -> Result<KVec<ARef<Fence>>> {
        self.prune();
        let mut out = KVec::with_capacity(self.watches.len(), GFP_KERNEL)?;
        for watch in self.watches.iter().filter(|w| w.writes || cpu_writes) {
            if let Some(fence) = watch.armed_fence() {
                out.push(ARef::from(fence), GFP_KERNEL)?;
            }
        }
        Ok(out)
    }
}

/// Write fences of a reservation object, by identity (fence context and
/// sequence number), as far as a buffer remembers them.
#[derive(Clone, Copy, Default)]
pub(crate) struct WriteFences {
    ids: [FenceId; WriteFences::MAX],
    len: usize,
    /// There were more than `MAX`: the rest is not remembered.
    overflow: bool,
}

impl WriteFences {
    /// More than a few writers at once is rare; beyond that every CPU access
    /// counts as following a device write (an invalidate too many at worst).
    const MAX: usize = 8;

    /// Whether `self` holds a fence that `seen` does not: a device wrote
    /// since `seen` was taken, whether its fence has signalled or not.
    pub(crate) fn has_new_since(&self, seen: &WriteFences) -> bool {
        self.overflow
            || self.ids[..self.len]
                .iter()
                .any(|id| !seen.ids[..seen.len].contains(id))
    }
}

/// Waits, interruptibly, for the implicit-sync fences a CPU access depends
/// on (all of them if the CPU writes, writers' otherwise), as
/// `DMA_BUF_IOCTL_SYNC` would after `begin_cpu_access`.
pub(crate) fn wait_for_cpu(resv: &Resv, cpu_writes: bool) -> Result {
    resv.wait(Usage::for_cpu(cpu_writes))
}

/// The write fences in `resv` now, signalled or not; takes the reservation
/// lock, interruptibly.
pub(crate) fn write_fences(resv: &Resv) -> Result<WriteFences> {
    let mut fences = WriteFences::default();
    let count = resv.fence_ids(Usage::Write, &mut fences.ids)?;
    fences.len = count.min(WriteFences::MAX);
    fences.overflow = count > WriteFences::MAX;
    Ok(fences)
}
