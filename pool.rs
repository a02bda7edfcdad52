// SPDX-License-Identifier: GPL-2.0

//! The page pool: the chunks of freed buffers, zeroed — and cleaned to the
//! point of coherency — by a background thread, for the next allocations.
//!
//! - Freeing a buffer puts its chunks on the *backlog* and returns at once
//!   (deferred free). The worker (a kernel thread at the lowest priority)
//!   zeroes each chunk, cleans it on the maintenance device and moves it to
//!   the list of its order (8, 4, 0). Allocation takes a chunk of the order
//!   it wants from that list, else from the page allocator, so a chunk on
//!   the backlog is never handed out: a pooled chunk is always zero.
//! - A buffer made only of pooled chunks starts with clean cache lines
//!   (`ownership::Lines::CLEAN`): its first map by a non-coherent device
//!   needs no clean. If the maintenance device would bounce, nothing is
//!   cleaned and pooled buffers start like fresh ones.
//! - Memory comes back: pooled and backlog pages count as reclaimable
//!   kernel memory (`NR_KERNEL_MISC_RECLAIMABLE`, part of `MemAvailable`,
//!   charged to no memory cgroup), a shrinker frees them on demand (the
//!   backlog first: it needs no zeroing), and for a second after the
//!   shrinker ran, freeing bypasses the pool. Pool and backlog together
//!   stay under `pool_limit_mib` (default 1/16 of RAM, 0 disables the pool).
//! - Under the dma-heap core's `mem_accounting` the pool is bypassed:
//!   pooled pages would have to be uncharged when they come back and
//!   charged to the next allocating cgroup, and the kernel does not export
//!   per-page charging to modules (`__memcg_kmem_charge_page`).

use crate::{
    cache_ops::Cleaner,
    pages::{self, Chunks, PageChunk, ORDERS, PAGE_SIZE},
    sys,
};
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};
use kernel::{
    error::from_err_ptr,
    ffi::c_ulong,
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    types::Opaque,
};

/// List index of the backlog; the zeroed lists are `0..ORDERS.len()`.
const BACKLOG: usize = ORDERS.len();
const LISTS: usize = ORDERS.len() + 1;

/// How long freeing bypasses the pool after the shrinker ran.
const PRESSURE_MS: u32 = 1000;

fn list_of(order: u32) -> usize {
    ORDERS.iter().position(|&o| o == order).unwrap_or(BACKLOG)
}

/// Intrusive lists of chunks through their head pages' `lru`.
///
/// # Invariants
///
/// Every list is initialised; every page on a list is the head of a chunk
/// given up by [`PageChunk::into_raw`], with its order in `page->private`,
/// owned by the list and counted in `pages`. The lists are used only under
/// the pool's lock (they are inside it).
struct Lists {
    heads: Pin<KBox<[Opaque<sys::list_head>; LISTS]>>,
    /// Pages (4 KiB) on each list.
    pages: [usize; LISTS],
    /// Pages the worker took off the backlog and has not put anywhere yet.
    working: usize,
}

// SAFETY: The pages on the lists are plain memory owned by the lists.
unsafe impl Send for Lists {}

impl Lists {
    fn new() -> Result<Self> {
        let heads = KBox::pin_init(
            pin_init::pin_init_array_from_fn(|_| {
                Opaque::ffi_init(|head| {
                    // SAFETY: `head` is valid, pinned memory for a list head.
                    unsafe { sys::rdh_page_list_init(head) }
                })
            }),
            GFP_KERNEL,
        )?;
        // INVARIANT: Every head was just initialised, every list is empty.
        Ok(Self {
            heads,
            pages: [0; LISTS],
            working: 0,
        })
    }

    fn push(&mut self, list: usize, chunk: PageChunk) {
        let pages = chunk.page_count();
        let (page, order) = chunk.into_raw();
        // SAFETY: The list is initialised (type invariant); `page` heads a
        // chunk nothing else owns now.
        unsafe { sys::rdh_page_list_push(self.heads[list].get(), page.as_ptr(), order) };
        // SAFETY: The chunk is a valid block of pages.
        unsafe { sys::rdh_pool_account(page.as_ptr(), pages as isize) };
        // INVARIANT: The chunk is on the list, and counted.
        self.pages[list] += pages;
    }

    fn pop(&mut self, list: usize) -> Option<PageChunk> {
        let mut order = 0;
        // SAFETY: The list is initialised (type invariant).
        let page =
            NonNull::new(unsafe { sys::rdh_page_list_pop(self.heads[list].get(), &mut order) })?;
        // SAFETY: By the type invariant `page` heads a chunk of `order`
        // that the list owned; it is off the list now.
        let chunk = unsafe { PageChunk::from_raw(page, order) };
        // SAFETY: The chunk is a valid block of pages.
        unsafe { sys::rdh_pool_account(page.as_ptr(), -(chunk.page_count() as isize)) };
        self.pages[list] -= chunk.page_count();
        Some(chunk)
    }

    fn zeroed_pages(&self) -> usize {
        self.pages[..BACKLOG].iter().sum()
    }

    fn total_pages(&self) -> usize {
        self.pages.iter().sum()
    }
}

impl Drop for Lists {
    fn drop(&mut self) {
        for list in 0..LISTS {
            while let Some(chunk) = self.pop(list) {
                drop(chunk);
            }
        }
    }
}

/// What the pool did since the heap was created (debugfs `pool`).
#[derive(Default)]
pub(crate) struct PoolCounters {
    /// Bytes of chunks allocations took from the pool, and from the page
    /// allocator while the pool was in use.
    pub(crate) hit_bytes: AtomicU64,
    pub(crate) miss_bytes: AtomicU64,
    /// Bytes the worker zeroed and cleaned (background cache maintenance,
    /// not counted as the buffers' own).
    pub(crate) zeroed_bytes: AtomicU64,
    pub(crate) cleaned_bytes: AtomicU64,
    /// Bytes freed by the shrinker, and freed instead of pooled (limit,
    /// pressure, pool off).
    pub(crate) shrunk_bytes: AtomicU64,
    pub(crate) bypassed_bytes: AtomicU64,
}

/// A pool's state at one moment (debugfs `pool`, KUnit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolLevels {
    /// Zeroed chunks per order (in [`ORDERS`] order) and their pages.
    pub(crate) chunks: [usize; ORDERS.len()],
    pub(crate) zeroed_pages: usize,
    /// Pages freed but not yet zeroed, and pages the worker is zeroing.
    pub(crate) backlog_pages: usize,
    pub(crate) working_pages: usize,
    /// Bytes of the module's chunks not held by this pool: those of live
    /// buffers, if no other heap holds any (KUnit heaps are gone by then).
    pub(crate) unpooled_bytes: usize,
}

impl PoolLevels {
    /// Bytes the pool holds: zeroed, on the backlog or being zeroed.
    pub(crate) fn held_bytes(&self) -> usize {
        (self.zeroed_pages + self.backlog_pages + self.working_pages) * PAGE_SIZE
    }
}

/// The worker thread's handle (`rdh_shim.c`): it can be kicked from its
/// creation on, and runs [`rdh_pool_work`] once started.
///
/// # Invariants
///
/// `raw` was returned by `rdh_worker_create` and is destroyed on drop.
struct Worker {
    raw: NonNull<sys::rdh_worker>,
}

// SAFETY: The C worker may be kicked and stopped from any thread.
unsafe impl Send for Worker {}
// SAFETY: Kicking is atomic.
unsafe impl Sync for Worker {}

impl Worker {
    fn new() -> Result<Self> {
        // SAFETY: No preconditions.
        let raw = NonNull::new(unsafe { sys::rdh_worker_create() }).ok_or(ENOMEM)?;
        // INVARIANT: Just created.
        Ok(Self { raw })
    }

    /// Starts the thread, which runs [`rdh_pool_work`] with `pool`.
    ///
    /// # Safety
    ///
    /// `pool` stays valid until [`Self::halt`] (or drop) returns.
    unsafe fn run(&self, pool: *mut c_void, name: &CStr) -> Result {
        // SAFETY: By the type invariant `raw` is live; `pool` as the caller
        // guarantees.
        kernel::error::to_result(unsafe {
            sys::rdh_worker_run(self.raw.as_ptr(), pool, name.as_char_ptr())
        })
    }

    /// Stops the thread, if started: [`rdh_pool_work`] does not run any
    /// more once this returns; kicks are harmless afterwards.
    fn halt(&self) {
        // SAFETY: By the type invariant `raw` is live.
        unsafe { sys::rdh_worker_halt(self.raw.as_ptr()) };
    }

    fn kick(&self) {
        // SAFETY: By the type invariant `raw` is live.
        unsafe { sys::rdh_worker_kick(self.raw.as_ptr()) };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: By the type invariant; nothing uses it after this.
        unsafe { sys::rdh_worker_destroy(self.raw.as_ptr()) };
    }
}

/// A heap's page pool, shared by the heap, its buffers' [`Memory`] and (by
/// reference) the worker thread and the shrinker, which [`PagePool`] stops
/// before it lets go of the pool.
#[pin_data]
pub(crate) struct Pool {
    #[pin]
    lists: SpinLock<Lists>,
    /// Whether this pool is in use at all (KUnit makes heaps without one,
    /// so that their buffers are always fresh).
    enabled: bool,
    /// How pooled chunks are cleaned; `None` if they cannot be (the
    /// maintenance device would bounce). Used by the worker only, which
    /// stops before the maintenance device goes.
    cleaner: Option<Cleaner>,
    worker: Worker,
    /// Freeing bypasses the pool until this time (jiffies).
    pressure_until: AtomicUsize,
    pub(crate) counters: PoolCounters,
}

impl Pool {
    /// Whether allocation and freeing use the pool now.
    fn in_use(&self) -> bool {
        self.usable_limit_bytes() > 0
    }

    /// The limit while the pool is in use; 0 when it is not (off, or
    /// bypassed under `mem_accounting`).
    fn usable_limit_bytes(&self) -> usize {
        if pages::mem_accounting_enabled() {
            return 0;
        }
        self.limit_bytes()
    }

    /// The most pool and backlog may hold now.
    pub(crate) fn limit_bytes(&self) -> usize {
        if !self.enabled {
            return 0;
        }
        // SAFETY: Reads a module parameter; no preconditions.
        unsafe { sys::rdh_pool_limit_bytes() as usize }
    }

    /// Whether pooled chunks are cleaned (their buffers start clean).
    pub(crate) fn cleans(&self) -> bool {
        self.cleaner.is_some()
    }

    fn under_pressure(&self) -> bool {
        // SAFETY: Reads `jiffies`; no preconditions.
        let now = unsafe { sys::rdh_jiffies() };
        let until = self.pressure_until.load(Ordering::Relaxed);
        // SAFETY: A comparison of two values; no preconditions.
        unsafe { sys::rdh_time_before(now, until) }
    }

    /// Allocates `len` bytes of zeroed chunks, pooled ones first.
    pub(crate) fn allocate(self: &Arc<Self>, len: usize) -> Result<Memory> {
        let in_use = self.in_use();
        let take = |order: u32| {
            if !in_use {
                return None;
            }
            let chunk = self.lists.lock().pop(list_of(order));
            let counter = match chunk {
                Some(_) => &self.counters.hit_bytes,
                None => &self.counters.miss_bytes,
            };
            counter.fetch_add((PAGE_SIZE << order) as u64, Ordering::Relaxed);
            chunk
        };
        let (chunks, from_pool) = pages::alloc_chunks(len, take)?;
        Ok(Memory {
            clean: self.cleans() && from_pool == chunks.as_slice().len(),
            chunks,
            pool: self.clone(),
        })
    }

    /// Takes back the chunks of a freed buffer: on the backlog for the
    /// worker, or freed at once if the pool is not in use, under pressure,
    /// or would grow beyond its limit. The worker is kicked to zero them,
    /// or to trim the pool to a limit lowered since.
    fn give_back(&self, chunks: Chunks) {
        let bytes: usize = chunks.as_slice().iter().map(PageChunk::size).sum();
        let limit_pages = self.usable_limit_bytes() / PAGE_SIZE;
        let pooling = limit_pages > 0 && !self.under_pressure();
        let mut lists = self.lists.lock();
        let fits = pooling && lists.total_pages() + bytes / PAGE_SIZE <= limit_pages;
        // Only the chunks move under the lock: their vector may live in
        // vmalloc memory, whose free may sleep.
        let rest = if fits {
            chunks.drain(|chunk| lists.push(BACKLOG, chunk))
        } else {
            chunks
        };
        let over = lists.total_pages() > limit_pages;
        drop(lists);
        drop(rest);
        if !fits {
            self.bypassed(bytes);
        }
        if fits || over {
            self.worker.kick();
        }
    }

    /// Counts `bytes` freed instead of pooled.
    fn bypassed(&self, bytes: usize) {
        self.counters
            .bypassed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The worker's job: zero and clean the backlog into the lists, then
    /// trim the lists to the limit. Chunks the pool holds are freed under
    /// its lock, so that [`Self::levels`] always adds up.
    pub(crate) fn work(&self) {
        loop {
            let chunk = {
                let mut lists = self.lists.lock();
                let chunk = lists.pop(BACKLOG);
                lists.working += chunk.as_ref().map_or(0, PageChunk::page_count);
                chunk
            };
            let Some(chunk) = chunk else {
                break;
            };
            let keep = self.in_use() && !self.under_pressure() && self.zero_and_clean(&chunk);
            let mut lists = self.lists.lock();
            lists.working -= chunk.page_count();
            if keep {
                lists.push(list_of(chunk.order()), chunk);
            } else {
                let bytes = chunk.size();
                drop(chunk);
                self.bypassed(bytes);
            }
        }
        let limit = self.limit_bytes() / PAGE_SIZE;
        let excess = self.lists.lock().total_pages().saturating_sub(limit);
        self.free_pages(excess, &self.counters.bypassed_bytes);
    }

    /// Zeroes `chunk` and cleans it (if this pool cleans); `false` if it
    /// could not be cleaned, so is not for the pool.
    fn zero_and_clean(&self, chunk: &PageChunk) -> bool {
        let bytes = chunk.size() as u64;
        chunk.zero();
        self.counters
            .zeroed_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        match &self.cleaner {
            Some(cleaner) if !cleaner.clean(chunk) => false,
            Some(_) => {
                self.counters
                    .cleaned_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                true
            }
            None => true,
        }
    }

    /// Frees at least `pages` pages (if there are so many), the backlog
    /// first, then small chunks before large ones; returns how many.
    fn free_pages(&self, pages: usize, counter: &AtomicU64) -> usize {
        let mut freed = 0;
        for list in (0..LISTS).rev() {
            while freed < pages {
                let mut lists = self.lists.lock();
                let Some(chunk) = lists.pop(list) else {
                    break;
                };
                freed += chunk.page_count();
                counter.fetch_add(chunk.size() as u64, Ordering::Relaxed);
                // Freed under the lock (see `work`).
                drop(chunk);
                drop(lists);
            }
        }
        freed
    }

    /// The shrinker's job: frees about `pages` pages and bypasses the pool
    /// until `until` (jiffies); returns how many pages were freed.
    pub(crate) fn shrink(&self, pages: usize, until: c_ulong) -> usize {
        self.pressure_until.store(until, Ordering::Relaxed);
        self.free_pages(pages, &self.counters.shrunk_bytes)
    }

    /// What the pool holds now.
    pub(crate) fn levels(&self) -> PoolLevels {
        let lists = self.lists.lock();
        let mut levels = PoolLevels {
            zeroed_pages: lists.zeroed_pages(),
            backlog_pages: lists.pages[BACKLOG],
            working_pages: lists.working,
            ..PoolLevels::default()
        };
        levels.unpooled_bytes = pages::LIVE_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(levels.held_bytes());
        for (list, &order) in ORDERS.iter().enumerate() {
            levels.chunks[list] = lists.pages[list] >> order;
        }
        levels
    }
}

/// The memory of one buffer: its chunks, which go back to the pool when it
/// is dropped.
pub(crate) struct Memory {
    chunks: Chunks,
    /// Every chunk came zeroed and cleaned from the pool.
    clean: bool,
    pool: Arc<Pool>,
}

impl Memory {
    /// The chunks, largest first.
    pub(crate) fn chunks(&self) -> &[PageChunk] {
        self.chunks.as_slice()
    }

    /// Whether the memory is zero in RAM with no dirty cache lines.
    pub(crate) fn is_clean(&self) -> bool {
        self.clean
    }

    /// Moves the chunks into a vector with room for `room` of them; returns
    /// the vector's address (see [`Chunks::with_room`]).
    #[cfg(rdh_kunit)]
    pub(crate) fn regroup(&mut self, room: usize) -> Result<*const u8> {
        let chunks = core::mem::replace(&mut self.chunks, Chunks::None);
        let (chunks, addr) = chunks.with_room(room)?;
        self.chunks = chunks;
        Ok(addr)
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        let chunks = core::mem::replace(&mut self.chunks, Chunks::None);
        self.pool.give_back(chunks);
    }
}

/// The shrinker's handle.
///
/// # Invariants
///
/// `raw` was returned by `rdh_shrinker_create` for a pool that outlives
/// it, and is destroyed on drop.
struct Shrinker {
    raw: NonNull<sys::shrinker>,
}

// SAFETY: Shrinkers may be freed from any thread.
unsafe impl Send for Shrinker {}
// SAFETY: No shared operation.
unsafe impl Sync for Shrinker {}

impl Drop for Shrinker {
    fn drop(&mut self) {
        // SAFETY: By the type invariant; returns once no callback runs.
        unsafe { sys::rdh_shrinker_destroy(self.raw.as_ptr()) };
    }
}

/// Whether and how a heap pools pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolMode {
    /// No pool: buffers are always fresh and freed at once.
    Off,
    /// A pool with its worker thread and shrinker.
    Background,
    /// A pool without thread or shrinker: a KUnit test runs the worker's
    /// job ([`Pool::work`]) and the shrinker's ([`Pool::shrink`]) itself.
    #[cfg(rdh_kunit)]
    Manual,
}

/// A heap's pool with its worker thread and shrinker running (in
/// [`PoolMode::Background`]). Dropping it stops both before the pool can
/// go.
pub(crate) struct PagePool {
    shrinker: Option<Shrinker>,
    pool: Arc<Pool>,
}

impl PagePool {
    /// A pool in `mode`, whose chunks `cleaner` cleans; the thread and the
    /// shrinker are named after `name`.
    pub(crate) fn new(mode: PoolMode, cleaner: Option<Cleaner>, name: &CStr) -> Result<Self> {
        // SAFETY: Reads `jiffies`; no preconditions.
        let now = unsafe { sys::rdh_jiffies() } as usize;
        let pool = Arc::pin_init(
            try_pin_init!(Pool {
                lists <- new_spinlock!(Lists::new()?),
                enabled: mode != PoolMode::Off,
                cleaner,
                worker: Worker::new()?,
                pressure_until: AtomicUsize::new(now),
                counters: PoolCounters::default(),
            }),
            GFP_KERNEL,
        )?;
        let mut this = Self {
            shrinker: None,
            pool,
        };
        if mode == PoolMode::Background {
            let data = Arc::as_ptr(&this.pool).cast_mut().cast::<c_void>();
            // SAFETY: `data` is the pool, which outlives the thread: `Drop`
            // halts it before releasing the pool.
            unsafe { this.pool.worker.run(data, name) }?;
            // SAFETY: The same for the shrinker, destroyed in `Drop` first.
            let raw = from_err_ptr(unsafe { sys::rdh_shrinker_create(data, name.as_char_ptr()) })?;
            // INVARIANT: Just created for `this.pool`.
            this.shrinker = NonNull::new(raw).map(|raw| Shrinker { raw });
        }
        Ok(this)
    }

    /// The pool, for allocation and statistics.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        drop(self.shrinker.take());
        // After this the thread no longer uses the pool.
        self.pool.worker.halt();
    }
}

/// Turns the pointer the worker thread and the shrinker were given back
/// into the pool.
///
/// # Safety
///
/// `pool` was given to `rdh_worker_run` or `rdh_shrinker_create` by
/// [`PagePool::new`], and that thread or shrinker has not been stopped.
unsafe fn pool_of<'a>(pool: *mut c_void) -> &'a Pool {
    // SAFETY: By the safety requirements the pool is alive until the thread
    // or shrinker is stopped, which outlasts this call.
    unsafe { &*pool.cast::<Pool>() }
}

/// The worker thread's job (`rdh_shim.c`), once per kick.
///
/// # Safety
///
/// Called by the worker thread of [`PagePool::new`] with its pool.
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_pool_work(pool: *mut c_void) {
    // SAFETY: See the function's safety section.
    unsafe { pool_of(pool) }.work();
}

/// The shrinker's count: pages the pool could give back.
///
/// # Safety
///
/// Called by the shrinker of [`PagePool::new`] with its pool.
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_pool_count(pool: *mut c_void) -> c_ulong {
    // SAFETY: See the function's safety section.
    unsafe { pool_of(pool) }.lists.lock().total_pages()
}

/// The shrinker's scan: frees about `nr_pages` pages; for a while, freed
/// buffers bypass the pool.
///
/// # Safety
///
/// Called by the shrinker of [`PagePool::new`] with its pool.
#[no_mangle]
pub(crate) unsafe extern "C" fn rdh_pool_scan(pool: *mut c_void, nr_pages: c_ulong) -> c_ulong {
    // SAFETY: See the function's safety section.
    let pool = unsafe { pool_of(pool) };
    // SAFETY: Reads `jiffies` and converts a constant; no preconditions.
    let until = unsafe { sys::rdh_jiffies() + sys::rdh_ms_to_jiffies(PRESSURE_MS) };
    pool.shrink(nr_pages, until)
}
