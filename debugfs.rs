// SPDX-License-Identifier: GPL-2.0

//! What `/sys/kernel/debug/rust_dmabuf_heap/<heap>/` shows.
//!
//! - `stats`: heap totals since load: policy, buffers and bytes allocated
//!   and live, bytes cleaned and invalidated, operations skipped by reason.
//! - `buffers/<ino>`: one file per live buffer allocated while the
//!   `debugfs_buffers` parameter was on, named after its dma-buf inode
//!   (what `fstat` on the fd reports as `st_ino`): size, policy, ownership
//!   state, its own counters, including user accesses trapped by faults
//!   (`user_faults`, of them outside a SYNC bracket `unbracketed_faults`)
//!   and revocations of user page-table entries (`user_revokes`).
//!
//! Every line is `key: value` so that tests can read it. The files and the
//! `seq_file` plumbing are in the C shim; the text is written here.

use crate::{
    buffer::HeapBuffer,
    cache_ops::{self, Bounce},
    pages::LIVE_BYTES,
    stats::{skip_name, SKIP_REASONS, TOTALS},
    sys,
};
use core::{ffi::c_void, ptr::NonNull, sync::atomic::Ordering};
use kernel::{prelude::*, seq_file::SeqFile, seq_print};

/// Creates the heap's directory. Failures are ignored: debugfs is optional.
pub(crate) fn init(heap_name: &'static CStr) {
    // SAFETY: `heap_name` is static.
    unsafe { sys::rdh_debugfs_init(heap_name.as_char_ptr()) };
}

/// Removes what [`init`] created, when module init fails after it (no
/// buffer can exist yet).
pub(crate) fn exit() {
    // SAFETY: No buffer files exist: the heap was never registered.
    unsafe { sys::rdh_debugfs_exit() };
}

/// A buffer's debugfs file.
///
/// # Invariants
///
/// `dentry` was returned by `rdh_debugfs_add_buffer` (it may be an error
/// pointer, which removal ignores) and is removed on drop.
pub(crate) struct BufferFile {
    dentry: NonNull<sys::dentry>,
}

// SAFETY: A dentry may be removed from any thread.
unsafe impl Send for BufferFile {}
// SAFETY: Shared references do nothing with the dentry.
unsafe impl Sync for BufferFile {}

impl BufferFile {
    /// Adds the file for `buffer`, whose dma-buf has inode `ino`, if the
    /// `debugfs_buffers` parameter asks for per-buffer files.
    ///
    /// # Safety
    ///
    /// `buffer` must outlive the returned value.
    pub(crate) unsafe fn new(ino: u64, buffer: &HeapBuffer) -> Option<Self> {
        // SAFETY: Reads a module parameter.
        if !unsafe { sys::rdh_debugfs_buffers_enabled() } {
            return None;
        }
        let data = core::ptr::from_ref(buffer).cast_mut().cast::<c_void>();
        // SAFETY: `buffer` outlives the file (the caller's promise), and
        // `Drop` removes it, waiting for readers.
        let dentry = NonNull::new(unsafe { sys::rdh_debugfs_add_buffer(ino, data) })?;
        // INVARIANT: Returned by `rdh_debugfs_add_buffer`.
        Some(Self { dentry })
    }
}

impl Drop for BufferFile {
    fn drop(&mut self) {
        // SAFETY: By the type invariant; removal waits for readers.
        unsafe { sys::rdh_debugfs_remove(self.dentry.as_ptr()) };
    }
}

/// Shows the heap totals.
///
/// # Safety
///
/// Called by the `stats` file's show callback with its `seq_file`.
#[no_mangle]
unsafe extern "C" fn rdh_show_heap_stats(m: *mut sys::seq_file) -> c_int {
    // SAFETY: `m` is valid for this call.
    let m = unsafe { SeqFile::from_raw(m) };
    let load = |counter: &core::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    seq_print!(m, "policy: {}\n", crate::sync_policy().name());
    seq_print!(
        m,
        "buffers_allocated: {}\n",
        load(&TOTALS.buffers_allocated)
    );
    seq_print!(m, "bytes_allocated: {}\n", load(&TOTALS.bytes_allocated));
    seq_print!(m, "live_bytes: {}\n", LIVE_BYTES.load(Ordering::Relaxed));
    seq_print!(m, "clean_bytes: {}\n", load(&TOTALS.clean_bytes));
    seq_print!(m, "invalidate_bytes: {}\n", load(&TOTALS.invalidate_bytes));
    for (reason, count) in SKIP_REASONS.iter().zip(TOTALS.skipped.iter()) {
        seq_print!(m, "skipped_{}: {}\n", skip_name(*reason), load(count));
    }
    seq_print!(
        m,
        "maintenance: {}\n",
        cache_ops::maintenance_bounce().map_or("direct", Bounce::name)
    );
    seq_print!(m, "attachments: {}\n", load(&TOTALS.attachments));
    for (reason, count) in Bounce::ALL.iter().zip(TOTALS.bounce_attachments.iter()) {
        seq_print!(m, "bounce_synced_{}: {}\n", reason.name(), load(count));
    }
    seq_print!(m, "unbracketed_cpu: {}\n", crate::unbracketed_cpu_name());
    seq_print!(m, "user_faults: {}\n", load(&TOTALS.user_faults));
    seq_print!(
        m,
        "unbracketed_faults: {}\n",
        load(&TOTALS.unbracketed_faults)
    );
    seq_print!(m, "user_revokes: {}\n", load(&TOTALS.revokes));
    0
}

/// Shows one buffer.
///
/// # Safety
///
/// Called by a buffer file's show callback with its `seq_file` and the
/// buffer it was created for, which is live until the file is removed.
#[no_mangle]
unsafe extern "C" fn rdh_show_buffer(m: *mut sys::seq_file, buffer: *mut c_void) -> c_int {
    // SAFETY: See the function's safety section.
    let (m, buffer) = unsafe { (SeqFile::from_raw(m), &*buffer.cast::<HeapBuffer>()) };
    let (ownership, stats) = buffer.snapshot();
    let lines = ownership.lines();
    seq_print!(m, "size: {}\n", buffer.len());
    seq_print!(m, "policy: {}\n", ownership.policy().name());
    seq_print!(m, "mapped: {}\n", ownership.mapped());
    seq_print!(m, "cpu_depth: {}\n", ownership.cpu_depth());
    seq_print!(m, "maybe_dirty: {}\n", lines.maybe_dirty);
    seq_print!(m, "maybe_stale: {}\n", lines.maybe_stale);
    seq_print!(m, "cleans: {}\n", stats.cleans);
    seq_print!(m, "invalidates: {}\n", stats.invalidates);
    seq_print!(m, "clean_bytes: {}\n", stats.clean_bytes);
    seq_print!(m, "invalidate_bytes: {}\n", stats.invalidate_bytes);
    for (reason, count) in SKIP_REASONS.iter().zip(stats.skipped.iter()) {
        seq_print!(m, "skipped_{}: {}\n", skip_name(*reason), count);
    }
    seq_print!(m, "traps_user_access: {}\n", buffer.traps_user_access());
    seq_print!(m, "user_access: {:?}\n", ownership.user_access());
    seq_print!(m, "user_faults: {}\n", stats.user_faults);
    seq_print!(m, "unbracketed_faults: {}\n", stats.unbracketed_faults);
    seq_print!(m, "user_revokes: {}\n", stats.revokes);
    0
}
