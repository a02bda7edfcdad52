// SPDX-License-Identifier: GPL-2.0

//! Reservation objects: the implicit-sync fences of a shared buffer.
//!
//! C header: [`include/linux/dma-resv.h`](srctree/include/linux/dma-resv.h)

use crate::bindings;
use kernel::{error::to_result, prelude::*, types::Opaque};

/// How a fence in a reservation object is used (`enum dma_resv_usage`).
/// Each usage includes the ones before it: waiting for [`Usage::Read`]
/// waits for writers too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Kernel memory management (moves, clears).
    Kernel,
    /// Implicit-sync writers.
    Write,
    /// Implicit-sync readers.
    Read,
    /// Neither: bookkeeping only.
    Bookkeep,
}

impl Usage {
    /// What a CPU access must wait for: every fence if it writes, the
    /// writers' if it only reads (`dma_resv_usage_rw`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::dma_resv::Usage;
    ///
    /// assert_eq!(Usage::for_cpu(true), Usage::Read);
    /// assert_eq!(Usage::for_cpu(false), Usage::Write);
    /// ```
    pub fn for_cpu(writes: bool) -> Self {
        if writes {
            Usage::Read
        } else {
            Usage::Write
        }
    }

    fn as_raw(self) -> bindings::dma_resv_usage {
        match self {
            Usage::Kernel => bindings::dma_resv_usage_DMA_RESV_USAGE_KERNEL,
            Usage::Write => bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE,
            Usage::Read => bindings::dma_resv_usage_DMA_RESV_USAGE_READ,
            Usage::Bookkeep => bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP,
        }
    }
}

/// A fence by identity: its context and sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FenceId {
    /// The fence's timeline.
    pub context: u64,
    /// Its place on the timeline.
    pub seqno: u64,
}

/// A reservation object (`struct dma_resv`).
///
/// # Invariants
///
/// A `&Resv` points to a live reservation object whose lock the holder of
/// the reference does not hold.
#[repr(transparent)]
pub struct Resv(Opaque<bindings::dma_resv>);

// SAFETY: A reservation object is used from any thread under its own lock.
unsafe impl Sync for Resv {}

impl Resv {
    /// Borrows a reservation object from C.
    ///
    /// # Safety
    ///
    /// `ptr` must be live for `'a`, and not locked by the caller meanwhile.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::dma_resv) -> &'a Resv {
        // SAFETY: `Resv` is a transparent wrapper; the rest is the caller's
        // promise.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut bindings::dma_resv {
        self.0.get()
    }

    /// Waits, interruptibly, until the fences of `usage` (and the usages
    /// before it) have signalled.
    pub fn wait(&self, usage: Usage) -> Result {
        // SAFETY: The object is live (type invariant).
        let ret = unsafe {
            bindings::dma_resv_wait_timeout(
                self.as_raw(),
                usage.as_raw(),
                true,
                kernel::ffi::c_long::MAX.unsigned_abs(),
            )
        };
        if ret < 0 {
            to_result(ret as i32)?;
        }
        Ok(())
    }

    /// The fences of exactly `usage` in the object now, signalled or not
    /// (the locked iterator; the unlocked one skips signalled fences):
    /// takes the reservation lock, interruptibly. Fills `ids` with the
    /// first ones and returns how many there are (which may be more).
    pub fn fence_ids(&self, usage: Usage, ids: &mut [FenceId]) -> Result<usize> {
        // SAFETY: The object is live and not locked by us (type invariant).
        to_result(unsafe {
            bindings::dma_resv_lock_interruptible(self.as_raw(), core::ptr::null_mut())
        })?;
        // SAFETY: All zeroes is a valid cursor; `dma_resv_iter_begin` sets
        // these three fields and no others.
        let mut cursor: bindings::dma_resv_iter = unsafe { core::mem::zeroed() };
        cursor.obj = self.as_raw();
        cursor.usage = usage.as_raw();
        cursor.fence = core::ptr::null_mut();
        let mut count = 0;
        // SAFETY: The lock is held, as the locked iterator requires; each
        // fence it returns is live while the lock is held.
        let mut fence = unsafe { bindings::dma_resv_iter_first(&mut cursor) };
        while !fence.is_null() {
            if cursor.fence_usage == usage.as_raw() {
                if let Some(id) = ids.get_mut(count) {
                    // SAFETY: See above.
                    let (context, seqno) = unsafe { ((*fence).context, (*fence).seqno) };
                    *id = FenceId { context, seqno };
                }
                count += 1;
            }
            // SAFETY: As above.
            fence = unsafe { bindings::dma_resv_iter_next(&mut cursor) };
        }
        // SAFETY: Locked above.
        unsafe { bindings::dma_resv_unlock(self.as_raw()) };
        Ok(count)
    }
}
