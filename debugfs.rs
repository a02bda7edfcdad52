// SPDX-License-Identifier: GPL-2.0

//! What `/sys/kernel/debug/rust_dmabuf_heap/<heap>/` shows, through
//! `kernel::debugfs`: every file owns what it shows (an `Arc` of the heap
//! or of the buffer) and is removed when its `File` value is dropped, so
//! its lifetime is a type, not a comment.
//!
//! - `stats`: heap totals since load: policy, buffers and bytes allocated
//!   and live, bytes cleaned and invalidated, operations skipped by reason,
//!   user access trapped by faults.
//! - `buffers/<ino>`: one file per live buffer allocated while the
//!   `debugfs_buffers` parameter was on, named after its dma-buf inode
//!   (what `fstat` on the fd reports as `st_ino`): size, policy, ownership
//!   state, its own counters, including user accesses trapped by faults
//!   (`user_faults`, of them outside a SYNC bracket `unbracketed_faults`)
//!   and revocations of user page-table entries (`user_revokes`).
//!
//! Every line is `key: value` so that tests can read it.

use crate::{
    buffer::{BufferFile, HeapBuffer},
    cache_ops::Bounce,
    heap::Heap,
    pages::LIVE_BYTES,
    params,
    stats::{skip_name, Totals, SKIP_REASONS},
};
use core::{fmt, sync::atomic::Ordering};
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    str::CString,
    sync::Arc,
};

/// A heap's directory and its `buffers` subdirectory.
pub(crate) struct HeapDir {
    heap: Dir,
    buffers: Dir,
}

impl HeapDir {
    /// Creates `rust_dmabuf_heap/<name>/buffers`. Failures are silent:
    /// debugfs is optional (files in a failed directory are not created).
    pub(crate) fn new(name: &CStr) -> Self {
        let heap = Dir::new(c"rust_dmabuf_heap").subdir(name);
        let buffers = heap.subdir(c"buffers");
        Self { heap, buffers }
    }

    /// The heap's `stats` file.
    pub(crate) fn stats_file(&self, heap: Arc<Heap>) -> Result<Pin<KBox<File<Arc<Heap>>>>> {
        KBox::pin_init(
            self.heap.read_callback_file(c"stats", heap, &show_heap),
            GFP_KERNEL,
        )
    }

    /// The file of `buffer`, whose dma-buf has inode `ino`.
    pub(crate) fn buffer_file(&self, ino: u64, buffer: Arc<HeapBuffer>) -> Option<BufferFile> {
        let name = CString::try_from_fmt(fmt!("{ino}")).ok()?;
        KBox::pin_init(
            self.buffers.read_callback_file(&name, buffer, &show_buffer),
            GFP_KERNEL,
        )
        .ok()
    }
}

/// Shows the heap totals.
fn show_heap(heap: &Arc<Heap>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let totals = heap.totals();
    let load = Totals::load;
    writeln!(f, "policy: {}", heap.sync_policy().name())?;
    writeln!(f, "buffers_allocated: {}", load(&totals.buffers_allocated))?;
    writeln!(f, "bytes_allocated: {}", load(&totals.bytes_allocated))?;
    writeln!(f, "live_bytes: {}", LIVE_BYTES.load(Ordering::Relaxed))?;
    writeln!(f, "clean_bytes: {}", load(&totals.clean_bytes))?;
    writeln!(f, "invalidate_bytes: {}", load(&totals.invalidate_bytes))?;
    for (reason, count) in SKIP_REASONS.iter().zip(totals.skipped.iter()) {
        writeln!(f, "skipped_{}: {}", skip_name(*reason), load(count))?;
    }
    writeln!(
        f,
        "maintenance: {}",
        heap.maintenance().bounce().map_or("direct", Bounce::name)
    )?;
    writeln!(f, "attachments: {}", load(&totals.attachments))?;
    for (reason, count) in Bounce::ALL.iter().zip(totals.bounce_attachments.iter()) {
        writeln!(f, "bounce_synced_{}: {}", reason.name(), load(count))?;
    }
    writeln!(f, "unbracketed_cpu: {}", params::unbracketed_cpu_name())?;
    writeln!(f, "user_faults: {}", load(&totals.user_faults))?;
    writeln!(
        f,
        "unbracketed_faults: {}",
        load(&totals.unbracketed_faults)
    )?;
    writeln!(f, "user_revokes: {}", load(&totals.revokes))
}

/// Shows one buffer.
fn show_buffer(buffer: &Arc<HeapBuffer>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (ownership, stats) = buffer.snapshot();
    let lines = ownership.lines();
    writeln!(f, "size: {}", buffer.len())?;
    writeln!(f, "policy: {}", ownership.policy().name())?;
    writeln!(f, "mapped: {}", ownership.mapped())?;
    writeln!(f, "cpu_depth: {}", ownership.cpu_depth())?;
    writeln!(f, "maybe_dirty: {}", lines.maybe_dirty)?;
    writeln!(f, "maybe_stale: {}", lines.maybe_stale)?;
    writeln!(f, "cleans: {}", stats.cleans)?;
    writeln!(f, "invalidates: {}", stats.invalidates)?;
    writeln!(f, "clean_bytes: {}", stats.clean_bytes)?;
    writeln!(f, "invalidate_bytes: {}", stats.invalidate_bytes)?;
    for (reason, count) in SKIP_REASONS.iter().zip(stats.skipped.iter()) {
        writeln!(f, "skipped_{}: {}", skip_name(*reason), count)?;
    }
    writeln!(f, "traps_user_access: {}", buffer.traps_user_access())?;
    writeln!(f, "user_access: {:?}", ownership.user_access())?;
    writeln!(f, "user_faults: {}", stats.user_faults)?;
    writeln!(f, "unbracketed_faults: {}", stats.unbracketed_faults)?;
    writeln!(f, "user_revokes: {}", stats.revokes)
}
