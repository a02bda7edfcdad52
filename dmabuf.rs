// SPDX-License-Identifier: GPL-2.0

//! The exporter side of dma-buf and dma-heap as a safe layer, in the shape
//! an upstream `kernel::dma_buf` would have (modelled on
//! `rust/kernel/miscdevice.rs`).
//!
//! Every C entry point of the module is here: the `dma_buf_ops`,
//! `vm_operations_struct` and `dma_heap_ops` trampolines, in one `static`
//! set of tables per exporter and heap type, and the explicit fence API that importer
//! drivers call. A dma-buf owns its exporter object through
//! [`ForeignOwnable`] (`dma_buf->priv`, an `Arc`) from [`export`] until
//! `release`, and a registered heap its heap object (`dma_heap->priv`).
//! An exporter implements [`Exporter`] and never sees a raw pointer:
//! attachments are [`AttachmentKey`]s, the tables it hands out
//! [`MappedTable`]s, the reservation object a [`Resv`], user mappings
//! [`Vma`]s, kernel mappings [`KernelAddress`]es. Each trampoline recovers
//! the object, calls one safe method and converts the result for C.

use crate::{
    buffer::HeapBuffer,
    cache_ops::{Direction, DmaDevice},
    fence_hooks::{self, Fence, Reservation, Resv},
    pages::KernelAddress,
    sg::SgTable,
    sys,
    user_mappings::{VmFault, Vma},
};
use core::{ffi::c_void, marker::PhantomData, ptr::NonNull};
use kernel::{
    error::{from_err_ptr, VTABLE_DEFAULT_ERROR},
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::ForeignOwnable,
};

/// An importer's attachment as its exporter identifies it (kept in
/// `dma_buf_attachment->priv`): the address of what the exporter keeps for
/// it, which must not move while attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttachmentKey(NonNull<c_void>);

// SAFETY: A key is only compared, never dereferenced.
unsafe impl Send for AttachmentKey {}
// SAFETY: As above.
unsafe impl Sync for AttachmentKey {}

impl AttachmentKey {
    /// The key of `object`, which must stay at its address while attached
    /// (boxed).
    pub(crate) fn of<T>(object: &T) -> Self {
        Self(NonNull::from(object).cast())
    }
}

/// A table an exporter mapped for an importer, returned by `map_dma_buf`.
pub(crate) struct MappedTable(NonNull<sys::sg_table>);

impl MappedTable {
    /// `table`, which must stay mapped and in place until `unmap`.
    pub(crate) fn of(table: &SgTable) -> Self {
        Self(table.as_non_null())
    }
}

/// What a dma-buf exporter does for the dma-buf core. The dma-buf owns a
/// reference on the object (an `Arc`).
#[vtable]
pub(crate) trait Exporter: Send + Sync + Sized + 'static {
    /// A device attaches (`attach`); returns the attachment's key.
    fn attach(&self, dev: DmaDevice) -> Result<AttachmentKey>;
    /// The attachment goes (`detach`), mapped or not.
    fn detach(&self, key: AttachmentKey);
    /// The attachment's device maps the buffer (`map_dma_buf`; the
    /// reservation lock is held).
    fn map(&self, key: AttachmentKey, dir: Direction) -> Result<MappedTable>;
    /// The mapping ends (`unmap_dma_buf`; the reservation lock is held).
    fn unmap(&self, key: AttachmentKey);
    /// The CPU is about to access the buffer (`begin_cpu_access`).
    fn begin_cpu_access(&self, dir: Direction, resv: &Resv) -> Result;
    /// The CPU finished (`end_cpu_access`).
    fn end_cpu_access(&self, dir: Direction);
    /// User space maps the buffer (`mmap`, mmap lock held for writing).
    fn mmap(&self, _vma: &Vma) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A user access faulted in a vma that [`Vma::trap`] set up (`write`:
    /// a write; `upgrade`: it hit a read-only entry).
    fn user_fault(&self, _vma: &Vma, _page: usize, _write: bool, _upgrade: bool) -> VmFault {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A kernel mapping of the whole buffer (`vmap`).
    fn vmap(&self) -> Result<KernelAddress> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Undoes [`Self::vmap`].
    fn vunmap(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// The last reference is gone, just before the object is dropped.
    fn release(&self) {}
    /// The type's C tables, in a `static` of its own (a promoted constant's
    /// address is not guaranteed unique, and dma-bufs are told apart by
    /// it): `static T: ExporterTables = ExporterTables::of::<Type>(); &T`.
    fn tables() -> &'static ExporterTables;
}

/// The C tables of an exporter type, one `static` per type
/// ([`Exporter::tables`]): the dma-buf core and this module tell the
/// type's dma-bufs by the address of its `dma_buf_ops`.
pub(crate) struct ExporterTables {
    buf: sys::dma_buf_ops,
    vm: sys::vm_operations_struct,
}

// SAFETY: Read-only tables of function pointers, shared by every thread.
unsafe impl Sync for ExporterTables {}

impl ExporterTables {
    /// The tables of exporter type `T`, for its `static`.
    pub(crate) const fn of<T: Exporter>() -> Self {
        Self {
            buf: BufOps::<T>::TABLE,
            vm: BufOps::<T>::USER_VM_OPS,
        }
    }
}

/// An exported dma-buf whose exporter object is a `T`.
///
/// # Invariants
///
/// `raw` was returned by [`export`] for a `T` and the holder of this value
/// holds a reference on it (the one `export` returned, until it is given
/// to the dma-heap core).
pub(crate) struct DmaBuf<T: Exporter> {
    raw: NonNull<sys::dma_buf>,
    _exporter: PhantomData<T>,
}

impl<T: Exporter> DmaBuf<T> {
    /// The exporter object.
    pub(crate) fn exporter(&self) -> ArcBorrow<'_, T> {
        // SAFETY: Ours and live (type invariant).
        unsafe { borrow::<T>(self.raw.as_ptr()) }
    }

    /// The inode of the dma-buf's file (what `fstat` reports as `st_ino`).
    pub(crate) fn inode(&self) -> u64 {
        // SAFETY: Live (type invariant); every dma-buf has a file.
        unsafe { sys::rdh_dma_buf_inode(self.raw.as_ptr()) }
    }

    /// The reference, for C.
    pub(crate) fn into_raw(self) -> *mut sys::dma_buf {
        self.raw.as_ptr()
    }
}

/// Exports `object` as a dma-buf of `size` bytes; the dma-buf owns the
/// reference from then on (and drops it in `release`).
pub(crate) fn export<T: Exporter>(
    object: Arc<T>,
    size: usize,
    fd_flags: u32,
    exp_name: &'static CStr,
) -> Result<DmaBuf<T>> {
    // SAFETY: All zeroes is a valid `dma_buf_export_info`.
    let mut info: sys::dma_buf_export_info = unsafe { core::mem::zeroed() };
    info.exp_name = exp_name.as_char_ptr();
    // SAFETY: Returns this module's `struct module`, valid while it is loaded.
    info.owner = unsafe { sys::rdh_this_module() };
    info.ops = ops_of::<T>();
    info.size = size;
    // The dma-heap core allows only O_ACCMODE | O_CLOEXEC: fits an int.
    info.flags = i32::try_from(fd_flags).map_err(|_| EINVAL)?;
    let private = object.into_foreign();
    info.priv_ = private;
    // SAFETY: `info` is fully initialised; on success the dma-buf owns
    // `private` and gives it back in `release`.
    match from_err_ptr(unsafe { sys::dma_buf_export(&info) }) {
        Ok(raw) => Ok(DmaBuf {
            // INVARIANT: Just exported for a `T`; we hold the reference.
            raw: NonNull::new(raw).ok_or(ENOMEM)?,
            _exporter: PhantomData,
        }),
        Err(err) => {
            // SAFETY: Export failed, so nothing else refers to `private`.
            drop(unsafe { Arc::<T>::from_foreign(private) });
            Err(err)
        }
    }
}

/// The exporter object of a dma-buf exported by [`export`] for a `T`.
///
/// # Safety
///
/// `dmabuf` must be such a dma-buf and not yet released for `'a`.
pub(crate) unsafe fn borrow<'a, T: Exporter>(dmabuf: *mut sys::dma_buf) -> ArcBorrow<'a, T> {
    // SAFETY: Its `priv` holds the reference from `into_foreign` until
    // release (the caller's promise).
    unsafe { <Arc<T> as ForeignOwnable>::borrow((*dmabuf).priv_) }
}

/// The `dma_buf_ops` of exporter type `T` (what its dma-bufs point to).
pub(crate) fn ops_of<T: Exporter>() -> &'static sys::dma_buf_ops {
    &T::tables().buf
}

/// The exporter object and attachment key of an importer's attachment,
/// if it is an attachment of a `T`'s dma-buf.
///
/// # Safety
///
/// `attach` must be null or a live attachment for `'a`.
unsafe fn attached<'a, T: Exporter>(
    attach: *mut sys::dma_buf_attachment,
) -> Result<(ArcBorrow<'a, T>, AttachmentKey)> {
    if attach.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: A live attachment points to its live dma-buf.
    let dmabuf = unsafe { (*attach).dmabuf };
    // SAFETY: As above.
    if !core::ptr::eq(unsafe { (*dmabuf).ops }, ops_of::<T>()) {
        return Err(EINVAL);
    }
    // SAFETY: The dma-buf is a `T`'s, so `attach` was made by its attach
    // trampoline, which stored the key.
    let key = NonNull::new(unsafe { (*attach).priv_ })
        .map(AttachmentKey)
        .ok_or(EINVAL)?;
    // SAFETY: The dma-buf is a `T`'s and live.
    Ok((unsafe { borrow::<T>(dmabuf) }, key))
}

fn errno(result: Result) -> c_int {
    match result {
        Ok(()) => 0,
        Err(err) => err.to_errno(),
    }
}

/// The `dma_buf_ops` and `vm_operations_struct` of exporter type `T`.
struct BufOps<T: Exporter>(PhantomData<T>);

impl<T: Exporter> BufOps<T> {
    const TABLE: sys::dma_buf_ops = {
        // SAFETY: All zeroes is a valid `dma_buf_ops` (all hooks absent).
        let mut ops: sys::dma_buf_ops = unsafe { core::mem::zeroed() };
        ops.attach = Some(Self::attach);
        ops.detach = Some(Self::detach);
        ops.map_dma_buf = Some(Self::map);
        ops.unmap_dma_buf = Some(Self::unmap);
        ops.begin_cpu_access = Some(Self::begin_cpu_access);
        ops.end_cpu_access = Some(Self::end_cpu_access);
        if T::HAS_MMAP {
            ops.mmap = Some(Self::mmap);
        }
        if T::HAS_VMAP {
            ops.vmap = Some(Self::vmap);
            ops.vunmap = Some(Self::vunmap);
        }
        ops.release = Some(Self::release);
        ops
    };

    const USER_VM_OPS: sys::vm_operations_struct = {
        // SAFETY: All zeroes is a valid `vm_operations_struct`.
        let mut ops: sys::vm_operations_struct = unsafe { core::mem::zeroed() };
        if T::HAS_USER_FAULT {
            ops.fault = Some(Self::user_fault);
            ops.pfn_mkwrite = Some(Self::user_pfn_mkwrite);
        }
        ops
    };

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T` and a new
    /// attachment whose device stays valid until detach.
    unsafe extern "C" fn attach(
        dmabuf: *mut sys::dma_buf,
        attach: *mut sys::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        let (exporter, dev) = unsafe { (borrow::<T>(dmabuf), DmaDevice::new((*attach).dev)) };
        match exporter.attach(dev) {
            Ok(key) => {
                // SAFETY: `attach` is valid and ours to fill in.
                unsafe { (*attach).priv_ = key.0.as_ptr() };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core for an attachment made by
    /// [`Self::attach`].
    unsafe extern "C" fn detach(_dmabuf: *mut sys::dma_buf, attach: *mut sys::dma_buf_attachment) {
        // SAFETY: See the function's safety section.
        if let Ok((exporter, key)) = unsafe { attached::<T>(attach) } {
            exporter.detach(key);
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, reservation lock held, for an attachment
    /// made by [`Self::attach`].
    unsafe extern "C" fn map(
        attach: *mut sys::dma_buf_attachment,
        dir: sys::dma_data_direction,
    ) -> *mut sys::sg_table {
        // SAFETY: See the function's safety section.
        let mapped = unsafe { attached::<T>(attach) }.and_then(|(e, key)| e.map(key, dir));
        match mapped {
            Ok(table) => table.0.as_ptr(),
            Err(err) => err.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, reservation lock held, for a mapping made
    /// by [`Self::map`].
    unsafe extern "C" fn unmap(
        attach: *mut sys::dma_buf_attachment,
        _table: *mut sys::sg_table,
        _dir: sys::dma_data_direction,
    ) {
        // SAFETY: See the function's safety section.
        if let Ok((exporter, key)) = unsafe { attached::<T>(attach) } {
            exporter.unmap(key);
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T`, without its
    /// reservation lock (`dma_buf_begin_cpu_access` says `might_lock`).
    unsafe extern "C" fn begin_cpu_access(
        dmabuf: *mut sys::dma_buf,
        dir: sys::dma_data_direction,
    ) -> c_int {
        // SAFETY: See the function's safety section; `resv` is the dma-buf's.
        let (exporter, resv) = unsafe { (borrow::<T>(dmabuf), Resv::from_raw((*dmabuf).resv)) };
        errno(exporter.begin_cpu_access(dir, resv))
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T`.
    unsafe extern "C" fn end_cpu_access(
        dmabuf: *mut sys::dma_buf,
        dir: sys::dma_data_direction,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        unsafe { borrow::<T>(dmabuf) }.end_cpu_access(dir);
        0
    }

    /// # Safety
    ///
    /// Called by the dma-buf core from an `mmap` call on a live dma-buf of a
    /// `T` (also through `dma_buf_mmap`, which switches the vma's file to
    /// the dma-buf's), mmap lock held for writing.
    unsafe extern "C" fn mmap(dmabuf: *mut sys::dma_buf, vma: *mut sys::vm_area_struct) -> c_int {
        // SAFETY: See the function's safety section.
        let (exporter, vma) = unsafe { (borrow::<T>(dmabuf), Vma::from_raw(vma, &T::tables().vm)) };
        errno(exporter.mmap(&vma))
    }

    /// The exporter and vma of a fault in a vma set up by [`Self::mmap`].
    ///
    /// # Safety
    ///
    /// `vmf` must be such a fault, with the mmap lock or vma lock held for
    /// `'a`.
    unsafe fn faulting<'a>(vmf: *mut sys::vm_fault) -> (ArcBorrow<'a, T>, Vma) {
        // SAFETY: The vma of a fault is valid; its file is the dma-buf's and
        // holds a reference on it, so the exporter object is live.
        unsafe {
            let vma = (*vmf).__bindgen_anon_1.vma;
            let dmabuf = (*(*vma).vm_file).private_data.cast::<sys::dma_buf>();
            (borrow::<T>(dmabuf), Vma::from_raw(vma, &T::tables().vm))
        }
    }

    /// `vm_operations_struct.fault`: a user access found no entry.
    ///
    /// # Safety
    ///
    /// Called by the mm core for a vma set up by [`Self::mmap`].
    unsafe extern "C" fn user_fault(vmf: *mut sys::vm_fault) -> VmFault {
        // SAFETY: See the function's safety section.
        let (exporter, vma) = unsafe { Self::faulting(vmf) };
        // SAFETY: `vmf` is valid.
        let (flags, page) = unsafe { ((*vmf).flags, sys::rdh_vmf_pgoff(vmf)) };
        let write = flags & sys::fault_flag_FAULT_FLAG_WRITE != 0;
        exporter.user_fault(&vma, page, write, false)
    }

    /// `vm_operations_struct.pfn_mkwrite`: a user write hit a read-only
    /// entry.
    ///
    /// # Safety
    ///
    /// Called by the mm core for a vma set up by [`Self::mmap`], without the
    /// page-table lock.
    unsafe extern "C" fn user_pfn_mkwrite(vmf: *mut sys::vm_fault) -> VmFault {
        // SAFETY: See the function's safety section.
        let (exporter, vma) = unsafe { Self::faulting(vmf) };
        // SAFETY: `vmf` is valid.
        let page = unsafe { sys::rdh_vmf_pgoff(vmf) };
        exporter.user_fault(&vma, page, true, true)
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T` and a map to
    /// fill.
    unsafe extern "C" fn vmap(dmabuf: *mut sys::dma_buf, map: *mut sys::iosys_map) -> c_int {
        // SAFETY: See the function's safety section.
        match unsafe { borrow::<T>(dmabuf) }.vmap() {
            Ok(addr) => {
                // SAFETY: `map` is valid for writes.
                unsafe { sys::rdh_iosys_map_set_vaddr(map, addr.as_ptr()) };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core to undo a successful [`Self::vmap`].
    unsafe extern "C" fn vunmap(dmabuf: *mut sys::dma_buf, map: *mut sys::iosys_map) {
        // SAFETY: See the function's safety section.
        unsafe { borrow::<T>(dmabuf) }.vunmap();
        // SAFETY: `map` is valid for writes; all zeroes is a cleared map.
        unsafe { map.write(core::mem::zeroed()) };
    }

    /// # Safety
    ///
    /// Called once by the dma-buf core when the last reference is gone;
    /// nothing uses the exporter object afterwards.
    unsafe extern "C" fn release(dmabuf: *mut sys::dma_buf) {
        // SAFETY: `priv` holds the reference from `export`, and this is the
        // last use of it.
        let object = unsafe { Arc::<T>::from_foreign((*dmabuf).priv_) };
        object.release();
        drop(object);
    }
}

/// A heap that allocates buffers of type [`Allocator::Buffer`]; the
/// dma-heap core owns a reference on it (`priv`) once registered.
pub(crate) trait Allocator: Send + Sync + Sized + 'static {
    /// What the heap's dma-bufs own.
    type Buffer: Exporter;
    /// Allocates and exports a buffer of `len` bytes (page aligned, not
    /// zero; the core checked the flags), named `exp_name`.
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
pub(crate) struct HeapTable(sys::dma_heap_ops);

// SAFETY: A read-only table of function pointers, shared by every thread.
unsafe impl Sync for HeapTable {}

impl HeapTable {
    /// The table of heap type `H`, for its `static`.
    pub(crate) const fn of<H: Allocator>() -> Self {
        Self(sys::dma_heap_ops {
            allocate: Some(HeapOps::<H>::allocate),
        })
    }
}

/// Registers `heap` as `/dev/dma_heap/<name>`. A heap can never be removed,
/// so on success the core keeps the reference forever; on failure it is
/// dropped (with everything the heap owns).
pub(crate) fn register_heap<H: Allocator>(name: &'static CStr, heap: Arc<H>) -> Result {
    let private = heap.into_foreign();
    let info = sys::dma_heap_export_info {
        name: name.as_char_ptr(),
        ops: &H::table().0,
        priv_: private,
    };
    // SAFETY: `info` is valid for the call; the core copies what it keeps
    // except `name` and `ops`, which are static.
    if let Err(err) = from_err_ptr(unsafe { sys::dma_heap_add(&info) }) {
        // SAFETY: Not registered, so nothing else refers to `private`.
        drop(unsafe { Arc::<H>::from_foreign(private) });
        return Err(err);
    }
    Ok(())
}

/// The `dma_heap_ops` of heap type `H`.
struct HeapOps<H: Allocator>(PhantomData<H>);

impl<H: Allocator> HeapOps<H> {
    /// # Safety
    ///
    /// Called by the dma-heap core with a heap registered by
    /// [`register_heap`]; `len` is page aligned and non-zero, flags are
    /// validated.
    unsafe extern "C" fn allocate(
        heap: *mut sys::dma_heap,
        len: usize,
        fd_flags: u32,
        _heap_flags: u64,
    ) -> *mut sys::dma_buf {
        // SAFETY: `heap` is valid; its name is the static one registered,
        // its `priv` the reference `register_heap` gave it, kept forever.
        let (name, object) = unsafe {
            (
                CStr::from_char_ptr(sys::dma_heap_get_name(heap)),
                <Arc<H> as ForeignOwnable>::borrow(sys::dma_heap_get_drvdata(heap)),
            )
        };
        match H::allocate(object, len, fd_flags, name) {
            Ok(dmabuf) => dmabuf.into_raw(),
            Err(err) => err.to_ptr(),
        }
    }
}

// The explicit fence API of the heap's buffers (declared for C in
// `include/rust_dmabuf_heap.h`, exported by the C shim).

/// Step 1: reserve the declaration of an access.
///
/// # Safety
///
/// Called by an importer driver in process context with a live attachment
/// (or null).
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_access_reserve(
    attach: *mut sys::dma_buf_attachment,
    dir: sys::dma_data_direction,
) -> *mut sys::rdh_dma_buf_access {
    // SAFETY: See the function's safety section.
    let reserved = unsafe { attached::<HeapBuffer>(attach) }
        .and_then(|(buffer, key)| buffer.reserve_access(key, dir));
    match reserved {
        Ok(reservation) => reservation.into_raw().cast(),
        Err(err) => err.to_ptr(),
    }
}

/// Step 2: the reserved access ends with `fence`. Neither allocates nor
/// sleeps. Null or error pointers are ignored.
///
/// # Safety
///
/// `access` was returned by [`rdh_dma_buf_access_reserve`] and is neither
/// committed nor cancelled; its attachment is live; `fence` is valid.
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_access_commit(
    access: *mut sys::rdh_dma_buf_access,
    fence: *mut sys::dma_fence,
) {
    if fence.is_null() {
        return;
    }
    // SAFETY: See the function's safety section.
    if let Some(reservation) = unsafe { Reservation::from_raw(access.cast()) } {
        // SAFETY: As above; the caller holds a reference on `fence`.
        unsafe { fence_hooks::commit(reservation, Fence::from_raw(fence)) };
    }
}

/// Drops a reservation that will not be committed.
///
/// # Safety
///
/// `attach` is the live attachment `access` was reserved for, and `access`
/// is neither committed nor cancelled.
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_access_cancel(
    attach: *mut sys::dma_buf_attachment,
    access: *mut sys::rdh_dma_buf_access,
) {
    // SAFETY: See the function's safety section.
    let reservation = unsafe { Reservation::from_raw(access.cast()) };
    // SAFETY: As above.
    let attached = unsafe { attached::<HeapBuffer>(attach) };
    if let (Ok((buffer, _)), Some(reservation)) = (attached, reservation) {
        buffer.cancel_access(reservation);
    }
}

/// Both steps at once, for drivers that declare before publishing.
///
/// # Safety
///
/// Called by an importer driver in process context with a live attachment
/// and a valid fence (or null).
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_access_until(
    attach: *mut sys::dma_buf_attachment,
    dir: sys::dma_data_direction,
    fence: *mut sys::dma_fence,
) -> c_int {
    if fence.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: See the function's safety section.
    let reserved = unsafe { attached::<HeapBuffer>(attach) }
        .and_then(|(buffer, key)| buffer.reserve_access(key, dir));
    match reserved {
        Ok(reservation) => {
            // SAFETY: Just reserved; the attachment is live, `fence` valid
            // (the caller holds a reference).
            unsafe { fence_hooks::commit(reservation, Fence::from_raw(fence)) };
            0
        }
        Err(err) => err.to_errno(),
    }
}

// CPU access to a range of a buffer: for importer drivers (declared in
// `include/rust_dmabuf_heap.h`, exported by the C shim) and for user space
// through the control device (`control.rs`).

/// Begins (`start`) or ends CPU access in direction `dir` to bytes
/// `offset..offset + len` of `dmabuf`, one of the heap's buffers.
///
/// # Safety
///
/// `dmabuf` is null or a live dma-buf.
unsafe fn sync_range(
    dmabuf: *mut sys::dma_buf,
    start: bool,
    dir: Direction,
    offset: u64,
    len: u64,
) -> Result {
    // SAFETY: A live dma-buf (the caller's promise) has valid `ops`.
    if dmabuf.is_null() || !core::ptr::eq(unsafe { (*dmabuf).ops }, ops_of::<HeapBuffer>()) {
        return Err(EINVAL);
    }
    // SAFETY: A live dma-buf of a `HeapBuffer`.
    let buffer = unsafe { borrow::<HeapBuffer>(dmabuf) };
    let pages = buffer.pages_of(offset, len)?;
    if start {
        // SAFETY: The dma-buf's own reservation object, live with it.
        let resv = unsafe { Resv::from_raw((*dmabuf).resv) };
        buffer.begin_cpu_access_in(dir, resv, Some(pages))
    } else {
        buffer.end_cpu_access_in(dir, Some(pages));
        Ok(())
    }
}

/// CPU access to a range of a buffer begins.
///
/// # Safety
///
/// Called by an importer driver in process context with a dma-buf it holds
/// a reference on (or null).
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_begin_cpu_access_range(
    dmabuf: *mut sys::dma_buf,
    dir: sys::dma_data_direction,
    offset: usize,
    len: usize,
) -> c_int {
    // SAFETY: See the function's safety section.
    errno(unsafe { sync_range(dmabuf, true, dir, offset as u64, len as u64) })
}

/// CPU access to a range of a buffer ends.
///
/// # Safety
///
/// As for [`rdh_dma_buf_begin_cpu_access_range`].
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_dma_buf_end_cpu_access_range(
    dmabuf: *mut sys::dma_buf,
    dir: sys::dma_data_direction,
    offset: usize,
    len: usize,
) -> c_int {
    // SAFETY: See the function's safety section.
    errno(unsafe { sync_range(dmabuf, false, dir, offset as u64, len as u64) })
}

/// A dma-buf taken by its fd (`dma_buf_get`), put when dropped.
///
/// # Invariants
///
/// `dmabuf` is a live dma-buf whose file we hold a reference on.
pub(crate) struct DmaBufFile {
    dmabuf: NonNull<sys::dma_buf>,
}

impl DmaBufFile {
    /// The dma-buf of `fd`: `EBADF` if it is no open file, `EINVAL` if
    /// not a dma-buf.
    pub(crate) fn get(fd: i32) -> Result<Self> {
        // SAFETY: `dma_buf_get` checks any fd.
        let dmabuf = from_err_ptr(unsafe { sys::dma_buf_get(fd) })?;
        // INVARIANT: Not an error, so a dma-buf whose file we now hold.
        NonNull::new(dmabuf)
            .map(|dmabuf| Self { dmabuf })
            .ok_or(EINVAL)
    }

    /// [`rdh_dma_buf_begin_cpu_access_range`] (`start`) or
    /// [`rdh_dma_buf_end_cpu_access_range`] on this dma-buf; `EINVAL` if it
    /// is not one of the heap's.
    pub(crate) fn sync_range(&self, start: bool, dir: Direction, offset: u64, len: u64) -> Result {
        // SAFETY: Live by the type invariant.
        unsafe { sync_range(self.dmabuf.as_ptr(), start, dir, offset, len) }
    }
}

impl DmaBufFile {
    /// Whether both are the same dma-buf.
    pub(crate) fn is(&self, other: &DmaBufFile) -> bool {
        self.dmabuf == other.dmabuf
    }
}

// SAFETY: A file reference may be put from any thread, and `sync_range`
// serialises on the buffer's own lock.
unsafe impl Send for DmaBufFile {}
// SAFETY: As above; shared access only reads the pointer.
unsafe impl Sync for DmaBufFile {}

impl Drop for DmaBufFile {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold this reference.
        unsafe { sys::dma_buf_put(self.dmabuf.as_ptr()) };
    }
}
