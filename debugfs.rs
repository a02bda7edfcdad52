// SPDX-License-Identifier: GPL-2.0

//! What `/sys/kernel/debug/rust_dmabuf_heap/<heap>/` shows, through
//! `kernel::debugfs`: every file owns what it shows (an `Arc` of the heap's context
//! or of the buffer) and is removed when its `File` value is dropped, so
//! its lifetime is a type, not a comment.
//!
//! - `stats`: heap totals since load: policy, buffers and bytes allocated,
//!   bytes in live buffers, bytes the page pool holds, bytes cleaned and
//!   invalidated, operations skipped by reason, user access trapped by
//!   faults.
//! - `pool`: the page pool (`pool.rs`): its cap, zeroed chunks per order,
//!   bytes ready (zeroed), on the backlog (freed, not yet zeroed), being zeroed,
//!   and all it holds (`pool_bytes`); its demand (`demand.rs`): bytes of its
//!   buffers in use, the most allocated within a fifth of the window lately
//!   (wanted) and what it may keep now; and since load bytes taken from it (hits) or from the page
//!   allocator instead (misses), zeroed and cleaned by its worker, freed by
//!   the shrinker, freed instead of pooled (bypassed), and pooled, then
//!   freed because demand no longer asked for them (released).
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
    context::HeapContext,
    glue,
    ownership::Policy,
    pages::{ORDERS, PAGE_SIZE},
    stats::{bounce_name, skip_name, Totals, BOUNCES, SKIP_REASONS},
};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    str::CString,
    sync::Arc,
};

/// A file showing the heap (it holds a reference on it).
pub(crate) type HeapFile = Pin<KBox<File<Arc<HeapContext>>>>;

/// A heap's directory and its `buffers` subdirectory.
pub(crate) struct HeapDir {
    /// `rust_dmabuf_heap`, which the heaps of the module share.
    top: Dir,
    heap: Dir,
    buffers: Dir,
}

impl HeapDir {
    /// Creates `rust_dmabuf_heap/<name>/buffers`. Failures are silent:
    /// debugfs is optional (files in a failed directory are not created).
    pub(crate) fn new(name: &CStr) -> Self {
        Self::under(Dir::new(c"rust_dmabuf_heap"), name)
    }

    /// Creates `rust_dmabuf_heap/<name>/buffers` for another heap of the
    /// module (a second `rust_dmabuf_heap` could not be created).
    pub(crate) fn beside(&self, name: &CStr) -> Self {
        Self::under(self.top.clone(), name)
    }

    fn under(top: Dir, name: &CStr) -> Self {
        let heap = top.subdir(name);
        let buffers = heap.subdir(c"buffers");
        Self { top, heap, buffers }
    }

    /// The heap's `stats` file.
    pub(crate) fn stats_file(&self, heap: Arc<HeapContext>) -> Result<HeapFile> {
        KBox::pin_init(
            self.heap.read_callback_file(c"stats", heap, &show_heap),
            GFP_KERNEL,
        )
    }

    /// The heap's `pool` file.
    pub(crate) fn pool_file(&self, heap: Arc<HeapContext>) -> Result<HeapFile> {
        KBox::pin_init(
            self.heap.read_callback_file(c"pool", heap, &show_pool),
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
fn show_heap(heap: &Arc<HeapContext>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let totals = heap.totals();
    let load = Totals::load;
    let pool = heap.pool().levels();
    writeln!(f, "policy: {}", heap.sync_policy().name())?;
    writeln!(f, "zone: {}", heap.zone().name())?;
    writeln!(f, "buffers_allocated: {}", load(&totals.buffers_allocated))?;
    writeln!(f, "bytes_allocated: {}", load(&totals.bytes_allocated))?;
    writeln!(
        f,
        "allocation_flush_bytes: {}",
        load(&totals.allocation_flush_bytes)
    )?;
    writeln!(f, "live_bytes: {}", pool.unpooled_bytes)?;
    writeln!(f, "pool_bytes: {}", pool.held_bytes())?;
    writeln!(f, "clean_bytes: {}", load(&totals.clean_bytes))?;
    writeln!(f, "invalidate_bytes: {}", load(&totals.invalidate_bytes))?;
    for (reason, count) in SKIP_REASONS.iter().zip(totals.skipped.iter()) {
        writeln!(f, "skipped_{}: {}", skip_name(*reason), load(count))?;
    }
    writeln!(
        f,
        "maintenance: {}",
        heap.maintenance().bounce().map_or("direct", bounce_name)
    )?;
    writeln!(f, "attachments: {}", load(&totals.attachments))?;
    for (reason, count) in BOUNCES.iter().zip(totals.bounce_attachments.iter()) {
        writeln!(f, "bounce_synced_{}: {}", bounce_name(*reason), load(count))?;
    }
    writeln!(
        f,
        "attachments_within_reach: {}",
        load(&totals.within_reach_attachments)
    )?;
    // Write-combined mappings are never trapped.
    let unbracketed = if heap.sync_policy() == Policy::Uncached {
        "trust"
    } else {
        glue::unbracketed_cpu_name()
    };
    writeln!(f, "unbracketed_cpu: {unbracketed}")?;
    writeln!(f, "user_faults: {}", load(&totals.user_faults))?;
    writeln!(
        f,
        "unbracketed_faults: {}",
        load(&totals.unbracketed_faults)
    )?;
    writeln!(f, "user_revokes: {}", load(&totals.revokes))?;
    writeln!(f, "fault_calls: {}", load(&totals.fault_calls))?;
    writeln!(f, "user_entries: {}", load(&totals.user_entries))?;
    writeln!(f, "user_huge_entries: {}", load(&totals.user_huge_entries))
}

/// Shows the page pool.
fn show_pool(heap: &Arc<HeapContext>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let pool = heap.pool();
    let levels = pool.levels();
    let counters = &pool.counters;
    let load = Totals::load;
    writeln!(f, "limit_bytes: {}", pool.limit_bytes())?;
    writeln!(f, "cleans: {}", pool.cleans())?;
    for (order, chunks) in ORDERS.iter().zip(levels.chunks) {
        writeln!(f, "order{order}_chunks: {chunks}")?;
    }
    writeln!(f, "ready_bytes: {}", levels.zeroed_pages * PAGE_SIZE)?;
    writeln!(f, "unclean_bytes: {}", levels.unclean_pages * PAGE_SIZE)?;
    writeln!(f, "backlog_bytes: {}", levels.backlog_pages * PAGE_SIZE)?;
    writeln!(f, "working_bytes: {}", levels.working_pages * PAGE_SIZE)?;
    writeln!(f, "pool_bytes: {}", levels.held_bytes())?;
    writeln!(f, "in_use_bytes: {}", levels.in_use_pages * PAGE_SIZE)?;
    writeln!(f, "wanted_bytes: {}", levels.wanted_pages * PAGE_SIZE)?;
    writeln!(f, "keep_bytes: {}", levels.keep_pages * PAGE_SIZE)?;
    writeln!(f, "window_ms: {}", levels.window_ms)?;
    writeln!(f, "hit_bytes: {}", load(&counters.hit_bytes))?;
    writeln!(f, "miss_bytes: {}", load(&counters.miss_bytes))?;
    writeln!(f, "zeroed_bytes: {}", load(&counters.zeroed_bytes))?;
    writeln!(f, "cleaned_bytes: {}", load(&counters.cleaned_bytes))?;
    writeln!(f, "shrunk_bytes: {}", load(&counters.shrunk_bytes))?;
    writeln!(f, "bypassed_bytes: {}", load(&counters.bypassed_bytes))?;
    writeln!(f, "released_bytes: {}", load(&counters.released_bytes))
}

/// Shows one buffer.
fn show_buffer(buffer: &Arc<HeapBuffer>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (ownership, stats) = buffer.snapshot();
    let lines = ownership.lines();
    writeln!(f, "size: {}", buffer.len())?;
    writeln!(f, "policy: {}", ownership.policy().name())?;
    writeln!(f, "mapped: {}", ownership.mapped())?;
    writeln!(f, "cpu_depth: {}", ownership.cpu_depth())?;
    writeln!(f, "open_ranges: {}", ownership.open_ranges().count())?;
    writeln!(f, "runs: {}", ownership.extents().runs().count())?;
    writeln!(f, "maybe_dirty: {}", lines.maybe_dirty)?;
    writeln!(f, "maybe_stale: {}", lines.maybe_stale)?;
    writeln!(f, "cleans: {}", stats.cleans)?;
    writeln!(f, "invalidates: {}", stats.invalidates)?;
    writeln!(f, "clean_bytes: {}", stats.clean_bytes)?;
    writeln!(f, "invalidate_bytes: {}", stats.invalidate_bytes)?;
    for (reason, count) in SKIP_REASONS.iter().zip(stats.skipped.iter()) {
        writeln!(f, "skipped_{}: {}", skip_name(*reason), count)?;
    }
    writeln!(f, "write_combined: {}", buffer.write_combined())?;
    writeln!(f, "traps_user_access: {}", buffer.traps_user_access())?;
    writeln!(f, "huge_runs: {}", buffer.huge_runs())?;
    writeln!(f, "user_access: {:?}", ownership.user_access())?;
    writeln!(f, "user_faults: {}", stats.user_faults)?;
    writeln!(f, "unbracketed_faults: {}", stats.unbracketed_faults)?;
    writeln!(f, "user_revokes: {}", stats.revokes)
}
