// SPDX-License-Identifier: GPL-2.0

//! DMA-BUF heaps: allocators of dma-bufs that user space reaches through
//! `/dev/dma_heap/<name>`.
//!
//! C header: [`include/linux/dma-heap.h`](srctree/include/linux/dma-heap.h)
//!
//! A heap implements [`Allocator`] and is [`register`]ed; the dma-heap core
//! then owns one reference on it (`priv`) for ever, since a heap can never
//! be removed.

use crate::bindings;
use crate::dma_buf::{DmaBuf, Exporter};
use core::marker::PhantomData;
use kernel::{
    error::from_err_ptr,
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::ForeignOwnable,
};

/// A heap that allocates dma-bufs whose exporter objects are
/// [`Allocator::Buffer`]s.
pub trait Allocator: Send + Sync + Sized + 'static {
    /// What the heap's dma-bufs own.
    type Buffer: Exporter;

    /// Allocates and exports a buffer of `len` bytes (page aligned, not
    /// zero; the core checked the flags), named `exp_name` (the heap's
    /// name).
    fn allocate(
        heap: ArcBorrow<'_, Self>,
        len: usize,
        fd_flags: u32,
        exp_name: &'static CStr,
    ) -> Result<DmaBuf<Self::Buffer>>;

    /// The type's `dma_heap_ops`, in a `static` of its own (the core keeps
    /// the address): `static T: HeapTable = HeapTable::of::<Type>(); &T`.
    fn table() -> &'static HeapTable;
}

/// The `dma_heap_ops` of a heap type, one `static` per type
/// ([`Allocator::table`]).
pub struct HeapTable(bindings::dma_heap_ops);

// SAFETY: A read-only table of function pointers, shared by every thread.
unsafe impl Sync for HeapTable {}

impl HeapTable {
    /// The table of heap type `H`, for its `static`.
    pub const fn of<H: Allocator>() -> Self {
        Self(bindings::dma_heap_ops {
            allocate: Some(HeapOps::<H>::allocate),
        })
    }
}

/// Registers `heap` as `/dev/dma_heap/<name>`. A heap can never be removed,
/// so on success the core keeps the reference for ever; on failure it is
/// dropped (with everything the heap owns).
pub fn register<H: Allocator>(name: &'static CStr, heap: Arc<H>) -> Result {
    let private = heap.into_foreign();
    let info = bindings::dma_heap_export_info {
        name: name.as_char_ptr(),
        ops: &H::table().0,
        priv_: private,
    };
    // SAFETY: `info` is valid for the call; the core copies what it keeps
    // except `name` and `ops`, which are static.
    if let Err(err) = from_err_ptr(unsafe { bindings::dma_heap_add(&info) }) {
        // SAFETY: Not registered, so nothing else refers to `private`.
        drop(unsafe { Arc::<H>::from_foreign(private) });
        return Err(err);
    }
    Ok(())
}

/// Whether the dma-heap core charges heap memory to the allocating
/// process's memory cgroup (its `mem_accounting` parameter).
pub fn mem_accounting() -> bool {
    // SAFETY: A read-only (0444) parameter of the dma-heap core, set before
    // any heap can allocate.
    unsafe { bindings::mem_accounting }
}

/// The `dma_heap_ops` of heap type `H`.
struct HeapOps<H: Allocator>(PhantomData<H>);

impl<H: Allocator> HeapOps<H> {
    /// # Safety
    ///
    /// Called by the dma-heap core with a heap registered by [`register`];
    /// `len` is page aligned and non-zero, flags are validated.
    unsafe extern "C" fn allocate(
        heap: *mut bindings::dma_heap,
        len: usize,
        fd_flags: u32,
        _heap_flags: u64,
    ) -> *mut bindings::dma_buf {
        // SAFETY: `heap` is valid; its name is the static one registered,
        // its `priv` the reference `register` gave it, kept for ever.
        let (name, object) = unsafe {
            (
                CStr::from_char_ptr(bindings::dma_heap_get_name(heap)),
                <Arc<H> as ForeignOwnable>::borrow(bindings::dma_heap_get_drvdata(heap)),
            )
        };
        match H::allocate(object, len, fd_flags, name) {
            Ok(dmabuf) => dmabuf.into_raw(),
            Err(err) => err.to_ptr(),
        }
    }
}
