// SPDX-License-Identifier: GPL-2.0

//! Shrinkers: how memory reclaim asks a cache to give memory back.
//!
//! C header: [`include/linux/shrinker.h`](srctree/include/linux/shrinker.h)
//!
//! A cache implements [`Shrink`] and keeps a [`Registration`] for as long
//! as reclaim may call it; dropping the registration waits out the
//! callbacks in flight (TODO(shrinker) in `rust/todo.rst`: Rust Binder
//! registers its shrinker with the raw bindings).

use crate::bindings;
use core::{ffi::c_void, ptr::NonNull};
use kernel::{prelude::*, sync::Arc};

/// What reclaim calls.
pub trait Shrink: Send + Sync + 'static {
    /// How many objects (pages, say) the cache could free now.
    fn count(&self) -> usize;

    /// Frees about `nr_to_scan` objects; returns how many it freed.
    fn scan(&self, nr_to_scan: usize) -> usize;
}

/// A registered shrinker of a `T`, which it holds a reference on.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use kernel::{shrinker::{Registration, Shrink}, sync::Arc};
///
/// /// A cache of `objects` objects.
/// struct Cache {
///     objects: AtomicUsize,
/// }
///
/// impl Shrink for Cache {
///     fn count(&self) -> usize {
///         self.objects.load(Ordering::Relaxed)
///     }
///
///     fn scan(&self, nr_to_scan: usize) -> usize {
///         let before = self.objects.load(Ordering::Relaxed);
///         let freed = before.min(nr_to_scan);
///         self.objects.store(before - freed, Ordering::Relaxed);
///         freed
///     }
/// }
///
/// let cache = Arc::new(Cache { objects: AtomicUsize::new(8) }, GFP_KERNEL)?;
/// let registration = Registration::register(cache, c"doctest-cache")?;
/// assert_eq!(registration.data().count(), 8);
/// // Dropping the registration waits for callbacks in flight.
/// drop(registration);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `shrinker` was allocated by `shrinker_alloc` and registered with
/// `private_data` pointing to `data`'s object; it is freed (and so
/// unregistered) on drop, before `data` goes.
pub struct Registration<T: Shrink> {
    shrinker: NonNull<bindings::shrinker>,
    data: Arc<T>,
}

// SAFETY: A shrinker may be freed from any thread; `T` is `Send + Sync`.
unsafe impl<T: Shrink> Send for Registration<T> {}
// SAFETY: Nothing is done through a shared reference.
unsafe impl<T: Shrink> Sync for Registration<T> {}

impl<T: Shrink> Registration<T> {
    /// Registers a shrinker named `name` (in debugfs) for `data`.
    pub fn register(data: Arc<T>, name: &CStr) -> Result<Self> {
        // SAFETY: `"%s"` takes one NUL-terminated string: `name`.
        let shrinker =
            unsafe { bindings::shrinker_alloc(0, c"%s".as_char_ptr(), name.as_char_ptr()) };
        let shrinker = NonNull::new(shrinker).ok_or(ENOMEM)?;
        let raw = shrinker.as_ptr();
        // SAFETY: Allocated above and not registered yet: ours to fill in.
        // The callbacks find `data` through `private_data`, which the
        // registration keeps alive until the shrinker is freed.
        unsafe {
            (*raw).count_objects = Some(count::<T>);
            (*raw).scan_objects = Some(scan::<T>);
            (*raw).seeks = bindings::DEFAULT_SEEKS as kernel::ffi::c_int;
            (*raw).private_data = Arc::as_ptr(&data).cast_mut().cast::<c_void>();
            bindings::shrinker_register(raw);
        }
        // INVARIANT: Allocated and registered for `data` above.
        Ok(Self { shrinker, data })
    }

    /// The cache.
    pub fn data(&self) -> &Arc<T> {
        &self.data
    }
}

impl<T: Shrink> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: Ours (type invariant); returns once no callback runs.
        unsafe { bindings::shrinker_free(self.shrinker.as_ptr()) };
    }
}

/// The cache of a shrinker registered by [`Registration::register`].
///
/// # Safety
///
/// `shrinker` is such a shrinker, not yet freed.
unsafe fn cache<'a, T: Shrink>(shrinker: *mut bindings::shrinker) -> &'a T {
    // SAFETY: `private_data` points to the cache, which the registration
    // keeps alive until the shrinker is freed (which waits for callbacks).
    unsafe { &*(*shrinker).private_data.cast::<T>() }
}

/// # Safety
///
/// Called by reclaim for a shrinker of [`Registration::register`].
unsafe extern "C" fn count<T: Shrink>(
    shrinker: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: See the function's safety section.
    match unsafe { cache::<T>(shrinker) }.count() {
        0 => bindings::SHRINK_EMPTY as usize,
        n => n,
    }
}

/// # Safety
///
/// Called by reclaim for a shrinker of [`Registration::register`], with a
/// valid control.
unsafe extern "C" fn scan<T: Shrink>(
    shrinker: *mut bindings::shrinker,
    sc: *mut bindings::shrink_control,
) -> usize {
    // SAFETY: See the function's safety section.
    let (cache, nr_to_scan) = unsafe { (cache::<T>(shrinker), (*sc).nr_to_scan) };
    match cache.scan(nr_to_scan) {
        0 => bindings::SHRINK_STOP as usize,
        n => n,
    }
}
