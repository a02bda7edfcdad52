// SPDX-License-Identifier: GPL-2.0

//! The page pool: the chunks of freed buffers, zeroed — and cleaned to the
//! point of coherency — by a background thread, for the next allocations.
//!
//! - Freeing a buffer puts its chunks on the *backlog* and returns at once
//!   (deferred free). The worker (a kernel thread at the lowest priority)
//!   zeroes each chunk, cleans it on the maintenance device and moves it to
//!   the list of its order (9, 8, 4, 0). Allocation takes a chunk of the
//!   order it wants from that list, else from the page allocator, so a
//!   chunk on the backlog is never handed out: a pooled chunk is always
//!   zero. While the backlog is long (a churn's frees) the worker only
//!   zeroes, to a list of chunks not cleaned yet, which it cleans once the
//!   backlog is gone; allocation takes those after the cleaned ones, as
//!   not clean (like fresh chunks).
//! - A buffer made only of pooled chunks starts with clean cache lines
//!   (`ownership::Lines::CLEAN`): its first map by a non-coherent device
//!   needs no clean. If the maintenance device would bounce, nothing is
//!   cleaned and pooled buffers start like fresh ones.
//! - Memory comes back: pooled and backlog pages count as reclaimable
//!   kernel memory (`NR_KERNEL_MISC_RECLAIMABLE`, part of `MemAvailable`,
//!   charged to no memory cgroup), a shrinker frees them on demand (the
//!   backlog first: it needs no zeroing), and for a second after the
//!   shrinker ran, freeing bypasses the pool.
//! - The pool keeps what demand asks for (`demand.rs`): as much as its
//!   heap allocated within a fifth of `pool_window_ms` (5 s), the busiest
//!   such stretch of the window, while free memory is comfortable
//!   (`pages::short_of_comfort`). The worker looks again every fifth of
//!   the window while the pool holds anything, so what nobody asked for
//!   goes back within about 6 s. Pool and backlog together never exceed
//!   `pool_limit_mib` (default 1/2 of RAM, 0 disables the pool).
//! - Under the dma-heap core's `mem_accounting` the pool is bypassed:
//!   pooled pages would have to be uncharged when they come back and
//!   charged to the next allocating cgroup, and the kernel does not export
//!   per-page charging to modules (`__memcg_kmem_charge_page`).

use crate::{
    cache_ops::Cleaner,
    demand::Demand,
    dma_heap,
    glue::{self, Running, Worker},
    page_block::BlockList,
    pages::{self, Chunks, PageChunk, Zone, ORDERS, PAGE_SIZE},
    shrinker::{self, Shrink},
    task_signal,
};
use core::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
};
use kernel::{
    new_spinlock,
    prelude::*,
    str::CString,
    sync::{Arc, SpinLock},
    time::{Delta, Instant, Monotonic},
};

/// List indices: chunks of `ORDERS[i]` zeroed and cleaned (ready) at
/// `i`, zeroed but not cleaned yet at `UNCLEAN + i`, the backlog last.
const UNCLEAN: usize = ORDERS.len();
const BACKLOG: usize = 2 * ORDERS.len();
const LISTS: usize = BACKLOG + 1;

/// While the backlog holds more than this, the worker only zeroes: a
/// churn's frees become usable twice as fast, and their cleaning waits
/// until the backlog is gone (allocations take such chunks as they take
/// fresh ones: their first map cleans).
const BEHIND_PAGES: usize = (16 << 20) / PAGE_SIZE;

/// How long freeing bypasses the pool after the shrinker ran.
const PRESSURE_MS: i64 = 1000;

fn list_of(order: u32) -> usize {
    ORDERS.iter().position(|&o| o == order).unwrap_or(BACKLOG)
}

/// The pool's lists of chunks, kept on their head pages (no allocation).
///
/// # Invariants
///
/// `pages[i]` counts the pages on `lists[i]`, all of which are counted as
/// reclaimable memory. The lists are used only under the pool's lock (they
/// are inside it).
struct Lists {
    lists: [BlockList; LISTS],
    /// Pages (4 KiB) on each list.
    pages: [usize; LISTS],
    /// Pages the worker took off the backlog and has not put anywhere yet.
    working: usize,
    /// Freeing bypasses the pool until this time (set by the shrinker).
    bypass_until: Option<Instant<Monotonic>>,
    /// Pages of the pool's buffers in use, and allocated lately.
    demand: Demand,
}

impl Lists {
    /// Empty lists for chunks of `zone`.
    fn new(zone: Zone) -> Result<Self> {
        let live = Some(zone.live_bytes());
        // INVARIANT: Every list is empty.
        Ok(Self {
            // Ready and unclean per order, and the backlog.
            lists: [
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
                BlockList::new(live)?,
            ],
            pages: [0; LISTS],
            working: 0,
            bypass_until: None,
            demand: Demand::new(glue::pool_window_ms()),
        })
    }

    fn push(&mut self, list: usize, chunk: PageChunk) {
        let pages = chunk.page_count();
        // Pooled pages are reclaimable (the shrinker gives them back):
        // MemAvailable counts them, and no memory cgroup is charged.
        chunk.account_reclaimable(pages as isize);
        // INVARIANT: The chunk is on the list, and counted.
        self.lists[list].push(chunk);
        self.pages[list] += pages;
    }

    fn pop(&mut self, list: usize) -> Option<PageChunk> {
        let chunk = self.lists[list].pop()?;
        chunk.account_reclaimable(-(chunk.page_count() as isize));
        // INVARIANT: Off the list, no longer counted.
        self.pages[list] -= chunk.page_count();
        Some(chunk)
    }

    /// The demand, on the window set now.
    fn demand(&mut self) -> &mut Demand {
        self.demand.set_window(glue::pool_window_ms());
        &mut self.demand
    }

    fn under_pressure(&self) -> bool {
        self.bypass_until
            .is_some_and(|until| (until - Instant::now()).as_nanos() > 0)
    }

    fn zeroed_pages(&self) -> usize {
        self.pages[..BACKLOG].iter().sum()
    }

    fn unclean_pages(&self) -> usize {
        self.pages[UNCLEAN..BACKLOG].iter().sum()
    }

    /// A zeroed chunk of `order`: a ready one (`true`), else one not
    /// cleaned yet (`false`).
    fn pop_zeroed(&mut self, order: u32) -> Option<(PageChunk, bool)> {
        let list = list_of(order);
        if let Some(chunk) = self.pop(list) {
            return Some((chunk, true));
        }
        self.pop(UNCLEAN + list).map(|chunk| (chunk, false))
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
    /// Bytes pooled, then freed by the worker because demand no longer
    /// asked for them (or free memory ran short).
    pub(crate) released_bytes: AtomicU64,
}

/// A pool's state at one moment (debugfs `pool`, KUnit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolLevels {
    /// Zeroed chunks per order (in [`ORDERS`] order) and their pages, of
    /// which not cleaned yet.
    pub(crate) chunks: [usize; ORDERS.len()],
    pub(crate) zeroed_pages: usize,
    pub(crate) unclean_pages: usize,
    /// Pages freed but not yet zeroed, and pages the worker is zeroing.
    pub(crate) backlog_pages: usize,
    pub(crate) working_pages: usize,
    /// Bytes of the module's chunks of this pool's zone not held by this
    /// pool: those of live buffers, if no other pool of the zone holds any
    /// (KUnit pools are gone by then).
    pub(crate) unpooled_bytes: usize,
    /// Pages of this pool's buffers in use, the most allocated within a
    /// fifth of the window lately (what demand asks the pool to keep), and
    /// what the pool may keep now (demand, the cap and free memory
    /// allowing).
    pub(crate) in_use_pages: usize,
    pub(crate) wanted_pages: usize,
    pub(crate) keep_pages: usize,
    /// The window demand looks back on (`pool_window_ms`).
    pub(crate) window_ms: u64,
}

impl PoolLevels {
    /// Bytes the pool holds: zeroed, on the backlog or being zeroed.
    pub(crate) fn held_bytes(&self) -> usize {
        (self.zeroed_pages + self.backlog_pages + self.working_pages) * PAGE_SIZE
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
    /// Where its chunks come from: each zone has its own pool.
    zone: Zone,
    /// How pooled chunks are cleaned; `None` if they cannot be (the
    /// maintenance device would bounce). Used by the worker only, which
    /// stops before the maintenance device goes.
    cleaner: Option<Cleaner>,
    worker: Worker,
    /// The origin of the pool's clock (see [`Self::now_ms`]).
    born: Instant<Monotonic>,
    pub(crate) counters: PoolCounters,
}

impl Pool {
    /// An empty pool of chunks from `zone`, which `cleaner` cleans; not in
    /// use at all unless `enabled`.
    fn new(enabled: bool, zone: Zone, cleaner: Option<Cleaner>) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Pool {
                lists <- new_spinlock!(Lists::new(zone)?),
                enabled,
                zone,
                cleaner,
                worker: Worker::new()?,
                born: Instant::now(),
                counters: PoolCounters::default(),
            }),
            GFP_KERNEL,
        )
    }

    /// Where the pool's chunks come from.
    pub(crate) fn zone(&self) -> Zone {
        self.zone
    }

    /// Whether allocation and freeing use the pool now.
    fn in_use(&self) -> bool {
        self.usable_limit_bytes() > 0
    }

    /// The limit while the pool is in use; 0 when it is not (off, or
    /// bypassed under `mem_accounting`).
    fn usable_limit_bytes(&self) -> usize {
        if dma_heap::mem_accounting() {
            return 0;
        }
        self.limit_bytes()
    }

    /// The most pool and backlog may hold now.
    pub(crate) fn limit_bytes(&self) -> usize {
        if !self.enabled {
            return 0;
        }
        glue::pool_limit_bytes()
    }

    /// Milliseconds since the pool was made: the clock of its demand.
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis().max(0) as u64
    }

    /// Pages the pool may hold at `now_ms`: what demand asks for, within
    /// the cap, less what free memory is short of (`short`, from
    /// [`pages::short_of_comfort`]).
    fn keep_pages(&self, lists: &Lists, now_ms: u64, short: usize) -> usize {
        let cap = self.usable_limit_bytes() / PAGE_SIZE;
        let wanted = lists.demand.wanted(now_ms).min(cap);
        if short == 0 {
            wanted
        } else {
            wanted.min(lists.total_pages().saturating_sub(short))
        }
    }

    /// Whether pooled chunks are cleaned (their buffers start clean).
    pub(crate) fn cleans(&self) -> bool {
        self.cleaner.is_some()
    }

    /// Whether the shrinker ran lately: then freeing bypasses the pool.
    fn under_pressure(&self) -> bool {
        self.lists.lock().under_pressure()
    }

    /// Allocates `len` bytes of zeroed chunks, pooled ones first.
    pub(crate) fn allocate(self: &Arc<Self>, len: usize) -> Result<Memory> {
        self.allocate_then(len, |_| Ok(()))
    }

    /// Allocates as [`Self::allocate`], and hands every chunk that is not
    /// clean to `unclean`: fresh ones, and pooled ones the worker has not
    /// cleaned yet (the uncached heap cleans those). `unclean` may fail the
    /// allocation; a pooled chunk it fails on is freed, and a fresh one
    /// tried instead.
    pub(crate) fn allocate_then(
        self: &Arc<Self>,
        len: usize,
        unclean: impl Fn(&PageChunk) -> Result,
    ) -> Result<Memory> {
        let in_use = self.in_use();
        let clean = Cell::new(self.cleans());
        let take = |order: u32| {
            if !in_use {
                return None;
            }
            let chunk = self.lists.lock().pop_zeroed(order);
            let counter = match chunk {
                Some(_) => &self.counters.hit_bytes,
                None => &self.counters.miss_bytes,
            };
            counter.fetch_add((PAGE_SIZE << order) as u64, Ordering::Relaxed);
            match chunk? {
                (chunk, true) => Some(chunk),
                (chunk, false) => {
                    clean.set(false);
                    unclean(&chunk).ok().map(|()| chunk)
                }
            }
        };
        let (chunks, from_pool) = pages::alloc_chunks(len, self.zone, take, &unclean)?;
        let now = self.now_ms();
        self.lists.lock().demand().took(len / PAGE_SIZE, now);
        Ok(Memory {
            clean: clean.get() && from_pool == chunks.as_slice().len(),
            chunks,
            pool: self.clone(),
        })
    }

    /// Takes back the chunks of a freed buffer: on the backlog for the
    /// worker, or freed at once if the pool is not in use, under pressure,
    /// or would grow beyond what it may keep. The worker is kicked to zero
    /// them, or to trim the pool to what it may keep now.
    fn give_back(&self, chunks: Chunks) {
        let bytes: usize = chunks.as_slice().iter().map(PageChunk::size).sum();
        let now = self.now_ms();
        let mut lists = self.lists.lock();
        // Counting needs no window: the next allocation or worker run
        // applies a changed one.
        lists.demand.gave_back(bytes / PAGE_SIZE);
        // While free memory is short nothing more is pooled.
        let short = pages::short_of_comfort();
        let keep_pages = self.keep_pages(&lists, now, short);
        let pooling = keep_pages > 0 && short == 0 && !lists.under_pressure();
        let fits = pooling && lists.total_pages() + bytes / PAGE_SIZE <= keep_pages;
        // Only the chunks move under the lock: their vector may live in
        // vmalloc memory, whose free may sleep.
        let rest = if fits {
            chunks.drain(|chunk| lists.push(BACKLOG, chunk))
        } else {
            chunks
        };
        let over = lists.total_pages() > keep_pages;
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

    /// The worker's job: zero the backlog into the lists, cleaning each
    /// chunk unless far behind, then clean what it only zeroed, then trim
    /// the lists to what the pool may keep, and look again in a fifth of
    /// the window while it holds anything. Chunks the pool holds are freed
    /// under its lock, so that [`Self::levels`] always adds up.
    pub(crate) fn work(&self) {
        self.work_at(self.now_ms());
        let lists = self.lists.lock();
        if lists.total_pages() > 0 {
            let later = lists.demand.bucket_ms().min(u32::MAX.into()) as u32;
            drop(lists);
            self.worker.kick_after(later);
        }
    }

    /// [`Self::work`] as at `now_ms` on the pool's clock, without looking
    /// again (KUnit plays timelines with it).
    fn work_at(&self, now_ms: u64) {
        // Cleaning alone never sleeps: let others run between chunks.
        while self.step() {
            task_signal::cond_resched();
        }
        let excess = {
            let mut lists = self.lists.lock();
            lists.demand();
            lists.total_pages().saturating_sub(self.keep_pages(
                &lists,
                now_ms,
                pages::short_of_comfort(),
            ))
        };
        self.free_pages(excess, &self.counters.released_bytes);
    }

    /// One piece of the worker's job: zeroes a chunk of the backlog (and
    /// cleans it, unless the backlog is still long), else cleans a chunk
    /// that was only zeroed; `false` if there was nothing to do.
    fn step(&self) -> bool {
        let (chunk, from, behind) = {
            let mut lists = self.lists.lock();
            let found = lists
                .pop(BACKLOG)
                .map(|chunk| (chunk, BACKLOG))
                .or_else(|| {
                    (UNCLEAN..BACKLOG).find_map(|list| lists.pop(list).map(|chunk| (chunk, list)))
                });
            let Some((chunk, from)) = found else {
                return false;
            };
            lists.working += chunk.page_count();
            (chunk, from, lists.pages[BACKLOG] > BEHIND_PAGES)
        };
        let mut keep = self.in_use() && !self.under_pressure();
        if keep && from == BACKLOG {
            chunk.zero();
            self.counters
                .zeroed_bytes
                .fetch_add(chunk.size() as u64, Ordering::Relaxed);
        }
        // Where the pool cannot clean, zeroed chunks are as ready as they get.
        let cleaned = keep && !behind && self.cleaner.is_some();
        if cleaned {
            keep = self.clean(&chunk);
        }
        let list = list_of(chunk.order());
        let mut lists = self.lists.lock();
        lists.working -= chunk.page_count();
        if !keep {
            let bytes = chunk.size();
            drop(chunk);
            self.bypassed(bytes);
        } else if cleaned || self.cleaner.is_none() {
            lists.push(list, chunk);
        } else {
            lists.push(UNCLEAN + list, chunk);
        }
        true
    }

    /// Cleans `chunk` on the maintenance device; `false` if it could not
    /// be (then it is not for the pool).
    fn clean(&self, chunk: &PageChunk) -> bool {
        let Some(cleaner) = &self.cleaner else {
            return false;
        };
        let done = cleaner.clean(chunk);
        if done {
            self.counters
                .cleaned_bytes
                .fetch_add(chunk.size() as u64, Ordering::Relaxed);
        }
        done
    }

    /// Frees at least `pages` pages (if there are so many), the backlog
    /// first, then chunks not cleaned yet, small chunks before large ones;
    /// returns how many.
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
    /// until `until`; returns how many pages were freed.
    pub(crate) fn shrink(&self, pages: usize, until: Instant<Monotonic>) -> usize {
        self.lists.lock().bypass_until = Some(until);
        self.free_pages(pages, &self.counters.shrunk_bytes)
    }

    /// What the pool holds now.
    pub(crate) fn levels(&self) -> PoolLevels {
        let now = self.now_ms();
        let mut lists = self.lists.lock();
        lists.demand();
        let mut levels = PoolLevels {
            zeroed_pages: lists.zeroed_pages(),
            unclean_pages: lists.unclean_pages(),
            backlog_pages: lists.pages[BACKLOG],
            working_pages: lists.working,
            in_use_pages: lists.demand.in_use(),
            wanted_pages: lists.demand.wanted(now),
            window_ms: lists.demand.window_ms(),
            keep_pages: self.keep_pages(&lists, now, pages::short_of_comfort()),
            ..PoolLevels::default()
        };
        levels.unpooled_bytes = self
            .zone
            .live_bytes()
            .load(Ordering::Relaxed)
            .saturating_sub(levels.held_bytes());
        for (list, &order) in ORDERS.iter().enumerate() {
            levels.chunks[list] = (lists.pages[list] + lists.pages[UNCLEAN + list]) >> order;
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

    /// The physical address just past its highest byte.
    pub(crate) fn phys_end(&self) -> u64 {
        self.chunks()
            .iter()
            .map(PageChunk::phys_end)
            .max()
            .unwrap_or(0)
    }

    /// Whether the memory is zero in RAM with no dirty cache lines.
    pub(crate) fn is_clean(&self) -> bool {
        self.clean
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        let chunks = core::mem::replace(&mut self.chunks, Chunks::None);
        self.pool.give_back(chunks);
    }
}

/// Reclaim asks the pool to give pages back.
impl Shrink for Pool {
    /// Pages the pool could give back.
    fn count(&self) -> usize {
        self.lists.lock().total_pages()
    }

    /// Frees about `nr_pages` pages; for a while, freed buffers bypass the
    /// pool.
    fn scan(&self, nr_pages: usize) -> usize {
        self.shrink(nr_pages, Instant::now() + Delta::from_millis(PRESSURE_MS))
    }
}

/// Whether and how a heap pools pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolMode {
    /// No pool: buffers are always fresh and freed at once.
    Off,
    /// A pool with its worker thread and shrinker.
    Background,
}

/// A heap's pool with its worker thread and shrinker running (in
/// [`PoolMode::Background`]). Dropping it stops both before the pool can
/// go.
pub(crate) struct PagePool {
    shrinker: Option<shrinker::Registration<Pool>>,
    running: Option<Running<Pool>>,
    pool: Arc<Pool>,
}

impl PagePool {
    /// A pool in `mode` of chunks from `zone`, which `cleaner` cleans; the
    /// thread and the shrinker are named after `name`.
    pub(crate) fn new(
        mode: PoolMode,
        zone: Zone,
        cleaner: Option<Cleaner>,
        name: &CStr,
    ) -> Result<Self> {
        let pool = Pool::new(mode != PoolMode::Off, zone, cleaner)?;
        let mut this = Self {
            shrinker: None,
            running: None,
            pool,
        };
        if mode == PoolMode::Background {
            this.running = Some(Running::start(this.pool.clone(), name)?);
            let shrinker_name =
                CString::try_from_fmt(fmt!("rdh-pool-{}", name.to_str().unwrap_or("heap")))?;
            this.shrinker = Some(shrinker::Registration::register(
                this.pool.clone(),
                &shrinker_name,
            )?);
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
        drop(self.running.take());
    }
}

/// The worker thread's job, once per kick.
impl glue::Job for Pool {
    fn worker(&self) -> &Worker {
        &self.worker
    }

    fn run(&self) {
        self.work();
    }
}

#[cfg(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST)]
#[kunit_tests(rust_dmabuf_heap_pool)]
mod tests {
    use super::*;
    use crate::{
        cache_ops::MaintenanceDevice,
        kunit::support::{self, fill, nonzero_pages},
        pages::{DMA32_END, LIVE_BYTES, LIVE_DMA32_BYTES},
    };
    use kernel::alloc::KVVec;

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    /// A buffer of each chunk order, one after the other.
    const ONE_OF_EACH_ORDER: usize = 2 * MIB + MIB + 64 * KIB + 4 * KIB;

    /// A pool without thread or shrinker, whose jobs ([`Pool::work`],
    /// [`Pool::shrink`]) the test runs itself (what is on the backlog stays
    /// there), and the maintenance device it cleans on, which must go
    /// after it; `None` (the case skipped) if the pool is off on this boot
    /// (under `mem_accounting` or `pool_limit_mib=0`).
    fn manual_pool() -> Result<Option<(Arc<Pool>, MaintenanceDevice)>> {
        manual_pool_of(Zone::Any)
    }

    fn manual_pool_of(zone: Zone) -> Result<Option<(Arc<Pool>, MaintenanceDevice)>> {
        let maintenance = MaintenanceDevice::new()?;
        let pool = Pool::new(true, zone, maintenance.cleaner())?;
        if pool.limit_bytes() == 0 || dma_heap::mem_accounting() {
            support::skip(c"the page pool is off on this boot");
            return Ok(None);
        }
        Ok(Some((pool, maintenance)))
    }

    /// A manual pool whose backlog holds freed memory of `len` bytes full
    /// of a pattern.
    fn pool_with_a_dirty_free(len: usize) -> Result<Option<(Arc<Pool>, MaintenanceDevice)>> {
        let Some((pool, maintenance)) = manual_pool()? else {
            return Ok(None);
        };
        let dirty = pool.allocate(len)?;
        fill(dirty.chunks(), 0xa5);
        drop(dirty);
        Ok(Some((pool, maintenance)))
    }

    /// All pages pooled or on the backlog.
    fn pooled_pages(pool: &Pool) -> usize {
        let levels = pool.levels();
        levels.zeroed_pages + levels.backlog_pages
    }

    /// A freed buffer's chunk vector in vmalloc memory (a long one: a
    /// large buffer of 4 KiB chunks) is freed only after the pool's
    /// spinlock is dropped: `vfree` may sleep, which the debug kernel
    /// (`DEBUG_ATOMIC_SLEEP`) reports as a BUG, failing the boot.
    #[test]
    fn a_chunk_vector_in_vmalloc_memory_is_freed_outside_the_pool_lock() -> Result {
        let Some((pool, _maintenance)) = manual_pool()? else {
            return Ok(());
        };
        let len = ONE_OF_EACH_ORDER;
        let mut memory = pool.allocate(len)?;
        // Beyond kmalloc's largest size (4 MiB with 4 KiB pages).
        let room = (4 * MIB) / core::mem::size_of::<PageChunk>() + 1;
        let mut vector = KVVec::with_capacity(room, GFP_KERNEL)?;
        let chunks = core::mem::replace(&mut memory.chunks, Chunks::None);
        drop(chunks.drain(|chunk| {
            // Cannot fail: there is room.
            let _ = vector.push(chunk, GFP_KERNEL);
        }));
        assert!(support::is_vmalloc_addr(vector.as_ptr()));
        memory.chunks = Chunks::Many(vector);
        let backlog = pool.levels().backlog_pages;
        drop(memory);
        // The chunks went onto the backlog; their vector was freed after
        // the lock.
        assert_eq!(pool.levels().backlog_pages, backlog + len / PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn freed_chunks_on_the_backlog_are_never_handed_out() -> Result {
        let len = ONE_OF_EACH_ORDER;
        let Some((pool, _maintenance)) = pool_with_a_dirty_free(len)? else {
            return Ok(());
        };
        // Freed, not zeroed yet (the worker has not run).
        assert_eq!(pool.levels().backlog_pages * PAGE_SIZE, len);
        let hits = pool.counters.hit_bytes.load(Ordering::Relaxed);
        let memory = pool.allocate(len)?;
        assert_eq!(nonzero_pages(memory.chunks())?, 0);
        assert_eq!(pool.counters.hit_bytes.load(Ordering::Relaxed), hits);
        assert!(!memory.is_clean());
        assert_eq!(pool.levels().backlog_pages * PAGE_SIZE, len);
        Ok(())
    }

    #[test]
    fn pooled_chunks_come_back_zeroed_and_clean() -> Result {
        let len = ONE_OF_EACH_ORDER;
        let Some((pool, _maintenance)) = pool_with_a_dirty_free(len)? else {
            return Ok(());
        };
        pool.work();
        let levels = pool.levels();
        assert_eq!(
            (levels.chunks, levels.backlog_pages),
            ([1; ORDERS.len()], 0)
        );
        let cleaned = pool.counters.cleaned_bytes.load(Ordering::Relaxed);
        assert_eq!(cleaned, if pool.cleans() { len as u64 } else { 0 });
        let memory = pool.allocate(len)?;
        assert_eq!(pool.levels().zeroed_pages, 0);
        assert_eq!(nonzero_pages(memory.chunks())?, 0);
        // Clean where the pool cleans (where it cannot, the maintenance
        // device bounces, and buffers sync like the system heap's).
        assert_eq!(memory.is_clean(), pool.cleans());
        Ok(())
    }

    #[test]
    fn memory_of_pooled_and_fresh_chunks_is_not_clean() -> Result {
        let Some((pool, _maintenance)) = manual_pool()? else {
            return Ok(());
        };
        drop(pool.allocate(4 * KIB)?);
        pool.work();
        let memory = pool.allocate(MIB + 4 * KIB)?;
        assert_eq!(pool.levels().zeroed_pages, 0);
        assert!(!memory.is_clean());
        Ok(())
    }

    #[test]
    fn shrinker_frees_the_backlog_first_then_bypasses_the_pool() -> Result {
        let Some((pool, _maintenance)) = manual_pool()? else {
            return Ok(());
        };
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let (a, b, c) = (
            pool.allocate(2 * MIB)?,
            pool.allocate(MIB)?,
            pool.allocate(MIB)?,
        );
        drop(a);
        pool.work();
        drop(b);
        assert_eq!(pooled_pages(&pool), 3 * MIB / PAGE_SIZE);
        // Asked for one page, the shrinker frees a whole chunk: the
        // backlog's, which needs no zeroing.
        let until = Instant::now() + Delta::from_millis(60_000);
        assert_eq!(pool.shrink(1, until), MIB / PAGE_SIZE);
        assert_eq!(pool.levels().backlog_pages, 0);
        assert_eq!(pool.levels().zeroed_pages, 2 * MIB / PAGE_SIZE);
        // Under pressure freed memory is freed at once.
        drop(c);
        assert_eq!(pooled_pages(&pool), 2 * MIB / PAGE_SIZE);
        assert_eq!(pool.shrink(usize::MAX, until), 2 * MIB / PAGE_SIZE);
        assert_eq!(pooled_pages(&pool), 0);
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        // The shrinker's own view: nothing to free.
        assert_eq!(Shrink::count(&*pool), 0);
        Ok(())
    }

    #[test]
    fn a_pool_frees_everything_when_it_goes() -> Result {
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        let Some((pool, maintenance)) = manual_pool()? else {
            return Ok(());
        };
        drop(pool.allocate(MIB)?);
        pool.work();
        drop(pool.allocate(64 * KIB)?);
        drop(pool);
        drop(maintenance);
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), live);
        Ok(())
    }

    /// A pool keeps what its heap freed while demand asks for it (the
    /// allocations of the window), and the worker gives it back once the window
    /// has passed with nobody asking.
    #[test]
    fn what_nobody_asks_for_goes_back_after_the_window() -> Result {
        let Some((pool, _maintenance)) = manual_pool()? else {
            return Ok(());
        };
        let len = 2 * MIB + 64 * KIB;
        let kept = pool.allocate(MIB)?;
        let before = pool.now_ms();
        drop(pool.allocate(len)?);
        let now = pool.now_ms();
        pool.work_at(now);
        assert_eq!(pooled_pages(&pool), len / PAGE_SIZE);
        let levels = pool.levels();
        assert_eq!(levels.in_use_pages, MIB / PAGE_SIZE);
        // Both allocations, unless a fifth of the window ended between them.
        assert!(levels.wanted_pages >= len / PAGE_SIZE);
        let released = pool.counters.released_bytes.load(Ordering::Relaxed);
        let window = pool.lists.lock().demand.window_ms();
        pool.work_at(before + window - window / 5 - 1);
        assert_eq!(pooled_pages(&pool), len / PAGE_SIZE);
        pool.work_at(now + window);
        assert_eq!(pooled_pages(&pool), 0);
        assert_eq!(
            pool.counters.released_bytes.load(Ordering::Relaxed) - released,
            len as u64
        );
        // The buffer still in use is no reason to keep anything.
        assert_eq!(pool.lists.lock().demand.wanted(now + window), 0);
        drop(kept);
        Ok(())
    }

    /// A long backlog (a churn's frees) is only zeroed at first: its chunks
    /// are handed out as not clean, and to the hook for unclean chunks
    /// (the uncached heap's flush); once the backlog is short the worker
    /// cleans again, and what it only zeroed it cleans afterwards.
    #[test]
    fn a_long_backlog_is_zeroed_first_and_cleaned_afterwards() -> Result {
        let Some((pool, _maintenance)) = manual_pool()? else {
            return Ok(());
        };
        if !pool.cleans() {
            support::skip(c"the pool does not clean on this boot");
            return Ok(());
        }
        let len = (BEHIND_PAGES * PAGE_SIZE) + 6 * MIB;
        drop(pool.allocate(len)?);
        assert!(pool.step());
        let chunk = 2 * MIB / PAGE_SIZE;
        assert_eq!(pool.levels().unclean_pages, chunk);
        let unclean = Cell::new(0);
        let memory = pool.allocate_then(2 * MIB, |_| {
            unclean.set(unclean.get() + 1);
            Ok(())
        })?;
        assert!(!memory.is_clean());
        assert_eq!(unclean.get(), 1);
        assert_eq!(nonzero_pages(memory.chunks())?, 0);
        drop(memory);
        pool.work_at(pool.now_ms());
        let levels = pool.levels();
        assert_eq!((levels.unclean_pages, levels.backlog_pages), (0, 0));
        assert_eq!(levels.zeroed_pages * PAGE_SIZE, len);
        assert!(pool.allocate(len)?.is_clean());
        Ok(())
    }

    /// The worker thread zeroes what is freed, in the background, and
    /// stops before its pool goes.
    #[test]
    fn the_worker_thread_zeroes_freed_chunks() -> Result {
        let maintenance = MaintenanceDevice::new()?;
        let pool = PagePool::new(
            PoolMode::Background,
            Zone::Any,
            maintenance.cleaner(),
            c"kunit",
        )?;
        if pool.pool().limit_bytes() == 0 || dma_heap::mem_accounting() {
            support::skip(c"the page pool is off on this boot");
            return Ok(());
        }
        drop(pool.pool().allocate(MIB)?);
        let zeroed = || pool.pool().levels().zeroed_pages == MIB / PAGE_SIZE;
        assert!(support::within_a_second(zeroed));
        drop(pool);
        drop(maintenance);
        Ok(())
    }

    /// Each zone has its own pool: a DMA32 pool serves its pooled chunks
    /// and fresh ones of its zone, below 4 GiB, counted in the zone's own
    /// live bytes, not in the other zone's.
    #[test]
    fn a_dma32_pool_keeps_to_its_zone() -> Result {
        if !cfg!(CONFIG_ZONE_DMA32) {
            support::skip(c"no ZONE_DMA32 in this kernel");
            return Ok(());
        }
        let (any, dma32) = (
            LIVE_BYTES.load(Ordering::Relaxed),
            LIVE_DMA32_BYTES.load(Ordering::Relaxed),
        );
        let Some((pool, maintenance)) = manual_pool_of(Zone::Dma32)? else {
            return Ok(());
        };
        assert_eq!(pool.zone(), Zone::Dma32);
        drop(pool.allocate(ONE_OF_EACH_ORDER)?);
        pool.work();
        let hits = pool.counters.hit_bytes.load(Ordering::Relaxed);
        let (pooled, fresh) = (
            pool.allocate(ONE_OF_EACH_ORDER)?,
            pool.allocate(ONE_OF_EACH_ORDER)?,
        );
        // One pooled, one fresh: all of the zone.
        assert_eq!(
            pool.counters.hit_bytes.load(Ordering::Relaxed) - hits,
            ONE_OF_EACH_ORDER as u64
        );
        let below = |memory: &Memory| memory.chunks().iter().all(|c| c.phys_end() <= DMA32_END);
        assert!(below(&pooled) && below(&fresh));
        assert_eq!(
            LIVE_DMA32_BYTES.load(Ordering::Relaxed),
            dma32 + 2 * ONE_OF_EACH_ORDER + pool.levels().held_bytes()
        );
        assert_eq!(LIVE_BYTES.load(Ordering::Relaxed), any);
        drop((pooled, fresh));
        drop(pool);
        drop(maintenance);
        assert_eq!(LIVE_DMA32_BYTES.load(Ordering::Relaxed), dma32);
        Ok(())
    }
}
