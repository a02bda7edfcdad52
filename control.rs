// SPDX-License-Identifier: GPL-2.0

//! The heap's control device, `/dev/rust_dmabuf_heap`: what user space can
//! ask of the heap's buffers beyond the dma-heap and dma-buf ioctls, which
//! belong to their cores. Today one ioctl, `RDH_IOCTL_SYNC_RANGE`
//! (`include/uapi/linux/rust_dmabuf_heap.h`): `DMA_BUF_IOCTL_SYNC` for a
//! range of a buffer.

use crate::{cache_ops::Direction, dmabuf::DmaBufFile, sys};
use kernel::{
    dma::DataDirection,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    transmute::FromBytes,
    uaccess::{UserPtr, UserSlice},
};

/// The control device: opening it holds nothing.
pub(crate) struct Control;

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
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if cmd != sys::RDH_SYNC_RANGE_CMD {
            return Err(ENOTTY);
        }
        let request: SyncRange =
            UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<SyncRange>())
                .reader()
                .read()?;
        let (start, dir) = request.what()?;
        DmaBufFile::get(request.0.fd)?.sync_range(start, dir, request.0.offset, request.0.len)?;
        Ok(0)
    }

    /// The layout is the same for 32-bit user space.
    #[cfg(CONFIG_COMPAT)]
    fn compat_ioctl(device: (), file: &File, cmd: u32, arg: usize) -> Result<isize> {
        Self::ioctl(device, file, cmd, arg)
    }
}
