// SPDX-License-Identifier: GPL-2.0

//! Whether the current task was killed, for long loops in process context
//! to stop early (`fatal_signal_pending`; the kernel crate's `Task` has
//! `signal_pending` only: TODO(fatal-signal) in `rust/todo.rst`).
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
