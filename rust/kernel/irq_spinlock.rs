// SPDX-License-Identifier: GPL-2.0

//! A spinlock that disables interrupts while held (`spin_lock_irqsave`),
//! for state shared with callbacks that may run in hard IRQ, such as fence
//! callbacks. It is the kernel crate's [`Lock`] with a backend of its own.
//!
//! C header: [`include/linux/spinlock.h`](srctree/include/linux/spinlock.h)
//!
//! The kernel crate has `SpinLockIrq` from 7.3 on (TODO(spinlock-irq) in
//! `rust/todo.rst`).

use crate::bindings;
use kernel::{
    ffi::{c_char, c_ulong},
    sync::lock::{Backend, Lock},
};

/// A spinlock taken with local interrupts disabled and restored.
pub type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

/// The backend of [`IrqSpinLock`]: a `spinlock_t`, the saved interrupt
/// flags in the guard.
pub struct IrqSaveBackend;

// SAFETY: A `spinlock_t` gives mutual exclusion, and interrupts stay off on
// the owner's CPU for as long as it is held, so a callback in hard IRQ
// there cannot spin on it. `relock` uses the default, the same locking.
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(ptr: *mut Self::State, name: *const c_char, key: *mut bindings::lock_class_key) {
        // SAFETY: `ptr` is valid for writes; `name` and `key` are valid for
        // ever (the caller's promise).
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: `ptr` is an initialised lock (the caller's promise).
        unsafe { bindings::spin_lock_irqsave(ptr) }
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: The caller owns the lock, taken with these flags.
        unsafe { bindings::spin_unlock_irqrestore(ptr, *flags) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags = 0;
        // SAFETY: `ptr` is an initialised lock (the caller's promise);
        // `flags` is valid for writes.
        unsafe { bindings::spin_trylock_irqsave(ptr, &mut flags) }.then_some(flags)
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: `ptr` is an initialised lock (the caller's promise).
        unsafe { bindings::spin_assert_is_held(ptr) }
    }
}

/// An [`IrqSpinLock`] initialiser around `$inner`, with a lock class of
/// its call site.
macro_rules! new_irq_spinlock {
    ($inner:expr) => {
        $crate::irq_spinlock::IrqSpinLock::new(
            $inner,
            kernel::optional_name!(),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_irq_spinlock;
