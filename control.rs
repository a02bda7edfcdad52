// SPDX-License-Identifier: GPL-2.0

//! The heap's control device, `/dev/rust_dmabuf_heap`: what user space can
//! ask of the heap's buffers beyond the dma-heap and dma-buf ioctls, which
//! belong to their cores. Today one ioctl, `RDH_IOCTL_SYNC_RANGE`
//! (`include/uapi/linux/rust_dmabuf_heap.h`): `DMA_BUF_IOCTL_SYNC` for a
//! range of a buffer, whose brackets belong to the open file.

use crate::{cache_ops::Direction, dmabuf::DmaBufFile, sys};
use kernel::{
    alloc::flags::GFP_KERNEL,
    dma::DataDirection,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::Mutex,
    transmute::FromBytes,
    uaccess::{UserPtr, UserSlice},
};

/// The control device.
pub(crate) struct Control;

/// An open file of the control device: it owns the range brackets begun
/// through it, and ends those still open when it is released, so that a
/// process that dies (or forgets) between START and END leaves no bracket
/// open on a buffer for ever.
///
/// Lock order: `ranges`, then a buffer's lock (inside `sync_range`).
#[pin_data]
pub(crate) struct OpenFile {
    #[pin]
    ranges: Mutex<KVec<OpenRange>>,
}

/// A range bracket begun through a control file and not ended through it
/// yet; it holds a reference on the dma-buf.
struct OpenRange {
    dmabuf: DmaBufFile,
    offset: u64,
    len: u64,
    dir: Direction,
}

impl OpenFile {
    /// Begins or ends a range bracket. A START is recorded once it
    /// succeeds (room is made first, so that a begun bracket is always
    /// recorded); an END takes the latest record of the same range of the
    /// same buffer, if any (an END without START is passed on as it is).
    fn sync_range(
        &self,
        dmabuf: DmaBufFile,
        start: bool,
        dir: Direction,
        offset: u64,
        len: u64,
    ) -> Result {
        let mut ranges = self.ranges.lock();
        if start {
            ranges.reserve(1, GFP_KERNEL)?;
            dmabuf.sync_range(true, dir, offset, len)?;
            let range = OpenRange {
                dmabuf,
                offset,
                len,
                dir,
            };
            // Cannot fail: room was made above.
            ranges.push_within_capacity(range).map_err(|_| ENOMEM)?;
            return Ok(());
        }
        let begun = ranges
            .iter()
            .rposition(|r| r.dmabuf.is(&dmabuf) && r.offset == offset && r.len == len);
        if let Some(i) = begun {
            drop(ranges.remove(i));
        }
        dmabuf.sync_range(false, dir, offset, len)
    }

    /// Ends every range bracket still open, latest first, each in its
    /// begin's direction.
    fn end_all(&self) {
        let mut ranges = core::mem::replace(&mut *self.ranges.lock(), KVec::new());
        while let Some(range) = ranges.pop() {
            // Ending a range that began cannot fail.
            let _ = range
                .dmabuf
                .sync_range(false, range.dir, range.offset, range.len);
        }
    }
}

/// Registers the control device; it goes with the returned registration.
pub(crate) fn register() -> impl PinInit<MiscDeviceRegistration<Control>, Error> {
    MiscDeviceRegistration::register(MiscDeviceOptions {
        name: c"rust_dmabuf_heap",
    })
}

/// `struct rdh_sync_range`, as user space passes it.
#[repr(transparent)]
struct SyncRange(sys::rdh_sync_range);

// SAFETY: Only integer fields, with no padding (s32, u32, u64, u64): every
// bit pattern is a valid value.
unsafe impl FromBytes for SyncRange {}

impl SyncRange {
    /// Whether the access begins, and its direction (as `DMA_BUF_IOCTL_SYNC`
    /// takes its flags); `EINVAL` for unknown flags or neither READ nor
    /// WRITE.
    fn what(&self) -> Result<(bool, Direction)> {
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
        Ok((flags & sys::RDH_SYNC_END == 0, dir.into()))
    }
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = Pin<KBox<OpenFile>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Self::Ptr> {
        KBox::try_pin_init(
            try_pin_init!(OpenFile {
                ranges <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    fn release(device: Self::Ptr, _file: &File) {
        device.end_all();
    }

    fn ioctl(device: Pin<&OpenFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if cmd != sys::RDH_SYNC_RANGE_CMD {
            return Err(ENOTTY);
        }
        let request: SyncRange =
            UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<SyncRange>())
                .reader()
                .read()?;
        let (start, dir) = request.what()?;
        let dmabuf = DmaBufFile::get(request.0.fd)?;
        device.sync_range(dmabuf, start, dir, request.0.offset, request.0.len)?;
        Ok(0)
    }

    // No `compat_ioctl`: the layout is the same for 32-bit user space, so
    // the miscdevice layer's default, `compat_ptr_ioctl`, converts the
    // pointer and calls `ioctl`.
}
