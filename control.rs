// SPDX-License-Identifier: GPL-2.0

//! The heap's control device, `/dev/rust_dmabuf_heap`: what user space can
//! ask of the heap's buffers beyond the dma-heap and dma-buf ioctls, which
//! belong to their cores. Today one ioctl, `RDH_IOCTL_SYNC_RANGE`
//! (`include/uapi/linux/rust_dmabuf_heap.h`): `DMA_BUF_IOCTL_SYNC` for a
//! range of a buffer, whose brackets belong to the open file.

use crate::{
    c_api::{self, SyncRange, SYNC_RANGE_CMD},
    dma_buf::DmaBufFile,
};
use kernel::{
    alloc::flags::GFP_KERNEL,
    dma::DataDirection,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::Mutex,
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
    dir: DataDirection,
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
        dir: DataDirection,
        offset: u64,
        len: u64,
    ) -> Result {
        let mut ranges = self.ranges.lock();
        if start {
            ranges.reserve(1, GFP_KERNEL)?;
            c_api::sync_range(&dmabuf, true, dir, offset, len)?;
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
        c_api::sync_range(&dmabuf, false, dir, offset, len)
    }

    /// Ends every range bracket still open, latest first, each in its
    /// begin's direction.
    fn end_all(&self) {
        let mut ranges = core::mem::take(&mut *self.ranges.lock());
        while let Some(range) = ranges.pop() {
            // Ending a range that began cannot fail.
            let _ = c_api::sync_range(&range.dmabuf, false, range.dir, range.offset, range.len);
        }
    }
}

/// Registers the control device; it goes with the returned registration.
pub(crate) fn register() -> impl PinInit<MiscDeviceRegistration<Control>, Error> {
    MiscDeviceRegistration::register(MiscDeviceOptions {
        name: c"rust_dmabuf_heap",
    })
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
        if cmd != SYNC_RANGE_CMD {
            return Err(ENOTTY);
        }
        let request: SyncRange =
            UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<SyncRange>())
                .reader()
                .read()?;
        let (start, dir) = request.what()?;
        let (offset, len) = request.range();
        let dmabuf = DmaBufFile::get(request.fd())?;
        device.sync_range(dmabuf, start, dir, offset, len)?;
        Ok(0)
    }

    // No `compat_ioctl`: the layout is the same for 32-bit user space, so
    // the miscdevice layer's default, `compat_ptr_ioctl`, converts the
    // pointer and calls `ioctl`.
}
