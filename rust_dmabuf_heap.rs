// SPDX-License-Identifier: GPL-2.0

//! A DMA-BUF heap in Rust whose buffers know who owns them.
//!
//! Registers `/dev/dma_heap/<heap_name>` (module parameter, default
//! `rust_system`) and, unless parameter `uncached_heap` is off,
//! `/dev/dma_heap/<heap_name>_uncached`, whose buffers the CPU maps
//! write-combined. Buffers are built from zeroed chunks of order 8, 4 and 0
//! like the upstream system heap, and exported as dma-bufs whose operations
//! are implemented by [`buffer::HeapBuffer`].
//!
//! This file holds the module. The heap object is in `heap.rs`, what its
//! buffers share in `context.rs`, the buffers' operations in `buffer.rs`;
//! the C API for importer drivers in `c_api.rs`, the range ioctl in
//! `control.rs`. The generic dma-buf, dma-heap, fence and DMA-mapping
//! abstractions under `rust/kernel/` are the only code that uses the raw
//! bindings, apart from the driver's own C glue (`glue.rs`, `c_api.rs`).
//!
//! A registered heap can never be removed (there is no `dma_heap_remove`),
//! so once registration succeeds the module pins itself and cannot be
//! unloaded.

use heap::Heap;
use kernel::{miscdevice::MiscDeviceRegistration, prelude::*, sync::Arc};

mod buffer;
mod c_api;
mod cache_ops;
mod coherence;
mod context;
mod control;
mod debugfs;
mod fence_hooks;
mod glue;
mod heap;
// Shared with the host-side cache model, which uses more of its public API
// than the module does.
#[expect(unreachable_pub)]
#[allow(dead_code)]
mod ownership;
mod pages;
mod pool;
mod stats;

// The abstractions: would-be modules of the kernel crate, compiled into
// this module out of tree (`rdh_own_abstractions`, set by `Kbuild`), the
// kernel crate's own in the kernel tree. Either way the driver names them
// `crate::dma_buf` and so on.
#[path = "glue/bindings.rs"]
mod bindings;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/dma_buf.rs"]
mod dma_buf;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/dma_fence.rs"]
mod dma_fence;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/dma_heap.rs"]
mod dma_heap;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/dma_mapping.rs"]
mod dma_mapping;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/dma_resv.rs"]
mod dma_resv;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/irq_spinlock.rs"]
mod irq_spinlock;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/mm_pfnmap.rs"]
mod mm_pfnmap;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/mm_stat.rs"]
mod mm_stat;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/page_block.rs"]
mod page_block;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/sg_table.rs"]
mod sg_table;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/shrinker.rs"]
mod shrinker;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/task_signal.rs"]
mod task_signal;
#[cfg(rdh_own_abstractions)]
#[allow(dead_code, unreachable_pub)]
#[path = "rust/kernel/vmap.rs"]
mod vmap;
#[cfg(not(rdh_own_abstractions))]
use kernel::{
    dma_buf, dma_fence, dma_heap, dma_mapping, dma_resv, mm_pfnmap, mm_stat, page_block, sg_table,
    shrinker, task_signal, vmap,
};
/// The kernel crate's own IRQ-safe spinlock, which `rust/kernel/irq_spinlock.rs`
/// stands in for out of tree (TODO(spinlock-irq) in `rust/todo.rst`).
#[cfg(not(rdh_own_abstractions))]
mod irq_spinlock {
    pub(crate) use kernel::sync::{
        new_spinlock_irq as new_irq_spinlock, SpinLockIrq as IrqSpinLock,
    };
}

module! {
    type: RustDmabufHeap,
    name: "rust_dmabuf_heap",
    authors: ["rust-dmabuf-heap developers"],
    description: "DMA-BUF heap with ownership-aware cache maintenance",
    license: "GPL",
    imports_ns: ["DMA_BUF", "DMA_BUF_HEAP"],
}

/// The module: once the heap is registered it can never go (there is no
/// `dma_heap_remove`), so neither can the module. It owns its
/// registrations in place.
#[pin_data]
struct RustDmabufHeap {
    /// The heaps' debugfs `stats` and `pool` files (each holds a
    /// reference on its heap's context).
    _files: [Option<debugfs::HeapFile>; 4],
    /// `/dev/rust_dmabuf_heap`.
    #[pin]
    _control: MiscDeviceRegistration<control::Control>,
}

impl kernel::InPlaceModule for RustDmabufHeap {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let heaps = Heaps::new();
        let files = heaps.as_ref().map(Heaps::files).map_err(|err| *err);
        // The control device before the heaps: once a heap is registered,
        // init must not fail (the heap cannot go again).
        try_pin_init!(Self {
            _files: files?,
            _control <- control::register(),
        })
        .pin_chain(move |_| heaps?.register())
    }
}

/// The heaps to register: the cached one and, unless turned off, the
/// uncached one beside it. Everything a heap owns (its maintenance device,
/// its debugfs directory) goes with its last reference, also when
/// registration fails, so that a later load can succeed.
struct Heaps {
    name: &'static CStr,
    cached: Arc<Heap>,
    uncached: Option<(&'static CStr, Arc<Heap>)>,
}

impl Heaps {
    fn new() -> Result<Self> {
        let name = glue::heap_name();
        let cached = Heap::new(Some(name), pool::PoolMode::Background)?;
        let uncached = match glue::uncached_heap_name() {
            Some(uncached_name) => match cached.uncached(Some(uncached_name)) {
                Ok(uncached) => Some((uncached_name, uncached)),
                // ENODEV: the maintenance device's mappings bounce.
                Err(err) => {
                    pr_warn!("no uncached heap: {err:?}\n");
                    None
                }
            },
            None => None,
        };
        Ok(Self {
            name,
            cached,
            uncached,
        })
    }

    /// The heaps' debugfs `stats` and `pool` files, where they have a
    /// directory.
    fn files(&self) -> [Option<debugfs::HeapFile>; 4] {
        let [a, b] = files(&self.cached);
        let [c, d] = self
            .uncached
            .as_ref()
            .map_or([None, None], |(_, h)| files(h));
        [a, b, c, d]
    }

    /// Registers the heaps and pins the module. Only the cached heap's
    /// registration can fail the load; the uncached one's is reported.
    fn register(self) -> Result {
        let policy = self.cached.context().sync_policy();
        dma_heap::register(self.name, self.cached)?;
        glue::pin_module();
        pr_info!(
            "registered /dev/dma_heap/{} (sync_policy={}, unbracketed_cpu={})\n",
            self.name.to_str().unwrap_or("?"),
            policy.name(),
            glue::unbracketed_cpu_name()
        );
        if let Some((uncached_name, uncached)) = self.uncached {
            let shown = uncached_name.to_str().unwrap_or("?");
            match dma_heap::register(uncached_name, uncached) {
                Ok(()) => pr_info!("registered /dev/dma_heap/{shown} (write-combined)\n"),
                Err(err) => pr_warn!("/dev/dma_heap/{shown} not registered: {err:?}\n"),
            }
        }
        Ok(())
    }
}

/// A heap's debugfs `stats` and `pool` files, if it has a directory.
fn files(heap: &Arc<Heap>) -> [Option<debugfs::HeapFile>; 2] {
    heap.debugfs().map_or([None, None], |dir| {
        [
            dir.stats_file(heap.context().clone()).ok(),
            dir.pool_file(heap.context().clone()).ok(),
        ]
    })
}

// The KUnit suites that span modules and what the suites share, in test
// builds only (`RDH_KUNIT=y` out of tree, see `Kbuild`); the suites of
// single modules are at the bottom of their files.
#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[path = "tests/kunit/mod.rs"]
mod kunit;
