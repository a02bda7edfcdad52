// SPDX-License-Identifier: GPL-2.0

//! A DMA-BUF heap in Rust whose buffers know who owns them.
//!
//! Registers `/dev/dma_heap/<heap_name>` (module parameter, default
//! `rust_system`; `system` to stand in for the upstream system heap) and
//! beside it, unless turned off, `<heap_name>-uncached`, whose buffers the
//! CPU maps write-combined, and `<heap_name>-dma32` and
//! `<heap_name>-uncached-dma32`, whose memory lies below 4 GiB for 32-bit
//! DMA masters (the names Android's libdmabufheap, Codec2 and Rockchip MPP
//! open; each can be set by a parameter). Buffers are built from zeroed
//! chunks of order 9 where the page allocator has them, then 8, 4 and 0
//! like the upstream system heap, and exported
//! as dma-bufs whose operations are implemented by [`buffer::HeapBuffer`].
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

use glue::HeapKind;
use heap::Heap;
use kernel::{device::Device, miscdevice::MiscDeviceRegistration, prelude::*, sync::Arc};
use ownership::Policy;
use pages::Zone;

mod buffer;
mod c_api;
mod cache_ops;
mod coherence;
mod context;
mod control;
mod debugfs;
mod demand;
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
    _files: KVec<debugfs::HeapFile>,
    /// `/dev/rust_dmabuf_heap`.
    #[pin]
    _control: MiscDeviceRegistration<control::Control>,
}

impl kernel::InPlaceModule for RustDmabufHeap {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // The control device first: the heaps are found taken or free
        // through it, and once a heap is registered init must not fail
        // (the heap cannot go again).
        try_pin_init!(Self {
            _files: KVec::new(),
            _control <- control::register(),
        })
        .pin_chain(|this| {
            let this = this.project();
            let heaps = Heaps::new(this._control.device())?;
            *this._files = heaps.register()?;
            Ok(())
        })
    }
}

/// A heap and its name under `/dev/dma_heap`.
type Named = (&'static CStr, Arc<Heap>);

/// The heaps to register: the cached one of any memory, whose name clients
/// look for first, and its siblings where turned on (`glue::HeapKind`) and
/// their names are free. Everything a heap owns (its maintenance device,
/// its pool, its debugfs directory) goes with its last reference, also
/// when registration fails, so that a later load can succeed.
struct Heaps {
    main: Named,
    /// Uncached, DMA32 and uncached DMA32, those that can exist here.
    siblings: KVec<Named>,
}

impl Heaps {
    /// The heaps, made only under free names: `dev` is the control
    /// device, through which taken names are found before the dma-heap
    /// core refuses them (`glue::dma_heap_name_taken`). Fails with `EBUSY`
    /// (what the module loader turns `EEXIST` into) if the main name is
    /// taken, with `EINVAL` if it cannot be a name.
    fn new(dev: &Device) -> Result<Self> {
        let name = glue::heap_name(HeapKind::Cached).ok_or(EINVAL)?;
        let shown = name.to_str().unwrap_or("?");
        if !valid_name(name) {
            pr_err!("heap_name \"{shown}\" is empty or has a '/'\n");
            return Err(EINVAL);
        }
        if glue::dma_heap_name_taken(dev, name) {
            pr_err!(
                "/dev/dma_heap/{shown} exists: another heap registered that name first. To serve it, keep that heap from loading (the upstream system heap: CONFIG_DMABUF_HEAPS_SYSTEM=m and \"blacklist system_heap\" in /etc/modprobe.d), or load with heap_name=<another name>\n"
            );
            return Err(EBUSY);
        }
        let cached = Heap::new(Some(name), pool::PoolMode::Background)?;
        let mut siblings = KVec::new();
        let free = |kind| glue::heap_name(kind).filter(|name| free_sibling_name(dev, name));
        if let Some(name) = free(HeapKind::Uncached) {
            if let Some(heap) = sibling(name, cached.uncached(Some(name))) {
                siblings.push((name, heap), GFP_KERNEL)?;
            }
        }
        if let Some(name) = free(HeapKind::Dma32) {
            if let Some(dma32) = sibling(name, dma32_heap(&cached, name)) {
                siblings.push((name, dma32.clone()), GFP_KERNEL)?;
                if let Some(name) = free(HeapKind::UncachedDma32) {
                    if let Some(heap) = sibling(name, dma32.uncached(Some(name))) {
                        siblings.push((name, heap), GFP_KERNEL)?;
                    }
                }
            }
        }
        Ok(Self {
            main: (name, cached),
            siblings,
        })
    }

    /// Registers the heaps and pins the module; returns the debugfs
    /// `stats` and `pool` files of those registered. Only the main heap's
    /// registration can fail the load (nothing is registered then); a
    /// sibling's is reported, and the sibling goes.
    fn register(self) -> Result<KVec<debugfs::HeapFile>> {
        let (name, cached) = self.main;
        let shown = name.to_str().unwrap_or("?");
        let policy = cached.context().sync_policy();
        if let Err(err) = dma_heap::register(name, cached.clone()) {
            pr_err!("/dev/dma_heap/{shown} not registered: {err:?}\n");
            return Err(err);
        }
        glue::pin_module();
        pr_info!(
            "registered /dev/dma_heap/{shown} (sync_policy={}, unbracketed_cpu={})\n",
            policy.name(),
            glue::unbracketed_cpu_name()
        );
        let mut files = KVec::new();
        add_files(&mut files, &cached);
        for (name, heap) in self.siblings {
            let shown = name.to_str().unwrap_or("?");
            let memory = match (heap.context().zone(), heap.context().sync_policy()) {
                (Zone::Dma32, Policy::Uncached) => "below 4 GiB, write-combined",
                (Zone::Dma32, _) => "below 4 GiB",
                (_, _) => "write-combined",
            };
            match dma_heap::register(name, heap.clone()) {
                Ok(()) => {
                    pr_info!("registered /dev/dma_heap/{shown} ({memory})\n");
                    add_files(&mut files, &heap);
                }
                Err(err) => pr_warn!("/dev/dma_heap/{shown} not registered: {err:?}\n"),
            }
        }
        Ok(files)
    }
}

/// Whether `name` can name a heap: not empty, no `/` (sysfs would show it
/// as `!`, and the check for taken names would miss it).
fn valid_name(name: &CStr) -> bool {
    !name.is_empty() && !name.to_bytes().contains(&b'/')
}

/// Whether a sibling's name is valid and free; if not, says so.
fn free_sibling_name(dev: &Device, name: &CStr) -> bool {
    let shown = name.to_str().unwrap_or("?");
    if !valid_name(name) {
        pr_warn!("no /dev/dma_heap/{shown}: the name is empty or has a '/'\n");
        return false;
    }
    if glue::dma_heap_name_taken(dev, name) {
        pr_warn!("no /dev/dma_heap/{shown}: another heap registered that name first\n");
        return false;
    }
    true
}

/// Adds a registered heap's debugfs `stats` and `pool` files to `files`,
/// where it has a directory. A file that cannot be made is left out: the
/// heap is registered, and the load can no longer fail.
fn add_files(files: &mut KVec<debugfs::HeapFile>, heap: &Heap) {
    let Some(dir) = heap.debugfs() else {
        return;
    };
    let context = heap.context();
    for file in [
        dir.stats_file(context.clone()),
        dir.pool_file(context.clone()),
    ]
    .into_iter()
    .flatten()
    {
        if files.push(file, GFP_KERNEL).is_err() {
            pr_warn!("a debugfs file of a heap could not be kept\n");
        }
    }
}

/// A sibling heap, or `None` with the reason it cannot be here: `ENODEV`
/// for an uncached heap where the maintenance device's mappings bounce, and
/// for a DMA32 heap see [`dma32_heap`].
fn sibling(name: &CStr, heap: Result<Arc<Heap>>) -> Option<Arc<Heap>> {
    heap.inspect_err(|err| {
        let why = match *err {
            e if e == ENODEV => "not possible in this kernel or on this DMA path",
            e if e == ENOMEM => "no memory for it",
            _ => "could not be made",
        };
        pr_info!(
            "no /dev/dma_heap/{}: {why} ({err:?})\n",
            name.to_str().unwrap_or("?")
        );
    })
    .ok()
}

/// The DMA32 heap beside `cached`: `ENODEV` in a kernel without
/// `ZONE_DMA32` (there `__GFP_DMA32` may give any page), `ENOMEM` if no
/// memory lies below 4 GiB (RAM that starts above it).
fn dma32_heap(cached: &Heap, name: &CStr) -> Result<Arc<Heap>> {
    if !cfg!(CONFIG_ZONE_DMA32) {
        return Err(ENODEV);
    }
    if !pages::zone_has_memory(Zone::Dma32) {
        return Err(ENOMEM);
    }
    cached.dma32(name)
}

// The KUnit suites that span modules and what the suites share, in test
// builds only (`RDH_KUNIT=y` out of tree, see `Kbuild`); the suites of
// single modules are at the bottom of their files.
#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[path = "tests/kunit/mod.rs"]
mod kunit;
