// SPDX-License-Identifier: GPL-2.0

//! The driver's own C (`glue/*.c`) as safe functions: the module
//! parameters (Rust `module!` parameters are integers only, and ours are
//! strings or take names), the maintenance device, the module's pinning and
//! identity, memory counters, and the log line for unbracketed access.
//! With `c_api.rs`, the only driver code that calls C directly.

use crate::bindings as sys;
use core::ptr::NonNull;
use kernel::{
    device::Device,
    error::from_err_ptr,
    prelude::*,
    sync::{aref::ARef, Arc},
};

/// The module's heaps, by the memory they hand out and how the CPU maps it.
#[derive(Clone, Copy)]
pub(crate) enum HeapKind {
    /// `heap_name`: any memory, cached CPU mappings.
    Cached,
    /// `uncached_heap_name`: any memory, write-combined CPU mappings.
    Uncached,
    /// `dma32_heap_name`: memory below 4 GiB, cached.
    Dma32,
    /// `uncached_dma32_heap_name`: memory below 4 GiB, write-combined.
    UncachedDma32,
}

/// The name under `/dev/dma_heap` of the heap of `kind`; `None` if
/// parameter `uncached_heap` or `dma32_heaps` turned it off. A sibling's
/// name defaults to `heap_name` with a suffix (`-uncached`, `-dma32`,
/// `-uncached-dma32`), filled in at the first call. Static storage,
/// read-only (0444), so it lives as long as the module.
pub(crate) fn heap_name(kind: HeapKind) -> Option<&'static CStr> {
    let kind = match kind {
        HeapKind::Cached => sys::rdh_heap_kind_RDH_HEAP_CACHED,
        HeapKind::Uncached => sys::rdh_heap_kind_RDH_HEAP_UNCACHED,
        HeapKind::Dma32 => sys::rdh_heap_kind_RDH_HEAP_DMA32,
        HeapKind::UncachedDma32 => sys::rdh_heap_kind_RDH_HEAP_UNCACHED_DMA32,
    };
    // SAFETY: Reads module parameters (read-only after load) and may fill
    // an unset name in, the same bytes at every call; module init, the
    // only caller, runs once.
    let name = unsafe { sys::rdh_heap_name(kind) };
    // SAFETY: NULL or a NUL-terminated module parameter string that never
    // changes after load and lives as long as the module.
    (!name.is_null()).then(|| unsafe { CStr::from_char_ptr(name) })
}

/// Whether a dma-heap named `name` is registered already: asked before
/// registering, because the dma-heap core's refusal of a taken name dumps
/// a stack. `dev` is a device without a parent (the control misc device),
/// whose sysfs directory lies beside the dma-heaps' (`glue/heap_names.c`).
pub(crate) fn dma_heap_name_taken(dev: &Device, name: &CStr) -> bool {
    // SAFETY: `dev` is a live device and `name` a NUL-terminated string,
    // both for the duration of the call.
    unsafe { sys::rdh_dma_heap_name_taken(crate::dma_mapping::raw(dev), name.as_char_ptr()) }
}

/// `sync_policy=always`: new buffers behave like the system heap's.
pub(crate) fn sync_policy_always() -> bool {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_sync_policy_always() }
}

/// `unbracketed_cpu=trap`: new buffers trap user access by faults.
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

/// `debugfs_buffers`: new buffers get a debugfs file.
pub(crate) fn debugfs_buffers() -> bool {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_debugfs_buffers_enabled() }
}

/// `pool_limit_mib` in bytes (-1: 1/2 of RAM).
pub(crate) fn pool_limit_bytes() -> usize {
    // SAFETY: Reads a module parameter; no preconditions.
    unsafe { sys::rdh_pool_limit_bytes() as usize }
}

/// `pool_window_ms`: how long a pool remembers its heap's allocations.
pub(crate) fn pool_window_ms() -> u64 {
    // SAFETY: Reads a module parameter; no preconditions.
    u64::from(unsafe { sys::rdh_pool_window_ms() })
}

#[cfg(MODULE)]
// As `module!` declares it: the kernel's own `struct module`.
#[allow(improper_ctypes)]
extern "C" {
    static __this_module: kernel::types::Opaque<sys::module>;
}

/// This module, the owner of the dma-bufs it exports.
#[cfg(MODULE)]
// SAFETY: `__this_module` is made by the kernel at load time and lives
// until the module is unloaded.
pub(crate) static THIS_MODULE: ThisModule = unsafe { ThisModule::from_ptr(__this_module.get()) };

/// Built in: no module.
#[cfg(not(MODULE))]
// SAFETY: A null module is what built-in code passes.
pub(crate) static THIS_MODULE: ThisModule = unsafe { ThisModule::from_ptr(core::ptr::null_mut()) };

/// Makes the module impossible to unload (a registered heap can never be
/// removed): takes a reference on it that is never put.
pub(crate) fn pin_module() {
    // SAFETY: Called from module init, when the module is live; a null
    // module (built in) is allowed.
    unsafe { sys::__module_get(THIS_MODULE.as_ptr()) };
}

/// The heap's own DMA device: a driverless platform device, non-coherent,
/// direct-mapped, with a 64-bit mask, unregistered on drop.
///
/// # Invariants
///
/// `dev` was returned by `rdh_maintenance_device_create`, and we hold its
/// registration.
pub(crate) struct MaintenanceDeviceRegistration {
    dev: ARef<Device>,
}

impl MaintenanceDeviceRegistration {
    /// Registers the device.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Process context.
        let raw = from_err_ptr(unsafe { sys::rdh_maintenance_device_create() })?;
        // SAFETY: Just registered: live until we unregister it.
        let dev: &Device = unsafe { Device::from_raw(raw) };
        let dev = ARef::from(dev);
        // INVARIANT: Created above.
        Ok(Self { dev })
    }

    /// The device.
    pub(crate) fn device(&self) -> &ARef<Device> {
        &self.dev
    }
}

impl Drop for MaintenanceDeviceRegistration {
    fn drop(&mut self) {
        // SAFETY: Ours to unregister (type invariant); our own reference in
        // `dev` keeps the `struct device` until it goes.
        unsafe { sys::rdh_maintenance_device_destroy(crate::dma_mapping::raw(&self.dev)) };
    }
}

/// Logs (rate limited) that the current process accessed dma-buf `inode`
/// of `size` bytes outside a `DMA_BUF_IOCTL_SYNC` bracket.
pub(crate) fn report_unbracketed(inode: u64, size: usize, write: bool) {
    // SAFETY: Process context (a fault handler); no other precondition.
    unsafe { sys::rdh_report_unbracketed(inode, size, write) };
}

/// A job for a [`Worker`]: what it runs, once per kick.
pub(crate) trait Job: Send + Sync + 'static {
    /// The worker that runs the job.
    fn worker(&self) -> &Worker;

    /// The job, in the worker's thread.
    fn run(&self);
}

/// A background thread (`glue/worker.c`): freezable, at the lowest priority,
/// woken one tick after a kick by a timer (so that a kick costs arming a
/// local timer, not waking another CPU). It can be kicked from its creation
/// on, and runs a [`Job`] once [`Running::start`]ed.
///
/// # Invariants
///
/// `raw` was returned by `rdh_worker_create` and is destroyed on drop.
pub(crate) struct Worker {
    raw: NonNull<sys::rdh_worker>,
}

// SAFETY: The C worker may be kicked and stopped from any thread.
unsafe impl Send for Worker {}
// SAFETY: Kicking is atomic.
unsafe impl Sync for Worker {}

impl Worker {
    /// A worker without a thread yet.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: No preconditions.
        let raw = NonNull::new(unsafe { sys::rdh_worker_create() }).ok_or(ENOMEM)?;
        // INVARIANT: Just created.
        Ok(Self { raw })
    }

    /// Has the job run soon (once, however often kicked meanwhile).
    pub(crate) fn kick(&self) {
        // SAFETY: `raw` is live (type invariant).
        unsafe { sys::rdh_worker_kick(self.raw.as_ptr()) };
    }

    /// Has the job run in about `ms` milliseconds, unless a kick runs it
    /// sooner.
    pub(crate) fn kick_after(&self, ms: u32) {
        // SAFETY: `raw` is live (type invariant).
        unsafe { sys::rdh_worker_kick_after(self.raw.as_ptr(), ms) };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: Live (type invariant); nothing uses it after this.
        unsafe { sys::rdh_worker_destroy(self.raw.as_ptr()) };
    }
}

/// The thread of `job`'s worker, running the job until dropped.
///
/// # Invariants
///
/// The thread of `job.worker()` runs with `job` as its data until `drop`
/// halts it; `job` keeps the worker (and itself) alive meanwhile.
pub(crate) struct Running<T: Job> {
    job: Arc<T>,
}

impl<T: Job> Running<T> {
    /// Starts the thread, named `rdh-pool/<name>`.
    pub(crate) fn start(job: Arc<T>, name: &CStr) -> Result<Self> {
        let data = Arc::as_ptr(&job).cast_mut().cast::<core::ffi::c_void>();
        // SAFETY: The worker is live (held by `job`); `data` is `job`,
        // which this value keeps until it halts the thread.
        kernel::error::to_result(unsafe {
            sys::rdh_worker_run(
                job.worker().raw.as_ptr(),
                Some(run_job::<T>),
                data,
                name.as_char_ptr(),
            )
        })?;
        // INVARIANT: Started above.
        Ok(Self { job })
    }
}

impl<T: Job> Drop for Running<T> {
    fn drop(&mut self) {
        // SAFETY: The worker is live; once this returns the job does not
        // run any more (kicks are harmless afterwards).
        unsafe { sys::rdh_worker_halt(self.job.worker().raw.as_ptr()) };
    }
}

/// The thread's call of the job.
///
/// # Safety
///
/// `data` is the job of a [`Running`] that has not halted the thread.
unsafe extern "C" fn run_job<T: Job>(data: *mut core::ffi::c_void) {
    // SAFETY: The `Running` keeps the job alive until it halts the thread.
    unsafe { &*data.cast::<T>() }.run();
}
