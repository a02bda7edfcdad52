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
//! Callbacks run in atomic context with the fence lock held, maybe in hard
//! IRQ: they only set an atomic flag, shared with the buffer through an
//! [`Arc`], which the next exporter entry consumes under the buffer lock.
//! Every hooked fence is referenced until its callback is removed, and
//! callbacks are removed (which waits out a signal in flight) before their
//! memory is freed.

use crate::sys;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{alloc::flags::GFP_KERNEL, error::to_result, prelude::*, sync::Arc};

/// What fence callbacks tell the buffer.
struct Signals {
    /// A device that reports through fences wrote since the last look.
    device_wrote: AtomicBool,
}

/// One hooked fence.
///
/// # Invariants
///
/// `cb` is registered on `fence` (or its callback already ran), and we hold
/// a reference on `fence`. `cb` is the first field, so the callback can
/// find the watch from its `dma_fence_cb`.
#[repr(C)]
struct Watch {
    cb: sys::dma_fence_cb,
    fence: *mut sys::dma_fence,
    signals: Arc<Signals>,
    /// The device writes: CPU reads wait for the fence.
    writes: bool,
    /// Its writes may leave stale CPU cache lines (a non-coherent device
    /// that accesses the pages itself): the signal is reported.
    stales: bool,
}

/// The fences a buffer watches.
pub(crate) struct FenceHooks {
    signals: Arc<Signals>,
    watches: KVec<KBox<Watch>>,
}

// SAFETY: The fence pointers are refcounted kernel objects usable from any
// thread; the buffer lock serialises access to the list.
unsafe impl Send for FenceHooks {}

/// Runs when a watched fence signals: atomic context, fence lock held.
///
/// # Safety
///
/// `cb` is the `cb` field of a live [`Watch`] (it is not freed before the
/// callback is removed or has run).
unsafe extern "C" fn signalled(_fence: *mut sys::dma_fence, cb: *mut sys::dma_fence_cb) {
    // SAFETY: `cb` is the first field of a live `#[repr(C)]` `Watch`.
    let watch = unsafe { &*cb.cast::<Watch>() };
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

    /// Watches `fence`: a device accesses the buffer until it signals,
    /// writing if `writes`; if `stales`, its writes may leave stale CPU
    /// cache lines and its signal is reported. A fence that already
    /// signalled counts at once.
    ///
    /// # Safety
    ///
    /// `fence` must be a valid fence (the caller holds a reference for the
    /// duration of the call).
    pub(crate) unsafe fn watch(
        &mut self,
        fence: *mut sys::dma_fence,
        writes: bool,
        stales: bool,
    ) -> Result {
        self.prune();
        // Room first, so that a hooked callback is never left without its
        // bookkeeping.
        self.watches.reserve(1, GFP_KERNEL)?;
        let mut watch = KBox::new(
            Watch {
                // SAFETY: All zeroes is a valid unregistered callback.
                cb: unsafe { core::mem::zeroed() },
                fence,
                signals: self.signals.clone(),
                writes,
                stales,
            },
            GFP_KERNEL,
        )?;
        // The reference is taken only once nothing can fail before the
        // callback is hooked or the reference dropped again (taken before
        // the allocation above, it leaked when that failed: found by fault
        // injection and kmemleak).
        // SAFETY: The caller guarantees `fence` is valid.
        // INVARIANT: From here on the watch holds a reference.
        unsafe { sys::rdh_dma_fence_get(fence) };
        // SAFETY: `watch` is boxed (stable address) and outlives the
        // registration (removed in `prune` or `drop` before it is freed).
        let ret =
            unsafe { sys::dma_fence_add_callback(watch.fence, &mut watch.cb, Some(signalled)) };
        match ret {
            0 => {
                // INVARIANT: Registered, reference held.
                self.watches.push(watch, GFP_KERNEL)?;
                Ok(())
            }
            ret if ret == ENOENT.to_errno() => {
                // Already signalled: the access is over now.
                if stales {
                    self.signals.device_wrote.store(true, Ordering::Release);
                }
                // SAFETY: Drop the reference taken above; never registered.
                unsafe { sys::rdh_dma_fence_put(watch.fence) };
                Ok(())
            }
            ret => {
                // SAFETY: As above.
                unsafe { sys::rdh_dma_fence_put(watch.fence) };
                to_result(ret)
            }
        }
    }

    /// Whether a watched writer finished since the last call.
    pub(crate) fn take_device_wrote(&self) -> bool {
        self.signals.device_wrote.swap(false, Ordering::Acquire)
    }

    /// Forgets fences that have signalled.
    fn prune(&mut self) {
        let mut i = 0;
        while i < self.watches.len() {
            // SAFETY: By the `Watch` invariant the fence is referenced.
            if unsafe { sys::rdh_dma_fence_is_signaled(self.watches[i].fence) } {
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
            // SAFETY: By the `Watch` invariant the fence is referenced.
            // INVARIANT: The reference just taken is the `FenceRef`'s (and
            // dropped with it if the push fails).
            let fence = FenceRef(unsafe { sys::rdh_dma_fence_get(watch.fence) });
            out.push(fence, GFP_KERNEL)?;
        }
        Ok(out)
    }
}

/// Unhooks a watch and drops its fence reference.
fn release(mut watch: KBox<Watch>) {
    // SAFETY: By the `Watch` invariant; removal takes the fence lock and so
    // waits for a callback in flight. Removing a callback that already ran
    // is allowed and returns false.
    unsafe {
        sys::dma_fence_remove_callback(watch.fence, &mut watch.cb);
        sys::rdh_dma_fence_put(watch.fence);
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
/// `DMA_BUF_IOCTL_SYNC` would after `begin_cpu_access`. Returns whether
/// writers were still running: then a device wrote.
///
/// # Safety
///
/// `resv` must be a valid reservation object.
pub(crate) unsafe fn wait_for_implicit_fences(
    resv: *mut sys::dma_resv,
    cpu_writes: bool,
) -> Result<bool> {
    let mut device_wrote = false;
    // SAFETY: The caller guarantees `resv` is valid; `device_wrote` is a
    // valid out-parameter.
    let ret = unsafe { sys::rdh_resv_wait_for_cpu(resv, cpu_writes, &mut device_wrote) };
    if ret < 0 {
        to_result(ret as i32)?;
    }
    Ok(device_wrote)
}
