// SPDX-License-Identifier: GPL-2.0

//! A DMA-BUF heap in Rust whose buffers know who owns them.
//!
//! Registers `/dev/dma_heap/<heap_name>` (module parameter, default
//! `rust_system`). Buffers are built from zeroed chunks of order 8, 4 and 0
//! like the upstream system heap, and exported as dma-bufs whose operations
//! are implemented by [`buffer::HeapBuffer`].
//!
//! This file holds the module and the heap; the C entry points are in
//! `dmabuf.rs`, the buffers' operations in `buffer.rs`.
//!
//! A registered heap can never be removed (there is no `dma_heap_remove`),
//! so once registration succeeds the module pins itself and cannot be
//! unloaded.

use dmabuf::DmaBuf;
use kernel::prelude::*;
use ownership::Policy;

mod buffer;
mod cache_ops;
mod debugfs;
mod dmabuf;
mod fence_hooks;
// Shared with the host-side cache model, which uses more of its public API
// than the module does.
#[expect(unreachable_pub)]
#[allow(dead_code)]
mod ownership;
mod pages;
mod sg;
mod stats;
mod sys;
mod user_mappings;

use buffer::HeapBuffer;

module! {
    type: RustDmabufHeap,
    name: "rust_dmabuf_heap",
    authors: ["rust-dmabuf-heap developers"],
    description: "DMA-BUF heap with ownership-aware cache maintenance",
    license: "GPL",
    imports_ns: ["DMA_BUF", "DMA_BUF_HEAP"],
}

struct RustDmabufHeap;

/// The cache maintenance policy new buffers get: parameter `sync_policy`,
/// unless the maintenance device's mappings would bounce (then `always`).
pub(crate) fn sync_policy() -> Policy {
    // SAFETY: Reads a module parameter; no preconditions.
    if cache_ops::maintenance_bounce().is_some() || unsafe { sys::rdh_sync_policy_always() } {
        Policy::Always
    } else {
        Policy::Tracked
    }
}

/// Whether new buffers trap user access (parameter `unbracketed_cpu`).
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

impl kernel::Module for RustDmabufHeap {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        cache_ops::create_maintenance_device()?;
        // SAFETY: The name is a module parameter: static storage that lives
        // as long as the module, which is forever once the heap exists.
        let name = unsafe { CStr::from_char_ptr(sys::rdh_heap_name()) };
        // Before the heap exists: an allocation may come at once.
        debugfs::init(name);
        if let Err(err) = dmabuf::register_heap::<RustDmabufHeap>(name) {
            // Undo everything, so that a later load can succeed.
            debugfs::exit();
            cache_ops::destroy_maintenance_device();
            return Err(err);
        }
        // SAFETY: Called from module init of this module.
        unsafe { sys::rdh_pin_module() };
        pr_info!(
            "registered /dev/dma_heap/{} (sync_policy={}, unbracketed_cpu={})\n",
            name.to_str().unwrap_or("?"),
            sync_policy().name(),
            unbracketed_cpu_name()
        );
        Ok(RustDmabufHeap)
    }
}

impl dmabuf::Heap for RustDmabufHeap {
    type Buffer = HeapBuffer;

    fn allocate(len: usize, fd_flags: u32, exp_name: &'static CStr) -> Result<DmaBuf<HeapBuffer>> {
        exported(dmabuf::export(
            HeapBuffer::new(len)?,
            len,
            fd_flags,
            exp_name,
        )?)
    }
}

/// Gives a freshly exported buffer what only its dma-buf knows: the user
/// mappings and, if wanted, its debugfs file (named after the inode).
fn exported(dmabuf: DmaBuf<HeapBuffer>) -> Result<DmaBuf<HeapBuffer>> {
    let buffer = dmabuf.exporter();
    // SAFETY: The buffer removes its file in `release`, before it is freed.
    let file = unsafe { debugfs::BufferFile::new(dmabuf.inode(), &buffer) };
    buffer.set_exported(file, dmabuf.user_mappings());
    Ok(dmabuf)
}

// The KUnit suite, in test builds only (`RDH_KUNIT=y`, see `Kbuild`).
#[cfg(rdh_kunit)]
#[path = "tests/kunit.rs"]
mod kunit;
