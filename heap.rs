// SPDX-License-Identifier: GPL-2.0

//! The heap object: what every buffer of `/dev/dma_heap/<name>` shares —
//! the page pool and the maintenance device (shared with the uncached
//! heap registered beside it), the counters and the debugfs directory. The
//! dma-heap core owns one reference once the heap is registered (its
//! `priv`; a heap can never be removed), and every buffer another, so the
//! maintenance device outlives every mapping to it. KUnit makes private
//! heaps (no debugfs) the same way.

use crate::{
    buffer::HeapBuffer,
    cache_ops::MaintenanceDevice,
    debugfs::HeapDir,
    dmabuf::{self, DmaBuf},
    ownership::Policy,
    params,
    pool::{PagePool, Pool, PoolMode},
    stats::Totals,
};
use kernel::{
    prelude::*,
    sync::{Arc, ArcBorrow},
};

/// What the cached heap and the uncached one share: one pool of zeroed
/// pages (one limit, one worker, one shrinker) and the device it cleans on.
///
/// Field order is drop order: the pool's worker stops before the
/// maintenance device it cleans with goes.
struct Shared {
    pool: PagePool,
    maintenance: MaintenanceDevice,
}

/// A heap.
pub(crate) struct Heap {
    shared: Arc<Shared>,
    /// The uncached heap's: CPU mappings write-combined (see
    /// `ownership.rs`, "Uncached buffers").
    uncached: bool,
    totals: Totals,
    /// The heap's debugfs directory, if it has one.
    debugfs: Option<HeapDir>,
}

impl Heap {
    /// A heap with its own maintenance device, a page pool in `pool` mode
    /// and, if `debugfs_name` is given, a debugfs directory of that name
    /// (its files are made by [`HeapDir::stats_file`] once the heap exists).
    pub(crate) fn new(debugfs_name: Option<&CStr>, pool: PoolMode) -> Result<Arc<Self>> {
        let maintenance = MaintenanceDevice::new()?;
        let pool = PagePool::new(
            pool,
            maintenance.cleaner(),
            debugfs_name.unwrap_or(c"private"),
        )?;
        let shared = Arc::new(Shared { pool, maintenance }, GFP_KERNEL)?;
        Self::with(shared, false, debugfs_name.map(HeapDir::new))
    }

    /// The uncached heap beside this one, sharing its pool and maintenance
    /// device, with a debugfs directory `debugfs_name` if given. `ENODEV`
    /// if the maintenance device's mappings would bounce: the flush at
    /// allocation and the invalidates before snoops and bounce copies need
    /// that device's cache maintenance.
    pub(crate) fn uncached(&self, debugfs_name: Option<&CStr>) -> Result<Arc<Self>> {
        if self.maintenance().bounce().is_some() {
            return Err(ENODEV);
        }
        let debugfs = match (&self.debugfs, debugfs_name) {
            (Some(dir), Some(name)) => Some(dir.beside(name)),
            (None, name) => name.map(HeapDir::new),
            (_, None) => None,
        };
        Self::with(self.shared.clone(), true, debugfs)
    }

    fn with(shared: Arc<Shared>, uncached: bool, debugfs: Option<HeapDir>) -> Result<Arc<Self>> {
        let heap = Self {
            shared,
            uncached,
            totals: Totals::new(),
            debugfs,
        };
        Ok(Arc::new(heap, GFP_KERNEL)?)
    }

    /// The heap's maintenance device.
    pub(crate) fn maintenance(&self) -> &MaintenanceDevice {
        &self.shared.maintenance
    }

    /// The heap's page pool.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        self.shared.pool.pool()
    }

    /// The heap's counters.
    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The heap's debugfs directory, if any.
    pub(crate) fn debugfs(&self) -> Option<&HeapDir> {
        self.debugfs.as_ref()
    }

    /// The cache maintenance policy new buffers get: `uncached` for the
    /// uncached heap; else parameter `sync_policy`, unless the maintenance
    /// device's mappings would bounce (then `always`).
    pub(crate) fn sync_policy(&self) -> Policy {
        if self.uncached {
            Policy::Uncached
        } else if self.maintenance().bounce().is_some() || params::sync_policy_always() {
            Policy::Always
        } else {
            Policy::Tracked
        }
    }

    /// Gives a freshly exported buffer its debugfs file (named after the
    /// dma-buf's inode), if per-buffer files are wanted.
    pub(crate) fn exported(&self, dmabuf: DmaBuf<HeapBuffer>) -> DmaBuf<HeapBuffer> {
        if let (Some(dir), true) = (&self.debugfs, params::debugfs_buffers()) {
            let buffer: Arc<HeapBuffer> = dmabuf.exporter().into();
            if let Some(file) = dir.buffer_file(dmabuf.inode(), buffer.clone()) {
                buffer.set_debugfs_file(file);
            }
        }
        dmabuf
    }
}

impl dmabuf::Allocator for Heap {
    type Buffer = HeapBuffer;

    fn allocate(
        heap: ArcBorrow<'_, Self>,
        len: usize,
        fd_flags: u32,
        exp_name: &'static CStr,
    ) -> Result<DmaBuf<HeapBuffer>> {
        let buffer = HeapBuffer::new(heap.into(), len)?;
        Ok(heap.exported(dmabuf::export(buffer, len, fd_flags, exp_name)?))
    }

    fn table() -> &'static dmabuf::HeapTable {
        static TABLE: dmabuf::HeapTable = dmabuf::HeapTable::of::<Heap>();
        &TABLE
    }
}
