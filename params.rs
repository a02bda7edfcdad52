// SPDX-License-Identifier: GPL-2.0

//! The module parameters (defined in the C shim: Rust `module!` parameters
//! are integers only, and ours are strings or take names), as safe reads.

use crate::sys;
use kernel::prelude::*;

/// `heap_name`: the name under `/dev/dma_heap`. Static storage, read-only
/// (0444), so it lives as long as the module.
pub(crate) fn heap_name() -> &'static CStr {
    // SAFETY: A NUL-terminated module parameter string that never changes
    // after load and lives as long as the module.
    unsafe { CStr::from_char_ptr(sys::rdh_heap_name()) }
}

/// The uncached heap's name (`heap_name` + `_uncached`), unless parameter
/// `uncached_heap` turned it off. Static storage, made once at load.
pub(crate) fn uncached_heap_name() -> Option<&'static CStr> {
    // SAFETY: Reads module parameters (read-only after load) and writes the
    // name into its static buffer, the same bytes at every call.
    let name = unsafe { sys::rdh_uncached_heap_name() };
    // SAFETY: A NUL-terminated string in static storage; later calls write
    // the same bytes again.
    (!name.is_null()).then(|| unsafe { CStr::from_char_ptr(name) })
}

/// `sync_policy=always`: new buffers behave like the system heap's.
pub(crate) fn sync_policy_always() -> bool {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_sync_policy_always() }
}

/// `unbracketed_cpu=trap`: new buffers trap user access by faults.
pub(crate) fn trap_user_access() -> bool {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_trap_user_access() }
}

/// The `unbracketed_cpu` parameter's value.
pub(crate) fn unbracketed_cpu_name() -> &'static str {
    if trap_user_access() {
        "trap"
    } else {
        "trust"
    }
}

/// `debugfs_buffers`: new buffers get a debugfs file.
pub(crate) fn debugfs_buffers() -> bool {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_debugfs_buffers_enabled() }
}
