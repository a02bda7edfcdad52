// SPDX-License-Identifier: GPL-2.0

//! DMA-BUF exporters.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! An exporter implements [`Exporter`] for the object its dma-bufs own and
//! [`export()`]s it; the dma-buf owns one reference (`dma_buf->priv`, an
//! [`Arc`]) until `release`. What the exporter keeps per importer is its
//! [`Exporter::Attachment`], a [`ForeignOwnable`] kept in
//! `dma_buf_attachment->priv` from `attach` to `detach` and borrowed by
//! `map` and `unmap`, as [`miscdevice`] does with its `Ptr`.
//!
//! Every trampoline recovers the objects, calls one safe method and converts
//! the result for C; there is one `static` set of C tables per exporter type
//! ([`Exporter::tables`]), by which a dma-buf is known to be of that type.
//!
//! [`miscdevice`]: kernel::miscdevice

use crate::bindings;
use crate::{
    dma_resv::Resv,
    mm_pfnmap::{HugeEntry, PfnMap, VmFault, HUGE_ENTRIES},
    vmap::KernelAddress,
};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    device::Device,
    dma::DataDirection,
    error::{from_err_ptr, VTABLE_DEFAULT_ERROR},
    mm::virt::{VmaNew, VmaRef},
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::ForeignOwnable,
};

/// The direction of a raw `enum dma_data_direction`; anything unknown is
/// taken as both ways.
///
/// # Examples
///
/// ```
/// use kernel::{dma::DataDirection, dma_buf::direction};
///
/// assert_eq!(direction(DataDirection::FromDevice.into()), DataDirection::FromDevice);
/// assert_eq!(direction(DataDirection::None.into()), DataDirection::None);
/// ```
pub fn direction(dir: bindings::dma_data_direction) -> DataDirection {
    if dir == DataDirection::ToDevice.into() {
        DataDirection::ToDevice
    } else if dir == DataDirection::FromDevice.into() {
        DataDirection::FromDevice
    } else if dir == DataDirection::None.into() {
        DataDirection::None
    } else {
        DataDirection::Bidirectional
    }
}

/// A scatter-gather table an exporter mapped for an importer, as returned
/// to the dma-buf core by `map_dma_buf`.
///
/// The exporter keeps the table mapped and in place until the core calls
/// [`Exporter::unmap`] for the attachment.
pub struct MappedTable(NonNull<bindings::sg_table>);

impl MappedTable {
    /// The table `table`, which the exporter keeps mapped until `unmap`.
    pub fn new(table: &kernel::scatterlist::SGTable) -> Self {
        Self(NonNull::from(table).cast())
    }
}

/// The borrowed form of an exporter's attachment.
pub type AttachmentRef<'a, T> = <<T as Exporter>::Attachment as ForeignOwnable>::Borrowed<'a>;

/// What a dma-buf exporter does for the dma-buf core.
#[vtable]
pub trait Exporter: Send + Sync + Sized + 'static {
    /// What the exporter keeps for one importer, from `attach` to `detach`.
    type Attachment: ForeignOwnable + Send + Sync;

    /// Device `dev` attaches (`attach`). The device outlives the
    /// attachment.
    fn attach(&self, dev: &Device) -> Result<Self::Attachment>;

    /// The attachment goes (`detach`), mapped or not.
    fn detach(&self, attachment: Self::Attachment) {
        drop(attachment);
    }

    /// The attachment's device maps the buffer (`map_dma_buf`; the
    /// reservation lock is held).
    fn map(&self, attachment: AttachmentRef<'_, Self>, dir: DataDirection) -> Result<MappedTable>;

    /// The mapping ends (`unmap_dma_buf`; the reservation lock is held).
    fn unmap(&self, attachment: AttachmentRef<'_, Self>, dir: DataDirection);

    /// The CPU is about to access the buffer (`begin_cpu_access`; the
    /// reservation lock is not held).
    fn begin_cpu_access(&self, dir: DataDirection, resv: &Resv) -> Result;

    /// The CPU finished (`end_cpu_access`).
    fn end_cpu_access(&self, dir: DataDirection) -> Result;

    /// User space maps the buffer (`mmap`, mmap lock held for writing).
    fn mmap(&self, _mmap: &Mmap<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A user access faulted in a vma that [`Mmap::fault_in`] set up.
    fn fault(&self, _fault: &Fault<'_>) -> VmFault {
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
/// ([`Exporter::tables`]): a dma-buf is of the type whose `dma_buf_ops`
/// it points to.
pub struct ExporterTables {
    buf: bindings::dma_buf_ops,
    vm: bindings::vm_operations_struct,
}

// SAFETY: Read-only tables of function pointers, shared by every thread.
unsafe impl Sync for ExporterTables {}

impl ExporterTables {
    /// The tables of exporter type `T`, for its `static`.
    pub const fn of<T: Exporter>() -> Self {
        Self {
            buf: BufOps::<T>::TABLE,
            vm: BufOps::<T>::FAULT_VM_OPS,
        }
    }
}

/// A user `mmap` of a dma-buf, for [`Exporter::mmap`].
pub struct Mmap<'a> {
    vma: &'a VmaNew,
    dmabuf: NonNull<bindings::dma_buf>,
    fault_ops: &'static bindings::vm_operations_struct,
}

impl<'a> Mmap<'a> {
    /// The new vma.
    pub fn vma(&self) -> &'a VmaNew {
        self.vma
    }

    /// Makes the vma a PFN mapping without entries, which
    /// [`Exporter::fault`] fills.
    pub fn fault_in(&self) -> PfnMap<'a> {
        // SAFETY: During `mmap`, the ops are the exporter's own static table.
        unsafe { PfnMap::with_faults(self.vma, self.fault_ops) }
    }

    /// Makes the vma a PFN mapping that the exporter fills now.
    pub fn map_now(&self) -> PfnMap<'a> {
        PfnMap::now(self.vma)
    }

    /// The handle on every user mapping of the dma-buf.
    pub fn user_mappings(&self) -> UserMappings {
        // INVARIANT: The exporter object that keeps it is owned by this
        // dma-buf.
        UserMappings(self.dmabuf)
    }
}

/// A user access that faulted in a vma of [`Mmap::fault_in`].
pub struct Fault<'a> {
    /// The vma.
    pub vma: &'a VmaRef,
    /// The buffer page accessed.
    pub page: usize,
    /// A write (else a read).
    pub write: bool,
    /// A write to an entry that was mapped read-only.
    pub upgrade: bool,
    /// The mm core asks for one huge entry around the access (`huge_fault`
    /// at PMD order): map it with [`HugeEntry::insert`], or return
    /// [`VmFault::FALLBACK`] for PTEs.
    pub huge: Option<HugeEntry<'a>>,
}

/// Every user mapping of one dma-buf: its file's address space.
///
/// # Invariants
///
/// Kept only by the exporter object of that dma-buf, which the dma-buf
/// owns, so the dma-buf is live whenever this is used.
pub struct UserMappings(NonNull<bindings::dma_buf>);

// SAFETY: The dma-buf may be used from any thread.
unsafe impl Send for UserMappings {}
// SAFETY: As above; nothing here mutates Rust state.
unsafe impl Sync for UserMappings {}

impl UserMappings {
    /// Removes every user page-table entry of the dma-buf, in every
    /// process; faults map them again.
    pub fn revoke(&self) {
        // SAFETY: The dma-buf and its file are live (type invariant).
        unsafe { bindings::unmap_mapping_range((*(*self.0.as_ptr()).file).f_mapping, 0, 0, 1) };
    }

    /// The inode number of the dma-buf's file (`st_ino`).
    pub fn inode(&self) -> u64 {
        // SAFETY: As above.
        unsafe { inode_of(self.0.as_ptr()) }
    }

    /// The dma-buf's size in bytes.
    pub fn size(&self) -> usize {
        // SAFETY: As above.
        unsafe { (*self.0.as_ptr()).size }
    }
}

/// # Safety
///
/// `dmabuf` is live.
unsafe fn inode_of(dmabuf: *mut bindings::dma_buf) -> u64 {
    // SAFETY: A live dma-buf has a file with an inode.
    unsafe { (*(*(*dmabuf).file).f_inode).i_ino }
}

/// An exported dma-buf whose exporter object is a `T`.
///
/// # Invariants
///
/// `raw` was returned by [`export()`] for a `T` and the holder of this value
/// holds a reference on it (the one `export` returned, until it is given
/// away by [`Self::into_raw`]).
pub struct DmaBuf<T: Exporter> {
    raw: NonNull<bindings::dma_buf>,
    _exporter: PhantomData<T>,
}

impl<T: Exporter> DmaBuf<T> {
    /// The exporter object.
    pub fn exporter(&self) -> ArcBorrow<'_, T> {
        // SAFETY: Ours and live (type invariant).
        unsafe { borrow::<T>(self.raw.as_ptr()) }
    }

    /// The inode number of the dma-buf's file (`st_ino`).
    pub fn inode(&self) -> u64 {
        // SAFETY: Live (type invariant).
        unsafe { inode_of(self.raw.as_ptr()) }
    }

    /// Gives the reference to C (the dma-heap core installs it as an fd).
    pub fn into_raw(self) -> *mut bindings::dma_buf {
        let this = core::mem::ManuallyDrop::new(self);
        this.raw.as_ptr()
    }
}

impl<T: Exporter> Drop for DmaBuf<T> {
    fn drop(&mut self) {
        // SAFETY: We hold this reference (type invariant).
        unsafe { bindings::dma_buf_put(self.raw.as_ptr()) };
    }
}

/// Exports `object` as a dma-buf of `size` bytes owned by `owner`; the
/// dma-buf owns the reference from then on (and drops it in `release`).
pub fn export<T: Exporter>(
    object: Arc<T>,
    size: usize,
    fd_flags: u32,
    exp_name: &'static CStr,
    owner: &'static ThisModule,
) -> Result<DmaBuf<T>> {
    // SAFETY: All zeroes is a valid `dma_buf_export_info`.
    let mut info: bindings::dma_buf_export_info = unsafe { core::mem::zeroed() };
    info.exp_name = exp_name.as_char_ptr();
    info.owner = owner.as_ptr();
    info.ops = &T::tables().buf;
    info.size = size;
    // The dma-heap core allows only O_ACCMODE | O_CLOEXEC: fits an int.
    info.flags = i32::try_from(fd_flags).map_err(|_| EINVAL)?;
    let private = object.into_foreign();
    info.priv_ = private;
    // SAFETY: `info` is fully initialised; on success the dma-buf owns
    // `private` and gives it back in `release`.
    match from_err_ptr(unsafe { bindings::dma_buf_export(&info) }) {
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

/// The exporter object of a dma-buf exported by [`export()`] for a `T`.
///
/// # Safety
///
/// `dmabuf` must be such a dma-buf and not yet released for `'a`.
unsafe fn borrow<'a, T: Exporter>(dmabuf: *mut bindings::dma_buf) -> ArcBorrow<'a, T> {
    // SAFETY: Its `priv` holds the reference from `into_foreign` until
    // release (the caller's promise).
    unsafe { <Arc<T> as ForeignOwnable>::borrow((*dmabuf).priv_) }
}

/// The exporter object of `dmabuf` and its reservation object, if it is a
/// dma-buf of a `T`.
///
/// # Safety
///
/// `dmabuf` must be null or a live dma-buf for `'a`.
pub unsafe fn exporter_of<'a, T: Exporter>(
    dmabuf: *mut bindings::dma_buf,
) -> Result<(ArcBorrow<'a, T>, &'a Resv)> {
    // SAFETY: A live dma-buf (the caller's promise) has valid `ops`.
    if dmabuf.is_null() || !core::ptr::eq(unsafe { (*dmabuf).ops }, &T::tables().buf) {
        return Err(EINVAL);
    }
    // SAFETY: A live dma-buf of a `T`, with its own reservation object; the
    // caller does not hold its lock (this is not called from a callback).
    Ok(unsafe { (borrow::<T>(dmabuf), Resv::from_raw((*dmabuf).resv)) })
}

/// The exporter object and attachment of an importer's attachment, if it
/// is an attachment of a `T`'s dma-buf.
///
/// # Safety
///
/// `attach` must be null or a live attachment for `'a`.
pub unsafe fn attachment_of<'a, T: Exporter>(
    attach: *mut bindings::dma_buf_attachment,
) -> Result<(ArcBorrow<'a, T>, AttachmentRef<'a, T>)> {
    if attach.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: A live attachment points to its live dma-buf.
    let dmabuf = unsafe { (*attach).dmabuf };
    // SAFETY: As above.
    if !core::ptr::eq(unsafe { (*dmabuf).ops }, &T::tables().buf) {
        return Err(EINVAL);
    }
    // SAFETY: The dma-buf is a `T`'s, so `attach` was made by its attach
    // trampoline, which stored the attachment; both live for `'a`.
    unsafe {
        Ok((
            borrow::<T>(dmabuf),
            <T::Attachment as ForeignOwnable>::borrow((*attach).priv_),
        ))
    }
}

/// A dma-buf taken by its fd (`dma_buf_get`), put when dropped.
///
/// # Invariants
///
/// `dmabuf` is a live dma-buf whose file we hold a reference on.
pub struct DmaBufFile {
    dmabuf: NonNull<bindings::dma_buf>,
}

// SAFETY: A file reference may be put from any thread.
unsafe impl Send for DmaBufFile {}
// SAFETY: Shared access only reads the pointer.
unsafe impl Sync for DmaBufFile {}

impl DmaBufFile {
    /// The dma-buf of `fd`: `EBADF` if it is no open file, `EINVAL` if
    /// not a dma-buf.
    pub fn get(fd: i32) -> Result<Self> {
        // SAFETY: `dma_buf_get` checks any fd.
        let dmabuf = from_err_ptr(unsafe { bindings::dma_buf_get(fd) })?;
        // INVARIANT: Not an error, so a dma-buf whose file we now hold.
        NonNull::new(dmabuf)
            .map(|dmabuf| Self { dmabuf })
            .ok_or(EINVAL)
    }

    /// Its exporter object and reservation object, if it is a `T`'s
    /// dma-buf (else `EINVAL`).
    pub fn exporter<T: Exporter>(&self) -> Result<(ArcBorrow<'_, T>, &Resv)> {
        // SAFETY: Live by the type invariant, for as long as `self`.
        unsafe { exporter_of::<T>(self.dmabuf.as_ptr()) }
    }

    /// Whether both are the same dma-buf.
    pub fn is(&self, other: &DmaBufFile) -> bool {
        self.dmabuf == other.dmabuf
    }
}

impl Drop for DmaBufFile {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold this reference.
        unsafe { bindings::dma_buf_put(self.dmabuf.as_ptr()) };
    }
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
    const TABLE: bindings::dma_buf_ops = {
        // SAFETY: All zeroes is a valid `dma_buf_ops` (all hooks absent).
        let mut ops: bindings::dma_buf_ops = unsafe { core::mem::zeroed() };
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

    const FAULT_VM_OPS: bindings::vm_operations_struct = {
        // SAFETY: All zeroes is a valid `vm_operations_struct`.
        let mut ops: bindings::vm_operations_struct = unsafe { core::mem::zeroed() };
        if T::HAS_FAULT {
            ops.fault = Some(Self::fault);
            ops.pfn_mkwrite = Some(Self::pfn_mkwrite);
            if HUGE_ENTRIES {
                ops.huge_fault = Some(Self::huge_fault);
            }
        }
        ops
    };

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T` and a new
    /// attachment whose device stays valid until detach.
    unsafe extern "C" fn attach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        let (exporter, dev) = unsafe { (borrow::<T>(dmabuf), Device::from_raw((*attach).dev)) };
        match exporter.attach(dev) {
            Ok(attachment) => {
                // SAFETY: `attach` is valid and its `priv` ours to fill in;
                // `detach` takes the attachment back.
                unsafe { (*attach).priv_ = attachment.into_foreign() };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called once by the dma-buf core for an attachment made by
    /// [`Self::attach`]; nothing uses the attachment afterwards.
    unsafe extern "C" fn detach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: See the function's safety section: `priv` holds what
        // `attach` stored, and this is its last use.
        let (exporter, attachment) = unsafe {
            (
                borrow::<T>(dmabuf),
                T::Attachment::from_foreign((*attach).priv_),
            )
        };
        exporter.detach(attachment);
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, reservation lock held, for an attachment
    /// made by [`Self::attach`].
    unsafe extern "C" fn map(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        // SAFETY: See the function's safety section.
        let mapped = unsafe { attachment_of::<T>(attach) }
            .and_then(|(exporter, attachment)| exporter.map(attachment, direction(dir)));
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
        attach: *mut bindings::dma_buf_attachment,
        _table: *mut bindings::sg_table,
        dir: bindings::dma_data_direction,
    ) {
        // SAFETY: See the function's safety section.
        if let Ok((exporter, attachment)) = unsafe { attachment_of::<T>(attach) } {
            exporter.unmap(attachment, direction(dir));
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T`, without its
    /// reservation lock (`dma_buf_begin_cpu_access` says `might_lock`).
    unsafe extern "C" fn begin_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: See the function's safety section; `resv` is the dma-buf's.
        let (exporter, resv) = unsafe { (borrow::<T>(dmabuf), Resv::from_raw((*dmabuf).resv)) };
        errno(exporter.begin_cpu_access(direction(dir), resv))
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T`.
    unsafe extern "C" fn end_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        errno(unsafe { borrow::<T>(dmabuf) }.end_cpu_access(direction(dir)))
    }

    /// # Safety
    ///
    /// Called by the dma-buf core from an `mmap` call on a live dma-buf of a
    /// `T` (also through `dma_buf_mmap`, which switches the vma's file to
    /// the dma-buf's), mmap lock held for writing, the vma being set up.
    unsafe extern "C" fn mmap(
        dmabuf: *mut bindings::dma_buf,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        let (exporter, vma) = unsafe { (borrow::<T>(dmabuf), VmaNew::from_raw(vma)) };
        let mmap = Mmap {
            vma,
            // SAFETY: Non-null: a live dma-buf.
            dmabuf: unsafe { NonNull::new_unchecked(dmabuf) },
            fault_ops: &T::tables().vm,
        };
        errno(exporter.mmap(&mmap))
    }

    /// The exporter and fault of a fault in a vma set up by [`Self::mmap`].
    ///
    /// # Safety
    ///
    /// `vmf` must be such a fault, with the mmap lock or vma lock held for
    /// `'a`.
    unsafe fn faulting<'a>(
        vmf: *mut bindings::vm_fault,
        upgrade: bool,
        huge: Option<HugeEntry<'a>>,
    ) -> (ArcBorrow<'a, T>, Fault<'a>) {
        // SAFETY: The vma of a fault is valid and read-locked; its file is
        // the dma-buf's and holds a reference on it, so the exporter object
        // is live.
        unsafe {
            let vma = (*vmf).__bindgen_anon_1.vma;
            let dmabuf = (*(*vma).vm_file).private_data.cast::<bindings::dma_buf>();
            let write = (*vmf).flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0;
            let fault = Fault {
                vma: VmaRef::from_raw(vma),
                page: (*vmf).__bindgen_anon_1.pgoff,
                write: write || upgrade,
                upgrade,
                huge,
            };
            (borrow::<T>(dmabuf), fault)
        }
    }

    /// `vm_operations_struct.fault`: a user access found no entry.
    ///
    /// # Safety
    ///
    /// Called by the mm core for a vma set up by [`Self::mmap`].
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: See the function's safety section.
        let (exporter, fault) = unsafe { Self::faulting(vmf, false, None) };
        exporter.fault(&fault).as_raw()
    }

    /// `vm_operations_struct.pfn_mkwrite`: a user write hit a read-only
    /// entry.
    ///
    /// # Safety
    ///
    /// Called by the mm core for a vma set up by [`Self::mmap`], without the
    /// page-table lock.
    unsafe extern "C" fn pfn_mkwrite(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: See the function's safety section.
        let (exporter, fault) = unsafe { Self::faulting(vmf, true, None) };
        exporter.fault(&fault).as_raw()
    }

    /// `vm_operations_struct.huge_fault`: a user access found no entry, or
    /// wrote to a read-only huge one, where one entry of `order` could map
    /// it. Only PMD order is served, where the entry's address range lies in
    /// the vma.
    ///
    /// # Safety
    ///
    /// Called by the mm core for a vma set up by [`Self::mmap`].
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: c_uint,
    ) -> bindings::vm_fault_t {
        if order != bindings::PMD_ORDER {
            return VmFault::FALLBACK.as_raw();
        }
        // SAFETY: A PMD-order fault of such a vma (the function's safety
        // section); `vmf` is not null.
        let Some(huge) = (unsafe { HugeEntry::new(NonNull::new_unchecked(vmf)) }) else {
            return VmFault::FALLBACK.as_raw();
        };
        let upgrade = huge.upgrade();
        // SAFETY: See the function's safety section.
        let (exporter, fault) = unsafe { Self::faulting(vmf, upgrade, Some(huge)) };
        exporter.fault(&fault).as_raw()
    }

    /// # Safety
    ///
    /// Called by the dma-buf core with a live dma-buf of a `T` and a map to
    /// fill.
    unsafe extern "C" fn vmap(
        dmabuf: *mut bindings::dma_buf,
        map: *mut bindings::iosys_map,
    ) -> c_int {
        // SAFETY: See the function's safety section.
        match unsafe { borrow::<T>(dmabuf) }.vmap() {
            Ok(addr) => {
                // SAFETY: `map` is valid for writes; this is what
                // `iosys_map_set_vaddr` does.
                unsafe {
                    map.write(core::mem::zeroed());
                    (*map).__bindgen_anon_1.vaddr = addr.as_ptr();
                    (*map).is_iomem = false;
                }
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core to undo a successful [`Self::vmap`].
    unsafe extern "C" fn vunmap(dmabuf: *mut bindings::dma_buf, map: *mut bindings::iosys_map) {
        // SAFETY: See the function's safety section.
        unsafe { borrow::<T>(dmabuf) }.vunmap();
        // SAFETY: `map` is valid for writes; all zeroes is a cleared map.
        unsafe { map.write(core::mem::zeroed()) };
    }

    /// # Safety
    ///
    /// Called once by the dma-buf core when the last reference is gone;
    /// nothing uses the exporter object afterwards.
    unsafe extern "C" fn release(dmabuf: *mut bindings::dma_buf) {
        // SAFETY: `priv` holds the reference from `export`, and this is the
        // last use of it.
        let object = unsafe { Arc::<T>::from_foreign((*dmabuf).priv_) };
        object.release();
        drop(object);
    }
}
