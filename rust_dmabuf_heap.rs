// SPDX-License-Identifier: GPL-2.0

//! A DMA-BUF heap in Rust whose buffers know who owns them.
//!
//! Registers `/dev/dma_heap/<heap_name>` (module parameter, default
//! `rust_system`). Buffers are built from zeroed chunks of order 8, 4 and 0
//! like the upstream system heap, and exported as dma-bufs whose operations
//! are implemented by [`buffer::HeapBuffer`].
//!
//! This file holds the module, the heap registration and the C entry points
//! (the `dma_heap_ops` and `dma_buf_ops` trampolines). Each trampoline
//! recovers the Rust object from the C pointer, calls one safe method and
//! converts the result to an errno.
//!
//! A registered heap can never be removed (there is no `dma_heap_remove`),
//! so once registration succeeds the module pins itself and cannot be
//! unloaded.

use core::ptr::NonNull;
use kernel::{error::from_err_ptr, prelude::*};
use ownership::Policy;

mod buffer;
mod cache_ops;
mod debugfs;
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

use buffer::{Attachment, HeapBuffer};
use cache_ops::DmaDevice;
use user_mappings::{UserMappings, Vma};

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
        let name = unsafe { sys::rdh_heap_name() };
        // Before the heap exists: an allocation may come at once.
        debugfs::init(name);
        let info = sys::dma_heap_export_info {
            name,
            ops: &HEAP_OPS,
            priv_: core::ptr::null_mut(),
        };
        // SAFETY: `info` is valid for the call; the core copies what it keeps
        // except `name` and `ops`, which are static.
        if let Err(err) = from_err_ptr(unsafe { sys::dma_heap_add(&info) }) {
            // Undo everything, so that a later load can succeed.
            debugfs::exit();
            cache_ops::destroy_maintenance_device();
            return Err(err);
        }
        // SAFETY: Called from module init of this module.
        unsafe { sys::rdh_pin_module() };
        // SAFETY: `name` is a valid NUL-terminated string (see above).
        let name = unsafe { CStr::from_char_ptr(name) };
        pr_info!(
            "registered /dev/dma_heap/{} (sync_policy={}, unbracketed_cpu={})\n",
            name.to_str().unwrap_or("?"),
            sync_policy().name(),
            unbracketed_cpu_name()
        );
        Ok(RustDmabufHeap)
    }
}

static HEAP_OPS: sys::dma_heap_ops = sys::dma_heap_ops {
    allocate: Some(heap_allocate),
};

/// Allocates and exports a buffer of `len` bytes.
fn allocate_dma_buf(
    len: usize,
    fd_flags: u32,
    exp_name: *const c_char,
) -> Result<*mut sys::dma_buf> {
    export(HeapBuffer::new(len)?, fd_flags, exp_name)
}

/// Exports `buffer` as a dma-buf; the dma-buf owns it from then on.
fn export(
    buffer: Pin<KBox<HeapBuffer>>,
    fd_flags: u32,
    exp_name: *const c_char,
) -> Result<*mut sys::dma_buf> {
    let len = buffer.len();
    // SAFETY: All zeroes is a valid `dma_buf_export_info`.
    let mut info: sys::dma_buf_export_info = unsafe { core::mem::zeroed() };
    info.exp_name = exp_name;
    // SAFETY: Returns this module's `struct module`, valid while it is loaded.
    info.owner = unsafe { sys::rdh_this_module() };
    info.ops = &BUF_OPS;
    info.size = len;
    info.flags = fd_flags as i32;
    // SAFETY: Not moved until `release` rebuilds the box.
    let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(buffer) });
    info.priv_ = raw.cast();
    // SAFETY: `info` is fully initialised; on success the dma-buf owns `raw`
    // and gives it back in `release`.
    match from_err_ptr(unsafe { sys::dma_buf_export(&info) }) {
        Ok(dmabuf) => {
            // SAFETY: `dmabuf` is live and owns `raw`, which lives until
            // `buf_release` has removed the file; the dma-buf outlives the
            // buffer's state.
            unsafe {
                (*raw).set_exported(
                    debugfs::BufferFile::new(dmabuf, &*raw),
                    UserMappings::new(dmabuf),
                )
            };
            Ok(dmabuf)
        }
        Err(err) => {
            // SAFETY: Export failed, so nothing else refers to `raw`.
            drop(unsafe { KBox::from_raw(raw) });
            Err(err)
        }
    }
}

/// `dma_heap_ops.allocate`.
///
/// # Safety
///
/// Called by the dma-heap core with a valid heap; `len` is page aligned and
/// non-zero, flags are validated.
unsafe extern "C" fn heap_allocate(
    heap: *mut sys::dma_heap,
    len: usize,
    fd_flags: u32,
    _heap_flags: u64,
) -> *mut sys::dma_buf {
    // SAFETY: `heap` is valid; its name is static.
    let name = unsafe { sys::dma_heap_get_name(heap) };
    match allocate_dma_buf(len, fd_flags, name) {
        Ok(dmabuf) => dmabuf,
        Err(err) => err.to_ptr(),
    }
}

static BUF_OPS: sys::dma_buf_ops = {
    // SAFETY: All zeroes is a valid `dma_buf_ops` (all hooks absent).
    let mut ops: sys::dma_buf_ops = unsafe { core::mem::zeroed() };
    ops.attach = Some(buf_attach);
    ops.detach = Some(buf_detach);
    ops.map_dma_buf = Some(buf_map);
    ops.unmap_dma_buf = Some(buf_unmap);
    ops.begin_cpu_access = Some(buf_begin_cpu_access);
    ops.end_cpu_access = Some(buf_end_cpu_access);
    ops.mmap = Some(buf_mmap);
    ops.vmap = Some(buf_vmap);
    ops.vunmap = Some(buf_vunmap);
    ops.release = Some(buf_release);
    ops
};

/// Recovers the buffer of a dma-buf exported by [`allocate_dma_buf`].
///
/// # Safety
///
/// `dmabuf` must be one of ours and not yet released.
unsafe fn buffer<'a>(dmabuf: *mut sys::dma_buf) -> &'a HeapBuffer {
    // SAFETY: Our dma-bufs carry a `HeapBuffer` in `priv` until release.
    unsafe { &*(*dmabuf).priv_.cast::<HeapBuffer>() }
}

/// The attachment key kept in `attach->priv`.
///
/// # Safety
///
/// `attach` must be a live attachment of one of our dma-bufs.
unsafe fn attachment_key(attach: *mut sys::dma_buf_attachment) -> Option<NonNull<Attachment>> {
    // SAFETY: Guaranteed by the caller.
    NonNull::new(unsafe { (*attach).priv_ }.cast())
}

/// # Safety
///
/// Called by the dma-buf core with a live dma-buf of ours and a new
/// attachment whose device stays valid until detach.
unsafe extern "C" fn buf_attach(
    dmabuf: *mut sys::dma_buf,
    attach: *mut sys::dma_buf_attachment,
) -> c_int {
    // SAFETY: See the function's safety section.
    let (buffer, dev) = unsafe { (buffer(dmabuf), DmaDevice::new((*attach).dev)) };
    match buffer.attach(dev) {
        Ok(key) => {
            // SAFETY: `attach` is valid and ours to fill in.
            unsafe { (*attach).priv_ = key.as_ptr().cast() };
            0
        }
        Err(err) => err.to_errno(),
    }
}

/// # Safety
///
/// Called by the dma-buf core for an attachment made by [`buf_attach`].
unsafe extern "C" fn buf_detach(dmabuf: *mut sys::dma_buf, attach: *mut sys::dma_buf_attachment) {
    // SAFETY: See the function's safety section.
    let (buffer, key) = unsafe { (buffer(dmabuf), attachment_key(attach)) };
    if let Some(key) = key {
        buffer.detach(key);
    }
}

/// # Safety
///
/// Called by the dma-buf core, reservation lock held, for an attachment made
/// by [`buf_attach`].
unsafe extern "C" fn buf_map(
    attach: *mut sys::dma_buf_attachment,
    dir: sys::dma_data_direction,
) -> *mut sys::sg_table {
    // SAFETY: See the function's safety section.
    let (buffer, key) = unsafe { (buffer((*attach).dmabuf), attachment_key(attach)) };
    match key.ok_or(EINVAL).and_then(|key| buffer.map(key, dir)) {
        Ok(table) => table,
        Err(err) => err.to_ptr(),
    }
}

/// # Safety
///
/// Called by the dma-buf core, reservation lock held, for a mapping made by
/// [`buf_map`].
unsafe extern "C" fn buf_unmap(
    attach: *mut sys::dma_buf_attachment,
    _table: *mut sys::sg_table,
    _dir: sys::dma_data_direction,
) {
    // SAFETY: See the function's safety section.
    let (buffer, key) = unsafe { (buffer((*attach).dmabuf), attachment_key(attach)) };
    if let Some(key) = key {
        buffer.unmap(key);
    }
}

/// # Safety
///
/// Called by the dma-buf core with a live dma-buf of ours.
unsafe extern "C" fn buf_begin_cpu_access(
    dmabuf: *mut sys::dma_buf,
    dir: sys::dma_data_direction,
) -> c_int {
    // SAFETY: See the function's safety section; `resv` is the dma-buf's,
    // and the core calls this without holding its lock (`might_lock`).
    let (buffer, resv) = unsafe { (buffer(dmabuf), fence_hooks::Resv::from_raw((*dmabuf).resv)) };
    match buffer.begin_cpu_access(dir, resv) {
        Ok(()) => 0,
        Err(err) => err.to_errno(),
    }
}

/// # Safety
///
/// Called by the dma-buf core with a live dma-buf of ours.
unsafe extern "C" fn buf_end_cpu_access(
    dmabuf: *mut sys::dma_buf,
    dir: sys::dma_data_direction,
) -> c_int {
    // SAFETY: See the function's safety section.
    unsafe { buffer(dmabuf) }.end_cpu_access(dir);
    0
}

/// # Safety
///
/// Called by the dma-buf core from an `mmap` call on a live dma-buf of ours.
unsafe extern "C" fn buf_mmap(dmabuf: *mut sys::dma_buf, vma: *mut sys::vm_area_struct) -> c_int {
    // SAFETY: See the function's safety section; the core holds the mmap
    // lock for writing and sets up `vma` for this call.
    let (buffer, vma) = unsafe { (buffer(dmabuf), Vma::from_raw(vma)) };
    match buffer.mmap(&vma, &USER_VM_OPS) {
        Ok(()) => 0,
        Err(err) => err.to_errno(),
    }
}

/// Handlers of user mappings that trap user access (`user_mappings.rs`).
static USER_VM_OPS: sys::vm_operations_struct = {
    // SAFETY: All zeroes is a valid `vm_operations_struct` (no handlers).
    let mut ops: sys::vm_operations_struct = unsafe { core::mem::zeroed() };
    ops.fault = Some(user_fault);
    ops.pfn_mkwrite = Some(user_pfn_mkwrite);
    ops
};

/// The buffer and vma of a fault in a trapped user mapping.
///
/// # Safety
///
/// `vmf` must be a fault in a vma set up by [`buf_mmap`], with its mmap
/// lock or vma lock held for the lifetime `'a`.
unsafe fn faulting<'a>(vmf: *mut sys::vm_fault) -> (&'a HeapBuffer, Vma) {
    // SAFETY: The vma of a fault is valid; its file is the dma-buf's (also
    // for `dma_buf_mmap`, which switches the vma to it) and holds a
    // reference on it, so the buffer is live.
    unsafe {
        let vma = (*vmf).__bindgen_anon_1.vma;
        let dmabuf = (*(*vma).vm_file).private_data.cast::<sys::dma_buf>();
        (buffer(dmabuf), Vma::from_raw(vma))
    }
}

/// `vm_operations_struct.fault`: a user access found no entry.
///
/// # Safety
///
/// Called by the mm core for a vma set up by [`buf_mmap`].
unsafe extern "C" fn user_fault(vmf: *mut sys::vm_fault) -> sys::vm_fault_t {
    // SAFETY: See the function's safety section.
    let (buffer, vma) = unsafe { faulting(vmf) };
    // SAFETY: `vmf` is valid.
    let write = unsafe { (*vmf).flags } & sys::fault_flag_FAULT_FLAG_WRITE != 0;
    buffer.user_fault(&vma, write, false)
}

/// `vm_operations_struct.pfn_mkwrite`: a user write hit a read-only entry.
///
/// # Safety
///
/// Called by the mm core for a vma set up by [`buf_mmap`], without the
/// page-table lock.
unsafe extern "C" fn user_pfn_mkwrite(vmf: *mut sys::vm_fault) -> sys::vm_fault_t {
    // SAFETY: See the function's safety section.
    let (buffer, vma) = unsafe { faulting(vmf) };
    buffer.user_fault(&vma, true, true)
}

/// # Safety
///
/// Called by the dma-buf core with a live dma-buf of ours and a map to fill.
unsafe extern "C" fn buf_vmap(dmabuf: *mut sys::dma_buf, map: *mut sys::iosys_map) -> c_int {
    // SAFETY: See the function's safety section.
    match unsafe { buffer(dmabuf) }.vmap() {
        Ok(vaddr) => {
            // SAFETY: `map` is valid for writes.
            unsafe { sys::rdh_iosys_map_set_vaddr(map, vaddr.as_ptr()) };
            0
        }
        Err(err) => err.to_errno(),
    }
}

/// # Safety
///
/// Called by the dma-buf core to undo a successful [`buf_vmap`].
unsafe extern "C" fn buf_vunmap(dmabuf: *mut sys::dma_buf, map: *mut sys::iosys_map) {
    // SAFETY: See the function's safety section.
    unsafe { buffer(dmabuf) }.vunmap();
    // SAFETY: `map` is valid for writes; all zeroes is a cleared map.
    unsafe { map.write(core::mem::zeroed()) };
}

/// # Safety
///
/// Called once by the dma-buf core when the last reference is gone; nothing
/// uses the buffer afterwards.
unsafe extern "C" fn buf_release(dmabuf: *mut sys::dma_buf) {
    // SAFETY: `priv` holds the box leaked by `export`, and this is the last
    // use of it.
    let buffer = unsafe { KBox::from_raw((*dmabuf).priv_.cast::<HeapBuffer>()) };
    // Remove the debugfs file first: removal waits for its readers.
    drop(buffer.take_debugfs_file());
    drop(buffer);
}

/// The buffer and attachment key of an importer's attachment, if it is an
/// attachment of one of our dma-bufs.
///
/// # Safety
///
/// `attach` must be null or a live attachment.
unsafe fn our_attachment<'a>(
    attach: *mut sys::dma_buf_attachment,
) -> Result<(&'a HeapBuffer, NonNull<Attachment>)> {
    if attach.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: A live attachment points to its live dma-buf.
    let dmabuf = unsafe { (*attach).dmabuf };
    // SAFETY: As above.
    if !core::ptr::eq(unsafe { (*dmabuf).ops }, &BUF_OPS) {
        return Err(EINVAL);
    }
    // SAFETY: The dma-buf is ours, so `attach` was made by `buf_attach`.
    let key = unsafe { attachment_key(attach) }.ok_or(EINVAL)?;
    // SAFETY: The dma-buf is ours and live.
    Ok((unsafe { buffer(dmabuf) }, key))
}

/// The explicit fence API for importer drivers, step 1 (exported by the C
/// shim; documented in `include/rust_dmabuf_heap.h`).
///
/// # Safety
///
/// Called by an importer driver in process context with a live attachment.
#[no_mangle]
pub unsafe extern "C" fn rdh_dma_buf_access_reserve(
    attach: *mut sys::dma_buf_attachment,
    dir: sys::dma_data_direction,
) -> *mut sys::rdh_dma_buf_access {
    // SAFETY: See the function's safety section.
    let reserved =
        unsafe { our_attachment(attach) }.and_then(|(buffer, key)| buffer.reserve_access(key, dir));
    match reserved {
        Ok(reservation) => reservation.into_raw().cast(),
        Err(err) => err.to_ptr(),
    }
}

/// Step 2: the reserved access ends with `fence`. Neither allocates nor
/// sleeps.
///
/// # Safety
///
/// `access` was returned by [`rdh_dma_buf_access_reserve`] and is neither
/// committed nor cancelled; its attachment is live; `fence` is valid.
#[no_mangle]
pub unsafe extern "C" fn rdh_dma_buf_access_commit(
    access: *mut sys::rdh_dma_buf_access,
    fence: *mut sys::dma_fence,
) {
    if fence.is_null() {
        return;
    }
    // SAFETY: See the function's safety section.
    if let Some(reservation) = unsafe { fence_hooks::Reservation::from_raw(access.cast()) } {
        // SAFETY: As above; the caller holds a reference on `fence`.
        unsafe { fence_hooks::commit(reservation, fence_hooks::Fence::from_raw(fence)) };
    }
}

/// Drops a reservation that will not be committed.
///
/// # Safety
///
/// `attach` is the live attachment `access` was reserved for, and `access`
/// is neither committed nor cancelled.
#[no_mangle]
pub unsafe extern "C" fn rdh_dma_buf_access_cancel(
    attach: *mut sys::dma_buf_attachment,
    access: *mut sys::rdh_dma_buf_access,
) {
    // SAFETY: See the function's safety section.
    let reservation = unsafe { fence_hooks::Reservation::from_raw(access.cast()) };
    // SAFETY: As above.
    if let (Ok((buffer, _)), Some(reservation)) = (unsafe { our_attachment(attach) }, reservation) {
        buffer.cancel_access(reservation);
    }
}

/// Both steps at once, for drivers that declare before publishing.
///
/// # Safety
///
/// Called by an importer driver in process context with a live attachment
/// and a valid fence.
#[no_mangle]
pub unsafe extern "C" fn rdh_dma_buf_access_until(
    attach: *mut sys::dma_buf_attachment,
    dir: sys::dma_data_direction,
    fence: *mut sys::dma_fence,
) -> c_int {
    if fence.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: See the function's safety section.
    let reserved =
        unsafe { our_attachment(attach) }.and_then(|(buffer, key)| buffer.reserve_access(key, dir));
    match reserved {
        Ok(reservation) => {
            // SAFETY: Just reserved; the attachment is live, `fence` valid
            // (the caller holds a reference).
            unsafe { fence_hooks::commit(reservation, fence_hooks::Fence::from_raw(fence)) };
            0
        }
        Err(err) => err.to_errno(),
    }
}

// The KUnit suite, in test builds only (`RDH_KUNIT=y`, see `Kbuild`).
#[cfg(rdh_kunit)]
#[path = "tests/kunit.rs"]
mod kunit;
