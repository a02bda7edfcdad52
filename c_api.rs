// SPDX-License-Identifier: GPL-2.0

//! The heap's C interfaces: the functions it exports to importer drivers
//! (declared in `include/linux/rust_dmabuf_heap.h`, exported by `glue/exports.c`)
//! and the layout of its ioctl's argument
//! (`include/uapi/linux/rust_dmabuf_heap.h`). With `glue.rs`, the only
//! driver code that handles C pointers.

use crate::{
    bindings as sys,
    buffer::HeapBuffer,
    dma_buf::{self, DmaBufFile},
    dma_fence::Fence,
    fence_hooks::Watch,
};
use kernel::{dma::DataDirection, prelude::*, transmute::FromBytes};

fn errno(result: Result) -> c_int {
    match result {
        Ok(()) => 0,
        Err(err) => err.to_errno(),
    }
}

/// The watch behind a reservation pointer, if it is one (not null, not an
/// error pointer).
///
/// # Safety
///
/// A non-null, non-error `access` must come from
/// [`rdh_dma_buf_access_reserve`] and be neither committed nor cancelled,
/// with its buffer live, for `'a`.
unsafe fn watch_of<'a>(access: *mut sys::rdh_dma_buf_access) -> Option<&'a Watch> {
    if access.is_null() || access.addr() > usize::MAX - 4095 {
        return None;
    }
    // SAFETY: A reservation's watch, pinned in its buffer until cancelled or
    // the buffer goes (the caller's promise).
    Some(unsafe { &*access.cast::<Watch>() })
}

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
    let reserved =
        unsafe { dma_buf::attachment_of::<HeapBuffer>(attach) }.and_then(|(buffer, attachment)| {
            buffer.reserve_access(attachment, dma_buf::direction(dir))
        });
    match reserved {
        Ok(reservation) => reservation.as_ptr().cast(),
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
    if let Some(watch) = unsafe { watch_of(access) } {
        // SAFETY: The caller holds a reference on `fence`.
        watch.commit(unsafe { Fence::from_raw(fence) });
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
    let watch = unsafe { watch_of(access) };
    // SAFETY: As above.
    let attached = unsafe { dma_buf::attachment_of::<HeapBuffer>(attach) };
    if let (Ok((buffer, _)), Some(watch)) = (attached, watch) {
        buffer.cancel_access(watch);
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
    let reserved =
        unsafe { dma_buf::attachment_of::<HeapBuffer>(attach) }.and_then(|(buffer, attachment)| {
            buffer.reserve_access(attachment, dma_buf::direction(dir))
        });
    match reserved {
        Ok(reservation) => {
            // SAFETY: Just reserved, so live and pinned in the buffer, which
            // the live attachment keeps.
            let watch = unsafe { &*reservation.as_ptr() };
            // SAFETY: The caller holds a reference on `fence`.
            watch.commit(unsafe { Fence::from_raw(fence) });
            0
        }
        Err(err) => err.to_errno(),
    }
}

/// Begins (`start`) or ends CPU access in direction `dir` to bytes
/// `offset..offset + len` of `dmabuf`'s buffer; `EINVAL` if it is not one
/// of the heap's. For importer drivers (below) and for user space through
/// the control device (`control.rs`).
pub(crate) fn sync_range(
    dmabuf: &DmaBufFile,
    start: bool,
    dir: DataDirection,
    offset: u64,
    len: u64,
) -> Result {
    let (buffer, resv) = dmabuf.exporter::<HeapBuffer>()?;
    buffer.sync_range(start, dir, resv, offset, len)
}

/// [`sync_range`] on a dma-buf pointer.
///
/// # Safety
///
/// `dmabuf` is null or a live dma-buf.
unsafe fn sync_range_raw(
    dmabuf: *mut sys::dma_buf,
    start: bool,
    dir: sys::dma_data_direction,
    offset: usize,
    len: usize,
) -> c_int {
    // SAFETY: See the function's safety section.
    let result =
        unsafe { dma_buf::exporter_of::<HeapBuffer>(dmabuf) }.and_then(|(buffer, resv)| {
            buffer.sync_range(
                start,
                dma_buf::direction(dir),
                resv,
                offset as u64,
                len as u64,
            )
        });
    errno(result)
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
    unsafe { sync_range_raw(dmabuf, true, dir, offset, len) }
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
    unsafe { sync_range_raw(dmabuf, false, dir, offset, len) }
}

/// The control device's ioctl (`RDH_IOCTL_SYNC_RANGE`).
pub(crate) const SYNC_RANGE_CMD: u32 = sys::RDH_SYNC_RANGE_CMD;

/// `struct rdh_sync_range`, as user space passes it.
#[repr(transparent)]
pub(crate) struct SyncRange(sys::rdh_sync_range);

// SAFETY: Only integer fields, with no padding (s32, u32, u64, u64): every
// bit pattern is a valid value.
unsafe impl FromBytes for SyncRange {}

impl SyncRange {
    /// Whether the access begins, and its direction (as `DMA_BUF_IOCTL_SYNC`
    /// takes its flags); `EINVAL` for unknown flags or neither READ nor
    /// WRITE.
    pub(crate) fn what(&self) -> Result<(bool, DataDirection)> {
        let flags = self.0.flags;
        if flags & !sys::RDH_SYNC_VALID_FLAGS != 0 {
            return Err(EINVAL);
        }
        let dir = match (
            flags & sys::RDH_SYNC_READ != 0,
            flags & sys::RDH_SYNC_WRITE != 0,
        ) {
            (true, true) => DataDirection::Bidirectional,
            (true, false) => DataDirection::FromDevice,
            (false, true) => DataDirection::ToDevice,
            (false, false) => return Err(EINVAL),
        };
        Ok((flags & sys::RDH_SYNC_END == 0, dir))
    }

    /// The dma-buf's fd.
    pub(crate) fn fd(&self) -> i32 {
        self.0.fd
    }

    /// The range: offset and length in bytes.
    pub(crate) fn range(&self) -> (u64, u64) {
        (self.0.offset, self.0.len)
    }
}
