// SPDX-License-Identifier: GPL-2.0

//! For long loops in process context: whether the current task was killed,
//! to stop early (`fatal_signal_pending`; the kernel crate's `Task` has
//! `signal_pending` only: TODO(fatal-signal) in `rust/todo.rst`), and a
//! point where another task may run (`cond_resched`).
//!
//! C header: [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h)

use crate::bindings;

/// Whether the current task has a fatal signal pending (it was killed).
///
/// # Examples
///
/// ```
/// // The task running the doctests has not been killed.
/// assert!(!kernel::task_signal::fatal_signal_pending());
/// ```
pub fn fatal_signal_pending() -> bool {
    // SAFETY: `current` is valid in process context, and in any other
    // context this reads the interrupted task's state harmlessly.
    unsafe { bindings::fatal_signal_pending(bindings::get_current()) != 0 }
}

/// Lets another task run if one is due: for kernels without preemption,
/// between the pieces of a long job in process context, holding no
/// spinlock (the kernel warns of a sleep in atomic context).
pub fn cond_resched() {
    // SAFETY: No precondition for memory safety: as for every function
    // that may sleep, a call in atomic context is a bug the kernel reports
    // (`might_resched`), not undefined behaviour.
    unsafe { bindings::cond_resched() };
}
