// SPDX-License-Identifier: GPL-2.0

//! Importer test driver: fake DMA devices that user space can attach to a
//! dma-buf and map, so that the guest can play camera → GPU → display
//! pipelines against the heap.
//!
//! `/dev/rdh_importer` (misc device); each open file is a session whose
//! devices and attachments are torn down when it is closed. Arguments are
//! passed by value in the ioctl argument:
//!
//! | ioctl | argument | returns |
//! |---|---|---|
//! | `RDI_CREATE_DEVICE` | 1 for a coherent device, 0 for non-coherent | device index |
//! | `RDI_ATTACH` | `device << 32 \| dma-buf fd` | attachment index |
//! | `RDI_MAP` | `attachment << 8 \| direction` (0 bidirectional, 1 to device, 2 from device) | 0 |
//! | `RDI_UNMAP` | attachment | 0 |
//! | `RDI_DETACH` | attachment (unmaps first if mapped) | 0 |
//! | `RDI_FENCE` | `attachment << 16 \| flags << 8 \| direction`; flags: 1 declare through `rdh_dma_buf_access_until`, 2 add to the reservation object (WRITE usage for a writing direction, READ otherwise) | fence index |
//! | `RDI_SIGNAL` | `fence << 32 \| delay in ms` (0: now, else from a workqueue) | 0 |
//!
//! | `RDI_VMAP` | dma-buf fd | kernel mapping index (`dma_buf_vmap`) |
//! | `RDI_VUNMAP` | kernel mapping | 0 |
//! | `RDI_FILL` | `kernel mapping << 32 \| seed` | 0; writes [`pattern_word`]s inside `dma_buf_begin/end_cpu_access` |
//! | `RDI_VERIFY` | `kernel mapping << 32 \| seed` | 0 if every word matches, else 1 + the byte offset of the first that does not |
//!
//! | `RDI_EDU_ATTACH` | dma-buf fd | attachment index of QEMU's `edu` device (`ENODEV` without one) |
//! | `RDI_EDU_WRITE` | `attachment << 32 \| seed` | pages the engine wrote (see `edu.rs`); the edu attachment must be mapped |
//! | `RDI_EDU_READ` | `attachment << 32 \| seed` | `pages read \| pages wrong << 32` |
//! | `RDI_EDU_INFO` | — | bit 0: the edu device is DMA-coherent, bit 1: behind an IOMMU |
//! | `RDI_SEGMENTS` | `attachment << 8 \| what` (mapped) | what = 0: CPU segments of its table (an IOMMU maps each with the biggest blocks their alignment allows), 1: DMA segments, 2: the smallest CPU segment in KiB |
//!
//! | `RDI_USER_WRITECOMBINE` | an address of the caller | 1 if its page-table entry is write-combined, else 0; `EFAULT` outside a vma, `EINVAL` outside a mapped pfn mapping |
//!
//! | `RDI_COUNTERS_RESET` | — | 0 |
//! | `RDI_CLEANED_KIB`, `RDI_INVALIDATED_KIB` | — | KiB cleaned / invalidated by the arm64 arch code since the reset, for every heap and device (kprobes; `ENODEV` without `CONFIG_KPROBES`) |
//!
//! Every fence signals within 10 s even if never told to (like vgem's), and
//! when its session is closed: no fence waits for user space forever.
//!
//! Fake devices are platform devices without a driver or IOMMU: the DMA API
//! maps them directly and, unless coherent, performs real cache
//! maintenance; they never access the memory. The `edu` device (PCI, bound
//! by this module's PCI driver) really does (`edu.rs`).

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};
use kernel::{
    dma::DataDirection,
    error::{from_err_ptr, to_result},
    fs::File,
    ioctl::_IO,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::Mutex,
};

mod edu;
/// The heap's bindgen output, shared.
#[path = "../../glue/bindings.rs"]
mod sys;

/// This driver's C shim (`rdi_shim.c`).
// `struct device` holds a field-less `lockdep_map` without lockdep; only
// pointers cross, as in the bindgen output.
#[allow(improper_ctypes)]
mod shim {
    use kernel::bindings::device;

    use super::sys::{dma_buf, dma_buf_attachment, dma_data_direction, dma_fence};
    use kernel::ffi::{c_int, c_uint};

    extern "C" {
        pub(crate) fn rdi_device_create(id: c_int, coherent: bool) -> *mut device;
        pub(crate) fn rdi_device_destroy(dev: *mut device);
        pub(crate) fn rdi_fence_create() -> *mut dma_fence;
        pub(crate) fn rdi_fence_signal(fence: *mut dma_fence, delay_ms: c_uint);
        pub(crate) fn rdi_fence_put(fence: *mut dma_fence);
        pub(crate) fn rdi_resv_add_fence(
            dmabuf: *mut dma_buf,
            fence: *mut dma_fence,
            write: bool,
        ) -> c_int;
        pub(crate) fn rdi_vmap(dmabuf: *mut dma_buf, len: *mut usize) -> *mut u8;
        pub(crate) fn rdi_vunmap(dmabuf: *mut dma_buf, vaddr: *mut u8);
        pub(crate) fn rdi_edu_register() -> c_int;
        pub(crate) fn rdi_edu_unregister();
        pub(crate) fn rdi_counters_start() -> c_int;
        pub(crate) fn rdi_counters_stop();
        pub(crate) fn rdi_counters_reset();
        pub(crate) fn rdi_clean_bytes() -> u64;
        pub(crate) fn rdi_invalidate_bytes() -> u64;
        pub(crate) fn rdi_user_mapping_is_writecombine(addr: usize) -> c_int;
        /// Exported by rust_dmabuf_heap (`include/linux/rust_dmabuf_heap.h`).
        pub(crate) fn rdh_dma_buf_access_until(
            attach: *mut dma_buf_attachment,
            dir: dma_data_direction,
            fence: *mut dma_fence,
        ) -> c_int;
    }
}

const RDI_CREATE_DEVICE: u32 = _IO(b'R' as u32, 1);
const RDI_ATTACH: u32 = _IO(b'R' as u32, 2);
const RDI_MAP: u32 = _IO(b'R' as u32, 3);
const RDI_UNMAP: u32 = _IO(b'R' as u32, 4);
const RDI_DETACH: u32 = _IO(b'R' as u32, 5);
const RDI_FENCE: u32 = _IO(b'R' as u32, 6);
const RDI_SIGNAL: u32 = _IO(b'R' as u32, 7);
const RDI_COUNTERS_RESET: u32 = _IO(b'R' as u32, 8);
const RDI_CLEANED_KIB: u32 = _IO(b'R' as u32, 9);
const RDI_INVALIDATED_KIB: u32 = _IO(b'R' as u32, 10);
const RDI_VMAP: u32 = _IO(b'R' as u32, 11);
const RDI_VUNMAP: u32 = _IO(b'R' as u32, 12);
const RDI_FILL: u32 = _IO(b'R' as u32, 13);
const RDI_VERIFY: u32 = _IO(b'R' as u32, 14);
const RDI_EDU_ATTACH: u32 = _IO(b'R' as u32, 15);
const RDI_EDU_WRITE: u32 = _IO(b'R' as u32, 16);
const RDI_EDU_READ: u32 = _IO(b'R' as u32, 17);
const RDI_EDU_INFO: u32 = _IO(b'R' as u32, 18);
const RDI_USER_WRITECOMBINE: u32 = _IO(b'R' as u32, 19);
const RDI_SEGMENTS: u32 = _IO(b'R' as u32, 20);

/// `RDI_FENCE` flag: declare the fence through the heap's explicit API.
const FENCE_EXPLICIT: usize = 1;
/// `RDI_FENCE` flag: publish the fence in the reservation object.
const FENCE_RESV: usize = 2;

module! {
    type: RdhImporter,
    name: "rdh_importer",
    authors: ["rust-dmabuf-heap developers"],
    description: "Test importer: fake DMA devices for rust_dmabuf_heap's tests",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

#[pin_data]
struct RdhImporter {
    #[pin]
    _misc: MiscDeviceRegistration<Session>,
    _counters: Counters,
    _edu: EduDriver,
}

/// The edu PCI driver, registered while the module is loaded.
struct EduDriver;

impl EduDriver {
    fn register() -> Result<Self> {
        // SAFETY: Module init, process context.
        to_result(unsafe { shim::rdi_edu_register() })?;
        Ok(Self)
    }
}

impl Drop for EduDriver {
    fn drop(&mut self) {
        // SAFETY: Registered by `register`; sessions are closed by now.
        unsafe { shim::rdi_edu_unregister() };
    }
}

impl kernel::InPlaceModule for RdhImporter {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rdh_importer",
            }),
            _counters: Counters::start(),
            _edu: EduDriver::register()?,
        })
    }
}

/// Whether the kprobe counters are registered.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The cache maintenance counters (kprobes), while the module is loaded.
struct Counters;

impl Counters {
    fn start() -> Self {
        // SAFETY: Module init, process context.
        let running = unsafe { shim::rdi_counters_start() } == 0;
        COUNTING.store(running, Ordering::Relaxed);
        Self
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        COUNTING.store(false, Ordering::Relaxed);
        // SAFETY: Unregisters what `start` registered, if anything.
        unsafe { shim::rdi_counters_stop() };
    }
}

/// A counter's value in KiB (whole pages, so exact; small enough for the
/// ioctl return value).
fn read_counter(counter: unsafe extern "C" fn() -> u64) -> Result<isize> {
    if !COUNTING.load(Ordering::Relaxed) {
        return Err(ENODEV);
    }
    // SAFETY: Reads an atomic counter.
    Ok((unsafe { counter() } / 1024) as isize)
}

/// Platform device ids, unique across sessions.
static NEXT_DEVICE_ID: AtomicI32 = AtomicI32::new(0);

/// A fake DMA device.
///
/// # Invariants
///
/// `dev` was returned by `rdi_device_create` and is destroyed on drop.
struct FakeDevice {
    dev: NonNull<sys::device>,
}

impl FakeDevice {
    fn new(coherent: bool) -> Result<Self> {
        let id = NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: Process context; `id` is unique.
        let dev = from_err_ptr(unsafe { shim::rdi_device_create(id, coherent) })?;
        // INVARIANT: Just created.
        Ok(Self {
            dev: NonNull::new(dev).ok_or(ENOMEM)?,
        })
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariant; no attachment uses it any more
        // (sessions drop attachments first).
        unsafe { shim::rdi_device_destroy(self.dev.as_ptr()) };
    }
}

/// One attachment of a fake device to a dma-buf.
///
/// # Invariants
///
/// We hold a reference on `dmabuf` (from `dma_buf_get`); `attach` is an
/// attachment of it, and `mapping` is its current mapping, if any. Drop
/// undoes all three.
struct Importer {
    dmabuf: NonNull<sys::dma_buf>,
    attach: NonNull<sys::dma_buf_attachment>,
    mapping: Option<(*mut sys::sg_table, sys::dma_data_direction)>,
    /// The attachment is the edu device's (its engine may use the mapping).
    edu: bool,
}

impl Importer {
    /// Attaches `dev`, which must outlive the attachment: a fake device of
    /// the session, or the edu device (bound while the module is loaded).
    fn new(fd: i32, dev: *mut sys::device, edu: bool) -> Result<Self> {
        // SAFETY: `dma_buf_get` validates the fd and takes a reference.
        let dmabuf = from_err_ptr(unsafe { sys::dma_buf_get(fd) })?;
        // SAFETY: `dmabuf` is live (we hold a reference); the device lives
        // longer than the attachment.
        match from_err_ptr(unsafe { sys::dma_buf_attach(dmabuf, dev) }) {
            // INVARIANT: Reference and attachment taken above.
            Ok(attach) => Ok(Self {
                dmabuf: NonNull::new(dmabuf).ok_or(EINVAL)?,
                attach: NonNull::new(attach).ok_or(EINVAL)?,
                mapping: None,
                edu,
            }),
            Err(e) => {
                // SAFETY: Drop the reference taken above.
                unsafe { sys::dma_buf_put(dmabuf) };
                Err(e)
            }
        }
    }

    fn map(&mut self, dir: sys::dma_data_direction) -> Result {
        if self.mapping.is_some() {
            return Err(EBUSY);
        }
        // SAFETY: `attach` is live and unmapped.
        let table = from_err_ptr(unsafe {
            sys::dma_buf_map_attachment_unlocked(self.attach.as_ptr(), dir)
        })?;
        self.mapping = Some((table, dir));
        Ok(())
    }

    fn unmap(&mut self) {
        if let Some((table, dir)) = self.mapping.take() {
            // SAFETY: `table` is the live mapping of `attach` made with `dir`.
            unsafe { sys::dma_buf_unmap_attachment_unlocked(self.attach.as_ptr(), table, dir) };
        }
    }
}

impl Drop for Importer {
    fn drop(&mut self) {
        self.unmap();
        // SAFETY: By the type invariant: detach, then drop our reference.
        unsafe {
            sys::dma_buf_detach(self.dmabuf.as_ptr(), self.attach.as_ptr());
            sys::dma_buf_put(self.dmabuf.as_ptr());
        }
    }
}

// SAFETY: The raw pointers refer to kernel objects usable from any thread;
// the session's mutex serialises their use.
unsafe impl Send for Importer {}
// SAFETY: As above.
unsafe impl Send for FakeDevice {}

/// The test pattern: the little-endian 64-bit word at word index `index` of
/// a buffer filled with `seed` (splitmix64, so that a word copied from
/// another offset or another buffer does not match). The guest computes the
/// same words.
fn pattern_word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A kernel mapping of a whole dma-buf, used the way a driver's CPU code
/// would: inside `dma_buf_begin/end_cpu_access`.
///
/// # Invariants
///
/// We hold a reference on `dmabuf` (from `dma_buf_get`); `vaddr` is its
/// `dma_buf_vmap` mapping of `len` bytes (a whole number of pages), undone
/// on drop.
struct KernelMapping {
    dmabuf: NonNull<sys::dma_buf>,
    vaddr: NonNull<u64>,
    len: usize,
}

impl KernelMapping {
    fn new(fd: i32) -> Result<Self> {
        // SAFETY: `dma_buf_get` validates the fd and takes a reference.
        let dmabuf = from_err_ptr(unsafe { sys::dma_buf_get(fd) })?;
        let mut len = 0;
        // SAFETY: `dmabuf` is live; `len` is a valid out-parameter.
        match from_err_ptr(unsafe { shim::rdi_vmap(dmabuf, &mut len) }) {
            // INVARIANT: Reference and mapping taken above; vmap maps pages.
            Ok(vaddr) => Ok(Self {
                dmabuf: NonNull::new(dmabuf).ok_or(EINVAL)?,
                vaddr: NonNull::new(vaddr.cast()).ok_or(EINVAL)?,
                len,
            }),
            Err(e) => {
                // SAFETY: Drop the reference taken above.
                unsafe { sys::dma_buf_put(dmabuf) };
                Err(e)
            }
        }
    }

    /// Runs `f` over every word inside a CPU access bracket in `dir`.
    fn access(&self, dir: sys::dma_data_direction, mut f: impl FnMut(u64, *mut u64)) -> Result {
        // SAFETY: `dmabuf` is live by the type invariant.
        to_result(unsafe { sys::dma_buf_begin_cpu_access(self.dmabuf.as_ptr(), dir) })?;
        for index in 0..self.len / 8 {
            // SAFETY: `index * 8 < len`: inside the mapping.
            f(index as u64, unsafe { self.vaddr.as_ptr().add(index) });
        }
        // SAFETY: As above; ends the bracket begun above.
        to_result(unsafe { sys::dma_buf_end_cpu_access(self.dmabuf.as_ptr(), dir) })
    }

    fn fill(&self, seed: u64) -> Result {
        self.access(DataDirection::ToDevice.into(), |index, word| {
            // SAFETY: `word` is in the mapping and aligned. User space may
            // write the same memory concurrently, hence volatile.
            unsafe { word.write_volatile(pattern_word(seed, index).to_le()) }
        })
    }

    /// 0 if intact, else 1 + the byte offset of the first wrong word.
    fn verify(&self, seed: u64) -> Result<isize> {
        let mut first_wrong = None;
        self.access(DataDirection::FromDevice.into(), |index, word| {
            // SAFETY: As in `fill`.
            let value = u64::from_le(unsafe { word.read_volatile() });
            if first_wrong.is_none() && value != pattern_word(seed, index) {
                first_wrong = Some(index as isize * 8);
            }
        })?;
        Ok(first_wrong.map_or(0, |offset| offset + 1))
    }
}

impl Drop for KernelMapping {
    fn drop(&mut self) {
        // SAFETY: By the type invariant: unmap, then drop our reference.
        unsafe {
            shim::rdi_vunmap(self.dmabuf.as_ptr(), self.vaddr.as_ptr().cast());
            sys::dma_buf_put(self.dmabuf.as_ptr());
        }
    }
}

// SAFETY: As for `Importer`.
unsafe impl Send for KernelMapping {}

/// A test fence; we hold one reference.
///
/// # Invariants
///
/// `0` is a fence made by `rdi_fence_create`, referenced by us.
struct TestFence(NonNull<sys::dma_fence>);

impl Drop for TestFence {
    fn drop(&mut self) {
        // SAFETY: By the type invariant. Signal (a no-op if done) so that
        // nothing waits for a closed session, then drop our reference.
        unsafe {
            shim::rdi_fence_signal(self.0.as_ptr(), 0);
            shim::rdi_fence_put(self.0.as_ptr());
        }
    }
}

// SAFETY: Fences are refcounted kernel objects usable from any thread.
unsafe impl Send for TestFence {}

/// What one open file created. Field order is drop order: fences signal
/// first, then attachments go before the devices they use.
struct SessionState {
    fences: KVec<TestFence>,
    kernel_mappings: KVec<Option<KernelMapping>>,
    importers: KVec<Option<Importer>>,
    devices: KVec<FakeDevice>,
}

#[pin_data]
struct Session {
    #[pin]
    state: Mutex<SessionState>,
}

/// The driver's direction numbers.
fn direction(value: usize) -> Result<sys::dma_data_direction> {
    match value {
        0 => Ok(DataDirection::Bidirectional.into()),
        1 => Ok(DataDirection::ToDevice.into()),
        2 => Ok(DataDirection::FromDevice.into()),
        _ => Err(EINVAL),
    }
}

impl Session {
    fn importer<'a>(state: &'a mut SessionState, which: usize) -> Result<&'a mut Importer> {
        state
            .importers
            .get_mut(which)
            .and_then(Option::as_mut)
            .ok_or(EINVAL)
    }

    fn command(&self, cmd: u32, arg: usize) -> Result<isize> {
        let mut state = self.state.lock();
        match cmd {
            RDI_CREATE_DEVICE => {
                let coherent = match arg {
                    0 => false,
                    1 => true,
                    _ => return Err(EINVAL),
                };
                state.devices.push(FakeDevice::new(coherent)?, GFP_KERNEL)?;
                Ok(state.devices.len() as isize - 1)
            }
            RDI_ATTACH => {
                let (device, fd) = (arg >> 32, (arg & 0xffff_ffff) as i32);
                let device = state.devices.get(device).ok_or(EINVAL)?;
                let importer = Importer::new(fd, device.dev.as_ptr(), false)?;
                state.importers.push(Some(importer), GFP_KERNEL)?;
                Ok(state.importers.len() as isize - 1)
            }
            RDI_EDU_ATTACH => {
                let fd = i32::try_from(arg).map_err(|_| EBADF)?;
                let importer = Importer::new(fd, edu::device()?, true)?;
                state.importers.push(Some(importer), GFP_KERNEL)?;
                Ok(state.importers.len() as isize - 1)
            }
            RDI_EDU_INFO => edu::info(),
            RDI_SEGMENTS => {
                let importer = Self::importer(&mut state, arg >> 8)?;
                let (table, _) = importer.mapping.ok_or(EINVAL)?;
                // SAFETY: The attachment's live mapping.
                let (cpu, dma, smallest) = unsafe { edu::segments(table) };
                match arg & 0xff {
                    0 => Ok(cpu as isize),
                    1 => Ok(dma as isize),
                    2 => Ok((smallest / 1024) as isize),
                    _ => Err(EINVAL),
                }
            }
            RDI_EDU_WRITE | RDI_EDU_READ => {
                let (which, seed) = (arg >> 32, (arg & 0xffff_ffff) as u64);
                let importer = Self::importer(&mut state, which)?;
                let (table, dir) = importer.mapping.filter(|_| importer.edu).ok_or(EINVAL)?;
                let write = cmd == RDI_EDU_WRITE;
                let forbidden: sys::dma_data_direction = if write {
                    DataDirection::ToDevice.into()
                } else {
                    DataDirection::FromDevice.into()
                };
                if dir == forbidden {
                    return Err(EPERM);
                }
                if write {
                    // SAFETY: `table` is the edu device's live mapping, in a
                    // direction that lets it write.
                    unsafe { edu::write(table, seed) }
                } else {
                    // SAFETY: As above, in a direction that lets it read.
                    unsafe { edu::read(table, seed) }
                }
            }
            RDI_MAP => {
                let dir = direction(arg & 0xff)?;
                Self::importer(&mut state, arg >> 8)?.map(dir)?;
                Ok(0)
            }
            RDI_UNMAP => {
                Self::importer(&mut state, arg)?.unmap();
                Ok(0)
            }
            RDI_FENCE => {
                let (which, flags, dir) = (arg >> 16, (arg >> 8) & 0xff, direction(arg & 0xff)?);
                let importer = Self::importer(&mut state, which)?;
                let (dmabuf, attach) = (importer.dmabuf.as_ptr(), importer.attach.as_ptr());
                if flags == 0 || flags & !(FENCE_EXPLICIT | FENCE_RESV) != 0 {
                    return Err(EINVAL);
                }
                state.fences.reserve(1, GFP_KERNEL)?;
                // SAFETY: Process context.
                let fence = from_err_ptr(unsafe { shim::rdi_fence_create() })?;
                // INVARIANT: Made just now; its reference is ours.
                let fence = TestFence(NonNull::new(fence).ok_or(ENOMEM)?);
                if flags & FENCE_EXPLICIT != 0 {
                    // SAFETY: `attach` is live; the fence is referenced.
                    to_result(unsafe {
                        shim::rdh_dma_buf_access_until(attach, dir, fence.0.as_ptr())
                    })?;
                }
                if flags & FENCE_RESV != 0 {
                    let write = dir != DataDirection::ToDevice.into();
                    // SAFETY: `dmabuf` is live (the importer holds a
                    // reference); the fence is referenced.
                    to_result(unsafe {
                        shim::rdi_resv_add_fence(dmabuf, fence.0.as_ptr(), write)
                    })?;
                }
                state.fences.push(fence, GFP_KERNEL)?;
                Ok(state.fences.len() as isize - 1)
            }
            RDI_SIGNAL => {
                let (which, delay_ms) = (arg >> 32, (arg & 0xffff_ffff) as u32);
                let fence = state.fences.get(which).ok_or(EINVAL)?;
                // SAFETY: The fence is referenced by the session.
                unsafe { shim::rdi_fence_signal(fence.0.as_ptr(), delay_ms) };
                Ok(0)
            }
            RDI_VMAP => {
                let fd = i32::try_from(arg).map_err(|_| EBADF)?;
                state
                    .kernel_mappings
                    .push(Some(KernelMapping::new(fd)?), GFP_KERNEL)?;
                Ok(state.kernel_mappings.len() as isize - 1)
            }
            RDI_VUNMAP => {
                let slot = state.kernel_mappings.get_mut(arg).ok_or(EINVAL)?;
                drop(slot.take().ok_or(EINVAL)?);
                Ok(0)
            }
            RDI_FILL | RDI_VERIFY => {
                let (which, seed) = (arg >> 32, (arg & 0xffff_ffff) as u64);
                let mapping = state
                    .kernel_mappings
                    .get(which)
                    .and_then(Option::as_ref)
                    .ok_or(EINVAL)?;
                if cmd == RDI_FILL {
                    mapping.fill(seed).map(|()| 0)
                } else {
                    mapping.verify(seed)
                }
            }
            RDI_DETACH => {
                let slot = state.importers.get_mut(arg).ok_or(EINVAL)?;
                drop(slot.take().ok_or(EINVAL)?);
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

#[vtable]
impl MiscDevice for Session {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(Session {
                state <- new_mutex!(SessionState {
                    fences: KVec::new(),
                    kernel_mappings: KVec::new(),
                    importers: KVec::new(),
                    devices: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&Session>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            RDI_COUNTERS_RESET => {
                // SAFETY: Resets atomic counters.
                unsafe { shim::rdi_counters_reset() };
                Ok(0)
            }
            RDI_CLEANED_KIB => read_counter(shim::rdi_clean_bytes),
            RDI_INVALIDATED_KIB => read_counter(shim::rdi_invalidate_bytes),
            // Outside the session's lock: it takes the caller's mmap lock.
            RDI_USER_WRITECOMBINE => {
                // SAFETY: Looks the caller's own address up under its mmap
                // lock; any address is fine.
                let ret = unsafe { shim::rdi_user_mapping_is_writecombine(arg) };
                kernel::error::to_result(ret).map(|()| ret as isize)
            }
            _ => me.command(cmd, arg),
        }
    }
}
