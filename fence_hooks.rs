// SPDX-License-Identifier: GPL-2.0

//! Where fences come in: the only module that touches `dma_fence` and
//! `dma_resv`.
//!
//! An importer driver that keeps a buffer mapped tells the heap, per job,
//! "this attachment accesses the buffer in direction D until fence F
//! signals" (`rdh_dma_buf_access_until`, declared for C in
//! `include/rust_dmabuf_heap.h`). The heap hooks a callback on F. When a
//! write fence signals, the buffer learns that a device wrote, so the next
//! CPU access invalidates; until then a CPU access costs nothing although
//! the writer stays mapped.
//!
//! Declaring an access has two steps, like `dma_resv_reserve_fences()` and
//! `dma_resv_add_fence()`: [`FenceHooks::reserve`] allocates and records
//! the access under the buffer lock, in process context, before the driver
//! publishes its job's fence; [`commit`] hooks the fence and neither
//! allocates nor takes a sleeping lock, so a driver may call it inside its
//! fence signalling critical section (between `dma_fence_begin_signalling`
//! and `dma_fence_end_signalling`), where waiting for memory reclaim could
//! wait for that very fence.
//!
//! Callbacks run in atomic context with the fence lock held, maybe in hard
//! IRQ: they only set an atomic flag, shared with the buffer through an
//! [`Arc`], which the next exporter entry consumes under the buffer lock.
//! Every hooked fence is referenced until its callback is removed, and
//! callbacks are removed (which waits out a signal in flight) before their
//! memory is freed.

use crate::sys;
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering},
};
use kernel::{
    alloc::flags::GFP_KERNEL, container_of, error::to_result, prelude::*, sync::Arc, types::Opaque,
};

/// What fence callbacks tell the buffer.
struct Signals {
    /// A device that reports through fences wrote since the last look.
    device_wrote: AtomicBool,
}

/// [`Watch::state`]: reserved, no fence yet.
const RESERVED: u8 = 0;
/// [`Watch::state`]: the callback is registered on `fence`, referenced.
const ARMED: u8 = 1;
/// [`Watch::state`]: committed with a fence that had signalled already.
const DONE: u8 = 2;

/// One declared access, and the fence that ends it once committed.
///
/// # Invariants
///
/// Once `state` is `ARMED` (stored with release ordering after `fence`),
/// `cb` is registered on `fence` (or its callback already ran) and the
/// watch holds a reference on `fence`; before, `fence` is null and `cb`
/// unregistered. Only [`commit`] moves a watch out of `RESERVED`, and
/// nothing else touches a `RESERVED` watch but the list that owns it.
struct Watch {
    /// Mutated by C (the fence core) while we hold shared references.
    cb: Opaque<sys::dma_fence_cb>,
    state: AtomicU8,
    fence: AtomicPtr<sys::dma_fence>,
    signals: Arc<Signals>,
    /// The device writes: CPU reads wait for the fence.
    writes: bool,
    /// Its writes may leave stale CPU cache lines (a non-coherent device
    /// that accesses the pages itself): the signal is reported.
    stales: bool,
}

impl Watch {
    /// The fence, if the watch is armed.
    fn armed_fence(&self) -> Option<*mut sys::dma_fence> {
        (self.state.load(Ordering::Acquire) == ARMED).then(|| self.fence.load(Ordering::Relaxed))
    }

    /// Whether the access is over for the buffer's purposes: committed
    /// with a signalled fence.
    fn finished(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            // SAFETY: An armed watch references its fence (type invariant).
            ARMED => unsafe { sys::rdh_dma_fence_is_signaled(self.fence.load(Ordering::Relaxed)) },
            DONE => true,
            _ => false,
        }
    }
}

/// A reserved access, to be passed to [`commit`] (or cancelled through
/// [`FenceHooks::cancel`]).
///
/// # Invariants
///
/// Points to a `RESERVED` watch owned by a buffer's [`FenceHooks`], which
/// keeps it until the buffer is freed or the reservation cancelled.
#[derive(Clone, Copy)]
pub(crate) struct Reservation(NonNull<Watch>);

impl Reservation {
    /// The pointer that C holds.
    pub(crate) fn into_raw(self) -> *mut c_void {
        self.0.as_ptr().cast()
    }

    /// Takes back a pointer from [`Self::into_raw`]; `None` for null or an
    /// error pointer.
    ///
    /// # Safety
    ///
    /// A non-null, non-error `ptr` must come from [`Self::into_raw`] of a
    /// reservation that is neither committed nor cancelled.
    pub(crate) unsafe fn from_raw(ptr: *mut c_void) -> Option<Self> {
        if ptr.is_null() || ptr.addr() > usize::MAX - 4095 {
            return None;
        }
        // INVARIANT: Guaranteed by the caller.
        NonNull::new(ptr.cast()).map(Self)
    }
}

/// The fences a buffer watches.
pub(crate) struct FenceHooks {
    signals: Arc<Signals>,
    watches: KVec<KBox<Watch>>,
}

// SAFETY: The fence pointers are refcounted kernel objects usable from any
// thread; the buffer lock serialises access to the list, and a watch's
// commit touches only its atomics and its own `cb`.
unsafe impl Send for FenceHooks {}

/// Runs when a watched fence signals: atomic context, fence lock held.
///
/// # Safety
///
/// `cb` is the `cb` field of a live [`Watch`] (it is not freed before the
/// callback is removed or has run).
unsafe extern "C" fn signalled(_fence: *mut sys::dma_fence, cb: *mut sys::dma_fence_cb) {
    // SAFETY: `cb` is the `cb` field of a live `Watch`, so the container is
    // in the same allocation.
    let watch = unsafe { &*container_of!(Opaque::cast_from(cb).cast_mut(), Watch, cb) };
    if watch.stales {
        watch.signals.device_wrote.store(true, Ordering::Release);
    }
}

impl FenceHooks {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            signals: Arc::new(
                Signals {
                    device_wrote: AtomicBool::new(false),
                },
                GFP_KERNEL,
            )?,
            watches: KVec::new(),
        })
    }

    /// Reserves the watch of one access: a device accesses the buffer
    /// until a fence given later to [`commit`] signals, writing if
    /// `writes`; if `stales`, its writes may leave stale CPU cache lines
    /// and the signal is reported. Allocates; on failure nothing changed.
    pub(crate) fn reserve(&mut self, writes: bool, stales: bool) -> Result<Reservation> {
        self.prune();
        self.watches.reserve(1, GFP_KERNEL)?;
        let mut watch = KBox::new(
            Watch {
                cb: Opaque::uninit(),
                state: AtomicU8::new(RESERVED),
                fence: AtomicPtr::new(core::ptr::null_mut()),
                signals: self.signals.clone(),
                writes,
                stales,
            },
            GFP_KERNEL,
        )?;
        // INVARIANT: The boxed watch is `RESERVED` and kept in the list.
        let reservation = Reservation(NonNull::from(&mut *watch));
        if self.watches.push_within_capacity(watch).is_err() {
            // Cannot happen: room was reserved above.
            return Err(ENOMEM);
        }
        Ok(reservation)
    }

    /// Drops a reservation that will not be committed.
    pub(crate) fn cancel(&mut self, reservation: Reservation) {
        let index = self
            .watches
            .iter()
            .position(|w| core::ptr::eq(&**w, reservation.0.as_ptr()));
        if let Some(index) = index {
            // Never registered (the reservation's invariant): just free it.
            drop(self.watches.remove(index));
        }
    }

    /// Whether a watched writer finished since the last call.
    pub(crate) fn take_device_wrote(&self) -> bool {
        self.signals.device_wrote.swap(false, Ordering::Acquire)
    }

    /// Forgets accesses that are over.
    fn prune(&mut self) {
        let mut i = 0;
        while i < self.watches.len() {
            if self.watches[i].finished() {
                if let Ok(watch) = self.watches.remove(i) {
                    release(watch);
                }
            } else {
                i += 1;
            }
        }
    }

    /// References to the fences a CPU access must wait for (writers', and
    /// also readers' if the CPU writes), to wait without the buffer lock.
    pub(crate) fn pending(&mut self, cpu_writes: bool) -> Result<KVec<FenceRef>> {
        self.prune();
        let mut out = KVec::with_capacity(self.watches.len(), GFP_KERNEL)?;
        for watch in self.watches.iter().filter(|w| w.writes || cpu_writes) {
            let Some(fence) = watch.armed_fence() else {
                continue;
            };
            // SAFETY: An armed watch references its fence, and it stays in
            // the list (so referenced) while we hold the buffer lock.
            // INVARIANT: The reference just taken is the `FenceRef`'s (and
            // dropped with it if the push fails).
            let fence = FenceRef(unsafe { sys::rdh_dma_fence_get(fence) });
            out.push(fence, GFP_KERNEL)?;
        }
        Ok(out)
    }
}

/// Ends a reserved access with `fence`: hooks its callback (a fence that
/// already signalled counts at once). No allocation, no sleeping lock.
///
/// # Safety
///
/// `reservation` must not have been committed or cancelled, its buffer must
/// be live for the call, and `fence` must be a valid fence.
pub(crate) unsafe fn commit(reservation: Reservation, fence: *mut sys::dma_fence) {
    // SAFETY: The reservation's watch is live (the caller's promise and
    // the reservation's invariant) and only this call may change it now.
    let watch = unsafe { reservation.0.as_ref() };
    // SAFETY: The caller guarantees `fence` is valid.
    unsafe { sys::rdh_dma_fence_get(fence) };
    watch.fence.store(fence, Ordering::Relaxed);
    // SAFETY: `cb` is unregistered and lives in a box that outlives the
    // registration (removed in `release` before it is freed).
    let ret = unsafe { sys::dma_fence_add_callback(fence, watch.cb.get(), Some(signalled)) };
    if ret == 0 {
        // INVARIANT: Registered, reference held, `fence` stored before.
        watch.state.store(ARMED, Ordering::Release);
        return;
    }
    // Already signalled (the only error): the access is over now.
    if watch.stales {
        watch.signals.device_wrote.store(true, Ordering::Release);
    }
    watch.fence.store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: Drop the reference taken above; never registered.
    unsafe { sys::rdh_dma_fence_put(fence) };
    watch.state.store(DONE, Ordering::Release);
}

/// Unhooks a watch and drops its fence reference, if armed.
fn release(watch: KBox<Watch>) {
    if let Some(fence) = watch.armed_fence() {
        // SAFETY: By the `Watch` invariant; removal takes the fence lock
        // and so waits for a callback in flight. Removing a callback that
        // already ran is allowed and returns false.
        unsafe {
            sys::dma_fence_remove_callback(fence, watch.cb.get());
            sys::rdh_dma_fence_put(fence);
        }
    }
}

impl Drop for FenceHooks {
    fn drop(&mut self) {
        while let Some(watch) = self.watches.pop() {
            release(watch);
        }
    }
}

/// A counted reference on a fence.
///
/// # Invariants
///
/// We own one reference on the fence.
pub(crate) struct FenceRef(*mut sys::dma_fence);

impl FenceRef {
    /// Waits for the fence, interruptibly.
    pub(crate) fn wait(&self) -> Result {
        // SAFETY: By the type invariant the fence is valid.
        let ret = unsafe { sys::rdh_dma_fence_wait(self.0) };
        if ret < 0 {
            to_result(ret as i32)
        } else {
            Ok(())
        }
    }
}

impl Drop for FenceRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant.
        unsafe { sys::rdh_dma_fence_put(self.0) };
    }
}

/// Waits, interruptibly, for the implicit-sync fences in `resv` that a CPU
/// access depends on (all of them if the CPU writes, writers' otherwise), as
/// `DMA_BUF_IOCTL_SYNC` would after `begin_cpu_access`.
///
/// # Safety
///
/// `resv` must be a valid reservation object.
pub(crate) unsafe fn wait_for_implicit_fences(
    resv: *mut sys::dma_resv,
    cpu_writes: bool,
) -> Result {
    // SAFETY: The caller guarantees `resv` is valid.
    let ret = unsafe { sys::rdh_resv_wait_for_cpu(resv, cpu_writes) };
    if ret < 0 {
        to_result(ret as i32)?;
    }
    Ok(())
}

/// Write fences of a reservation object, by identity (fence context and
/// sequence number), as far as a buffer remembers them.
#[derive(Clone, Copy, Default)]
pub(crate) struct WriteFences {
    ids: [(u64, u64); WriteFences::MAX],
    len: usize,
    /// There were more than `MAX`: the rest is not remembered.
    overflow: bool,
}

impl WriteFences {
    /// More than a few writers at once is rare; beyond that every CPU access
    /// counts as following a device write (an invalidate too many at worst).
    const MAX: usize = 8;

    /// The write fences in `resv` now, signalled or not; takes the
    /// reservation lock, interruptibly.
    ///
    /// # Safety
    ///
    /// `resv` must be a valid reservation object whose lock the caller does
    /// not hold.
    pub(crate) unsafe fn current(resv: *mut sys::dma_resv) -> Result<Self> {
        let mut fences = Self::default();
        // SAFETY: `ids` has room for `MAX` pairs; `resv` is valid and not
        // locked by us (the caller's promise).
        let ret = unsafe {
            sys::rdh_resv_write_fences(resv, fences.ids.as_mut_ptr().cast(), Self::MAX as u32)
        };
        let count = usize::try_from(ret).map_err(|_| Error::from_errno(ret))?;
        fences.len = count.min(Self::MAX);
        fences.overflow = count > Self::MAX;
        Ok(fences)
    }

    /// Whether `self` holds a fence that `seen` does not: a device wrote
    /// since `seen` was taken, whether its fence has signalled or not.
    pub(crate) fn has_new_since(&self, seen: &WriteFences) -> bool {
        self.overflow
            || self.ids[..self.len]
                .iter()
                .any(|id| !seen.ids[..seen.len].contains(id))
    }
}
