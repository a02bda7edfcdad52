// SPDX-License-Identifier: GPL-2.0

//! What every buffer of one heap shares and holds: the page pool of its
//! zone (shared with the uncached heap of the same zone), the maintenance
//! device (shared by all heaps), the heap's policy and its counters.
//! Buffers hold a reference, so the maintenance device outlives every
//! mapping to it; the heap object (`heap.rs`) holds another, and KUnit
//! makes private contexts the same way.

use crate::{
    cache_ops::MaintenanceDevice,
    glue,
    ownership::Policy,
    pages::Zone,
    pool::{PagePool, Pool, PoolMode},
    stats::Totals,
};
use kernel::{prelude::*, sync::Arc};

/// What the cached heap and the uncached one of a zone share: one pool of
/// zeroed pages (one limit, one worker, one shrinker) and the device it
/// cleans on, which the other zone's heaps use too.
///
/// Field order is drop order: the pool's worker stops before the
/// maintenance device it cleans with can go.
struct Shared {
    pool: PagePool,
    pool_mode: PoolMode,
    maintenance: Arc<MaintenanceDevice>,
}

impl Shared {
    fn new(
        maintenance: Arc<MaintenanceDevice>,
        name: &CStr,
        pool_mode: PoolMode,
        zone: Zone,
    ) -> Result<Arc<Self>> {
        let pool = PagePool::new(pool_mode, zone, maintenance.cleaner(), name)?;
        let shared = Self {
            pool,
            pool_mode,
            maintenance,
        };
        Ok(Arc::new(shared, GFP_KERNEL)?)
    }
}

/// The context of one heap's buffers.
pub(crate) struct HeapContext {
    shared: Arc<Shared>,
    /// The uncached heap's: CPU mappings write-combined (see
    /// `ownership.rs`, "Uncached buffers").
    uncached: bool,
    totals: Totals,
}

impl HeapContext {
    /// A context for memory of any zone, with its own maintenance device
    /// and a page pool in `pool` mode, whose thread and shrinker are named
    /// after `name`.
    pub(crate) fn new(name: &CStr, pool: PoolMode) -> Result<Arc<Self>> {
        let maintenance = Arc::new(MaintenanceDevice::new()?, GFP_KERNEL)?;
        Self::with(Shared::new(maintenance, name, pool, Zone::Any)?, false)
    }

    /// The DMA32 heap's context beside this one: memory below 4 GiB from a
    /// pool of its own (a pool of the same mode, whose thread and shrinker
    /// are named after `name`), the same maintenance device.
    pub(crate) fn dma32(&self, name: &CStr) -> Result<Arc<Self>> {
        let maintenance = self.shared.maintenance.clone();
        let shared = Shared::new(maintenance, name, self.shared.pool_mode, Zone::Dma32)?;
        Self::with(shared, self.uncached)
    }

    /// The uncached heap's context beside this one, sharing its pool and
    /// maintenance device. `ENODEV` if the maintenance device's mappings
    /// would bounce: the flush at allocation and the invalidates before
    /// snoops and bounce copies need that device's cache maintenance.
    pub(crate) fn uncached(&self) -> Result<Arc<Self>> {
        if self.maintenance().bounce().is_some() {
            return Err(ENODEV);
        }
        Self::with(self.shared.clone(), true)
    }

    fn with(shared: Arc<Shared>, uncached: bool) -> Result<Arc<Self>> {
        let context = Self {
            shared,
            uncached,
            totals: Totals::new(),
        };
        Ok(Arc::new(context, GFP_KERNEL)?)
    }

    /// The maintenance device.
    pub(crate) fn maintenance(&self) -> &MaintenanceDevice {
        &self.shared.maintenance
    }

    /// Where the heap's memory comes from.
    pub(crate) fn zone(&self) -> Zone {
        self.pool().zone()
    }

    /// The page pool.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        self.shared.pool.pool()
    }

    /// The heap's counters.
    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The cache maintenance policy new buffers get: `uncached` for the
    /// uncached heap; else parameter `sync_policy`, unless the maintenance
    /// device's mappings would bounce (then `always`).
    pub(crate) fn sync_policy(&self) -> Policy {
        if self.uncached {
            Policy::Uncached
        } else if self.maintenance().bounce().is_some() || glue::sync_policy_always() {
            Policy::Always
        } else {
            Policy::Tracked
        }
    }
}
