// SPDX-License-Identifier: GPL-2.0

//! DMA fences: references and callbacks.
//!
//! C header: [`include/linux/dma-fence.h`](srctree/include/linux/dma-fence.h)
//!
//! A [`Fence`] is a reference-counted `struct dma_fence`; [`Callback`] is a
//! `struct dma_fence_cb` with a payload that is told when the fence signals.
//! Callbacks run in atomic context with the fence's lock held, maybe in hard
//! IRQ, so [`OnSignal::signalled`] must neither sleep nor take a lock that
//! is held while a fence's lock is taken.

use crate::bindings;
use core::{
    pin::Pin,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};
use kernel::{
    container_of,
    error::to_result,
    prelude::*,
    sync::aref::{ARef, AlwaysRefCounted},
    types::Opaque,
};

/// A `struct dma_fence`.
///
/// # Invariants
///
/// A `&Fence` points to a live fence: whoever lends it holds a reference.
#[repr(transparent)]
pub struct Fence(Opaque<bindings::dma_fence>);

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
        unsafe { bindings::dma_fence_get(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up a reference it owns.
        unsafe { bindings::dma_fence_put(obj.cast().as_ptr()) };
    }
}

impl Fence {
    /// Borrows a fence from C.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live fence on which the caller holds a reference for
    /// `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::dma_fence) -> &'a Fence {
        // SAFETY: `Fence` is a transparent wrapper; liveness is the
        // caller's promise.
        unsafe { &*ptr.cast() }
    }

    /// The C fence.
    pub fn as_raw(&self) -> *mut bindings::dma_fence {
        self.0.get()
    }

    /// Whether the fence has signalled.
    pub fn is_signaled(&self) -> bool {
        // SAFETY: The fence is live (type invariant).
        unsafe { bindings::dma_fence_is_signaled(self.as_raw()) }
    }

    /// Waits for the fence to signal (`interruptible`: a signal ends the
    /// wait with `ERESTARTSYS`).
    pub fn wait(&self, interruptible: bool) -> Result {
        // SAFETY: The fence is live (type invariant).
        let ret = unsafe { bindings::dma_fence_wait(self.as_raw(), interruptible) };
        if ret < 0 {
            to_result(ret as i32)
        } else {
            Ok(())
        }
    }
}

/// What a [`Callback`] does when its fence signals.
pub trait OnSignal: Send + Sync {
    /// The fence signalled: atomic context (maybe hard IRQ), the fence's
    /// lock held.
    fn signalled(&self);
}

/// A callback on a fence (`struct dma_fence_cb`) with its payload.
///
/// # Invariants
///
/// `fence` is null until [`Self::register`] succeeds; from then on it owns
/// a reference (from `ARef::into_raw`) and `cb` is registered on it (or
/// its callback already ran) until [`Self::unregister`]. `claimed` is set
/// by the one call of `register` that may register `cb`.
#[pin_data(PinnedDrop)]
pub struct Callback<T: OnSignal> {
    /// Written by the fence core while shared references exist.
    #[pin]
    cb: Opaque<bindings::dma_fence_cb>,
    fence: AtomicPtr<bindings::dma_fence>,
    claimed: AtomicBool,
    data: T,
}

// SAFETY: `cb` is touched by C under the fence lock and by `register` (once,
// `claimed`) and `unregister` (which takes the fence lock); `fence` is atomic.
unsafe impl<T: OnSignal> Send for Callback<T> {}
// SAFETY: As above; `T` is `Sync`.
unsafe impl<T: OnSignal> Sync for Callback<T> {}

impl<T: OnSignal> Callback<T> {
    /// A callback that is registered on no fence yet.
    pub fn new(data: T) -> impl PinInit<Self> {
        // INVARIANT: Not registered.
        pin_init!(Self {
            cb <- Opaque::uninit(),
            fence: AtomicPtr::new(core::ptr::null_mut()),
            claimed: AtomicBool::new(false),
            data,
        })
    }

    /// The payload.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Registers the callback on `fence`, keeping a reference on it until
    /// [`Self::unregister`]. `Ok(false)` (and nothing kept) if the fence
    /// has signalled already: then [`OnSignal::signalled`] is not called.
    /// `EBUSY` if the callback was registered before. Neither allocates nor
    /// sleeps.
    ///
    /// A `Callback` only exists pinned (it is made by a [`PinInit`] and is
    /// `!Unpin`), so `cb` stays where it is registered.
    pub fn register(&self, fence: &Fence) -> Result<bool> {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let fence = ARef::from(fence);
        let (raw, cb) = (fence.as_raw(), self.cb.get());
        // SAFETY: `cb` is pinned (see above), so it stays in place until the
        // callback is removed in `unregister` (at the latest on drop); only
        // this call registers it (`claimed`). `signalled::<T>` only needs the
        // `Callback<T>` around `cb`.
        let ret = unsafe { bindings::dma_fence_add_callback(raw, cb, Some(signalled::<T>)) };
        if ret != 0 {
            // Already signalled (-ENOENT, the only error): the reference
            // goes with `fence`.
            return Ok(false);
        }
        // INVARIANT: Registered; the reference is kept in `fence`.
        self.fence
            .store(ARef::into_raw(fence).cast().as_ptr(), Ordering::Release);
        Ok(true)
    }

    /// The fence the callback is registered on, if any.
    pub fn fence(&self) -> Option<&Fence> {
        let raw = self.fence.load(Ordering::Acquire);
        // SAFETY: A non-null pointer owns a reference (type invariant), so
        // the fence lives as long as `self` keeps it.
        (!raw.is_null()).then(|| unsafe { Fence::from_raw(raw) })
    }

    /// Removes the callback (waiting out one in flight) and drops the
    /// reference. The callback may be running on another CPU meanwhile.
    pub fn unregister(&self) {
        let raw = self.fence.swap(core::ptr::null_mut(), Ordering::AcqRel);
        let Some(fence) = NonNull::new(raw) else {
            return;
        };
        // SAFETY: Registered on `raw` (type invariant); removal takes the
        // fence lock and so waits for a callback in flight; removing one
        // that already ran is allowed.
        unsafe { bindings::dma_fence_remove_callback(raw, self.cb.get()) };
        // SAFETY: The reference `register` kept with `ARef::into_raw`.
        drop(unsafe { ARef::<Fence>::from_raw(fence.cast()) });
    }
}

#[pinned_drop]
impl<T: OnSignal> PinnedDrop for Callback<T> {
    fn drop(self: Pin<&mut Self>) {
        self.unregister();
    }
}

/// Runs when the fence of a [`Callback<T>`] signals.
///
/// # Safety
///
/// `cb` is the `cb` field of a live `Callback<T>` (it is not freed before
/// the callback is removed or has run).
unsafe extern "C" fn signalled<T: OnSignal>(
    _fence: *mut bindings::dma_fence,
    cb: *mut bindings::dma_fence_cb,
) {
    // SAFETY: `cb` is the `cb` field of a live `Callback<T>`.
    let callback = unsafe { &*container_of!(Opaque::cast_from(cb).cast_mut(), Callback<T>, cb) };
    callback.data.signalled();
}
