// SPDX-License-Identifier: GPL-2.0

//! Where fences come in: the only module that touches `dma_fence` and
//! `dma_resv`.
//!
//! An importer driver that keeps a buffer mapped tells the heap, per job,
//! "this attachment accesses the buffer in direction D until fence F
//! signals" (`rdh_dma_buf_access_*`, declared for C in
//! `include/rust_dmabuf_heap.h`). The heap hooks a callback on F. When a
//! write fence signals, the callback tells the buffer at once
//! ([`Signalled`]) that a device wrote, so that whoever reads next finds no
//! line older than memory; until then a CPU access costs nothing although
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
//! IRQ: what they tell ([`Signalled::device_wrote`], shared with the buffer
//! through an [`Arc`]) must neither sleep nor take a lock that is held
//! while a fence's lock is taken. Every hooked fence is referenced
//! ([`ARef<Fence>`]) until its callback is removed, and callbacks are
//! removed (which waits out a signal in flight) before their memory is
//! freed.
//!
//! The first part of the file wraps the C types ([`Fence`], [`Resv`], the
//! callback slot); the rules after it use only those wrappers.

use crate::sys;
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, AtomicU8, Ordering},
};
use kernel::{
    alloc::flags::GFP_KERNEL,
    container_of,
    error::to_result,
    prelude::*,
    sync::{
        aref::{ARef, AlwaysRefCounted},
        Arc,
    },
    types::Opaque,
};

/// A `struct dma_fence`.
///
/// # Invariants
///
/// A `&Fence` points to a live fence: whoever lends it holds a reference.
#[repr(transparent)]
pub(crate) struct Fence(Opaque<sys::dma_fence>);

// SAFETY: Fences are reference-counted kernel objects meant to be used from
// any thread; their state is protected by their own lock.
unsafe impl Send for Fence {}
// SAFETY: As above.
unsafe impl Sync for Fence {}

// SAFETY: `dma_fence_get`/`dma_fence_put` keep the fence alive while the
// count is non-zero and free it at zero.
unsafe impl AlwaysRefCounted for Fence {
    fn inc_ref(&self) {
        // SAFETY: The fence is live (type invariant).
        unsafe { sys::rdh_dma_fence_get(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up a reference it owns.
        unsafe { sys::rdh_dma_fence_put(obj.cast().as_ptr()) };
    }
}

impl Fence {
    /// Borrows a fence from C.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live fence on which the caller holds a reference for
    /// `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut sys::dma_fence) -> &'a Fence {
        // SAFETY: `Fence` is a transparent wrapper; liveness is the
        // caller's promise.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut sys::dma_fence {
        self.0.get()
    }

    /// Whether the fence has signalled.
    pub(crate) fn is_signaled(&self) -> bool {
        // SAFETY: The fence is live (type invariant).
        unsafe { sys::rdh_dma_fence_is_signaled(self.as_raw()) }
    }

    /// Waits for the fence, interruptibly.
    pub(crate) fn wait(&self) -> Result {
        // SAFETY: The fence is live (type invariant).
        let ret = unsafe { sys::rdh_dma_fence_wait(self.as_raw()) };
        if ret < 0 {
            to_result(ret as i32)
        } else {
            Ok(())
        }
    }
}

/// A dma-buf's reservation object (`struct dma_resv`).
///
/// # Invariants
///
/// A `&Resv` points to a live reservation object whose lock the holder of
/// the reference does not hold.
#[repr(transparent)]
pub(crate) struct Resv(Opaque<sys::dma_resv>);

impl Resv {
    /// Borrows a reservation object from C.
    ///
    /// # Safety
    ///
    /// `ptr` must be live for `'a`, and not locked by the caller meanwhile.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut sys::dma_resv) -> &'a Resv {
        // SAFETY: `Resv` is a transparent wrapper; the rest is the caller's
        // promise.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut sys::dma_resv {
        self.0.get()
    }

    /// Waits, interruptibly, for the implicit-sync fences a CPU access
    /// depends on (all of them if the CPU writes, writers' otherwise), as
    /// `DMA_BUF_IOCTL_SYNC` would after `begin_cpu_access`.
    pub(crate) fn wait_for_cpu(&self, cpu_writes: bool) -> Result {
        // SAFETY: The object is live (type invariant).
        let ret = unsafe { sys::rdh_resv_wait_for_cpu(self.as_raw(), cpu_writes) };
        if ret < 0 {
            to_result(ret as i32)?;
        }
        Ok(())
    }

    /// The write fences in the object now, signalled or not; takes the
    /// reservation lock, interruptibly.
    pub(crate) fn write_fences(&self) -> Result<WriteFences> {
        let mut fences = WriteFences::default();
        // SAFETY: `ids` has room for `MAX` pairs; the object is live and
        // not locked by us (type invariant).
        let ret = unsafe {
            sys::rdh_resv_write_fences(
                self.as_raw(),
                fences.ids.as_mut_ptr().cast(),
                WriteFences::MAX as u32,
            )
        };
        let count = usize::try_from(ret).map_err(|_| Error::from_errno(ret))?;
        fences.len = count.min(WriteFences::MAX);
        fences.overflow = count > WriteFences::MAX;
        Ok(fences)
    }
}

/// Where a fence keeps our callback (`struct dma_fence_cb`), and the
/// fence it is registered on.
///
/// # Invariants
///
/// `fence` is null until [`Self::register`] succeeds; from then on it owns
/// a reference (from `ARef::into_raw`) and `cb` is registered on it (or its
/// callback already ran) until [`Self::unregister`].
struct CallbackSlot {
    /// Mutated by C (the fence core) while we hold shared references.
    cb: Opaque<sys::dma_fence_cb>,
    fence: AtomicPtr<sys::dma_fence>,
}

// SAFETY: The slot's callback is touched by C under the fence lock, and by
// us only to register (once, by `commit`) and unregister (under the buffer
// lock, after which C no longer calls it); the pointer is atomic.
unsafe impl Send for CallbackSlot {}
// SAFETY: As above.
unsafe impl Sync for CallbackSlot {}

/// Runs when a watched fence signals: atomic context, fence lock held.
///
/// # Safety
///
/// `cb` is the `cb` field of the slot of a live [`Watch`] (it is not freed
/// before the callback is removed or has run).
unsafe extern "C" fn signalled(_fence: *mut sys::dma_fence, cb: *mut sys::dma_fence_cb) {
    // SAFETY: `cb` is the `cb` field of a live `CallbackSlot`, the `slot`
    // field of a live `Watch`: both containers are in the same allocation.
    let watch = unsafe {
        let slot = container_of!(Opaque::cast_from(cb).cast_mut(), CallbackSlot, cb);
        &*container_of!(slot, Watch, slot)
    };
    watch.fence_signalled();
}

impl CallbackSlot {
    fn new() -> Self {
        Self {
            cb: Opaque::uninit(),
            fence: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Hooks [`signalled`] on `fence`, keeping a reference; returns false
    /// (and keeps nothing) if the fence has signalled already.
    ///
    /// The slot must be in its [`Watch`], unregistered, and the watch must
    /// outlive the registration (its list removes it first).
    fn register(&self, fence: &Fence) -> bool {
        let fence = ARef::from(fence);
        let raw = fence.as_raw();
        // SAFETY: `cb` is unregistered and lives in the boxed watch, which
        // unregisters it (`Watch::release`) before it is freed; `signalled`
        // only needs the watch around `cb`.
        let ret = unsafe { sys::dma_fence_add_callback(raw, self.cb.get(), Some(signalled)) };
        if ret != 0 {
            // Already signalled (-ENOENT, the only error): the reference
            // goes with `fence`.
            return false;
        }
        // INVARIANT: Registered; the reference is kept in `fence`.
        self.fence
            .store(ARef::into_raw(fence).cast().as_ptr(), Ordering::Relaxed);
        true
    }

    /// The fence the slot is registered on, if any. Only meaningful once
    /// the watch's state says it is armed.
    fn fence(&self) -> Option<&Fence> {
        let raw = self.fence.load(Ordering::Relaxed);
        // SAFETY: A non-null pointer owns a reference (type invariant), so
        // the fence lives as long as the slot keeps it.
        (!raw.is_null()).then(|| unsafe { Fence::from_raw(raw) })
    }

    /// Removes the callback (waiting out one in flight) and drops the
    /// reference. Shared access only: the callback may be running on
    /// another CPU meanwhile, holding its own reference to the slot.
    fn unregister(&self) {
        let raw = self.fence.swap(core::ptr::null_mut(), Ordering::Acquire);
        let Some(fence) = NonNull::new(raw) else {
            return;
        };
        // SAFETY: Registered on `raw` (type invariant); removal takes the
        // fence lock and so waits for a callback in flight; removing one
        // that already ran is allowed.
        unsafe { sys::dma_fence_remove_callback(raw, self.cb.get()) };
        // SAFETY: The reference `register` kept with `ARef::into_raw`.
        drop(unsafe { ARef::<Fence>::from_raw(fence.cast()) });
    }
}

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

/// One declared access, and the fence that ends it once committed.
///
/// # Invariants
///
/// `state` is `ARMED` only after `slot` was registered (stored with release
/// ordering after it). Only [`commit`] moves a watch out of `RESERVED`,
/// and while it is `RESERVED` nothing else touches it but the list that
/// owns it.
struct Watch {
    slot: CallbackSlot,
    state: AtomicU8,
    signalled: Arc<dyn Signalled>,
    /// The device writes: CPU reads wait for the fence.
    writes: bool,
    /// Its writes may leave stale CPU cache lines (a non-coherent device
    /// that accesses the pages itself): the signal is reported.
    stales: bool,
}

impl Watch {
    /// The fence, if the watch is armed.
    fn armed_fence(&self) -> Option<&Fence> {
        if self.state.load(Ordering::Acquire) == ARMED {
            self.slot.fence()
        } else {
            None
        }
    }

    /// Whether the access is over for the buffer's purposes.
    fn finished(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            ARMED => self.slot.fence().is_none_or(Fence::is_signaled),
            DONE => true,
            _ => false,
        }
    }

    /// The access ended (its fence signalled): report it if it matters.
    fn fence_signalled(&self) {
        if self.stales {
            self.signalled.device_wrote();
        }
    }
}

/// Unhooks a watch before it is freed.
fn release(watch: KBox<Watch>) {
    watch.slot.unregister();
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

/// Ends a reserved access with `fence`: hooks its callback (a fence that
/// already signalled counts at once). No allocation, no sleeping lock.
///
/// # Safety
///
/// `reservation` must not have been committed or cancelled, and its buffer
/// must be live for the call.
pub(crate) unsafe fn commit(reservation: Reservation, fence: &Fence) {
    // SAFETY: The reservation's watch is live (the caller's promise and the
    // reservation's invariant) and only this call may change it now.
    let watch = unsafe { reservation.0.as_ref() };
    if watch.slot.register(fence) {
        // INVARIANT: Registered before.
        watch.state.store(ARMED, Ordering::Release);
    } else {
        watch.fence_signalled();
        watch.state.store(DONE, Ordering::Release);
    }
}

/// The fences a buffer watches.
pub(crate) struct FenceHooks {
    /// Told of the signals, shared with the watches' callbacks.
    signalled: Arc<dyn Signalled>,
    watches: KVec<KBox<Watch>>,
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
    /// until a fence given later to [`commit`] signals, writing if
    /// `writes`; if `stales`, its writes may leave stale CPU cache lines
    /// and the signal is reported. Allocates; on failure nothing changed.
    pub(crate) fn reserve(&mut self, writes: bool, stales: bool) -> Result<Reservation> {
        self.prune();
        self.watches.reserve(1, GFP_KERNEL)?;
        let mut watch = KBox::new(
            Watch {
                slot: CallbackSlot::new(),
                state: AtomicU8::new(RESERVED),
                signalled: self.signalled.clone(),
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
            if let Ok(watch) = self.watches.remove(index) {
                release(watch);
            }
        }
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

impl Drop for FenceHooks {
    fn drop(&mut self) {
        while let Some(watch) = self.watches.pop() {
            release(watch);
        }
    }
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

    /// Whether `self` holds a fence that `seen` does not: a device wrote
    /// since `seen` was taken, whether its fence has signalled or not.
    pub(crate) fn has_new_since(&self, seen: &WriteFences) -> bool {
        self.overflow
            || self.ids[..self.len]
                .iter()
                .any(|id| !seen.ids[..seen.len].contains(id))
    }
}
