// SPDX-License-Identifier: GPL-2.0

//! Blocks of physically contiguous pages, of any order, and lists of them.
//!
//! C header: [`include/linux/gfp.h`](srctree/include/linux/gfp.h)
//!
//! [`kernel::page::Page`] owns a single page; a [`PageBlock`] owns
//! `2^order` of them, allocated at once (TODO(page-order) in
//! `rust/todo.rst`). A [`BlockList`] keeps blocks on their head page's
//! `lru` link, as page pools do, so that keeping a block allocates nothing.

use crate::bindings;
use core::{
    ops::{BitAnd, BitOr, Not},
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};
use kernel::{alloc::flags::GFP_KERNEL, page::PAGE_SIZE, prelude::*, types::Opaque};

/// Allocation flags (`gfp_t`), with the modifiers [`kernel::alloc::Flags`]
/// does not name (TODO(gfp-flags) in `rust/todo.rst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gfp(bindings::gfp_t);

impl Gfp {
    /// `GFP_HIGHUSER`: user pages, which may be in high memory.
    pub const HIGHUSER: Gfp = Gfp(bindings::GFP_HIGHUSER);
    /// `GFP_USER`: user pages, not in high memory (the zone modifiers
    /// such as [`Gfp::DMA32`] combine with this, not with `HIGHUSER`).
    pub const USER: Gfp = Gfp(bindings::GFP_USER);
    /// `__GFP_DMA32`: from `ZONE_DMA32` or below, where the kernel has
    /// that zone; without it (`CONFIG_ZONE_DMA32=n`) any page.
    pub const DMA32: Gfp = Gfp(bindings::__GFP_DMA32);
    /// `__GFP_ZERO`: zeroed.
    pub const ZERO: Gfp = Gfp(bindings::__GFP_ZERO);
    /// `__GFP_NOWARN`: no warning on failure.
    pub const NOWARN: Gfp = Gfp(bindings::__GFP_NOWARN);
    /// `__GFP_NORETRY`: give up after light reclaim.
    pub const NORETRY: Gfp = Gfp(bindings::__GFP_NORETRY);
    /// `__GFP_RETRY_MAYFAIL`: retry, but fail rather than OOM-kill.
    pub const RETRY_MAYFAIL: Gfp = Gfp(bindings::__GFP_RETRY_MAYFAIL);
    /// `__GFP_RECLAIM`: direct and background reclaim.
    pub const RECLAIM: Gfp = Gfp(bindings::__GFP_RECLAIM);
    /// `__GFP_COMP`: a compound page.
    pub const COMP: Gfp = Gfp(bindings::__GFP_COMP);
    /// `__GFP_ACCOUNT`: charged to the memory cgroup.
    pub const ACCOUNT: Gfp = Gfp(bindings::__GFP_ACCOUNT);
}

impl BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

impl BitAnd for Gfp {
    type Output = Gfp;
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}

impl Not for Gfp {
    type Output = Gfp;
    fn not(self) -> Gfp {
        Gfp(!self.0)
    }
}

/// `2^order` physically contiguous pages, owned.
///
/// A block may be counted, by its size in bytes, in a counter of its
/// owner's for as long as it exists ([`Self::counted_in`]).
///
/// # Invariants
///
/// `page` is the head of a block of `order` allocated by `alloc_pages` and
/// owned by this value; if `counter` is set, the block's size is in it.
pub struct PageBlock {
    page: NonNull<bindings::page>,
    order: u32,
    counter: Option<&'static AtomicUsize>,
}

// SAFETY: A block is plain memory owned by one object; freeing it from any
// thread is allowed.
unsafe impl Send for PageBlock {}
// SAFETY: Shared access only reads the page pointer and order.
unsafe impl Sync for PageBlock {}

impl PageBlock {
    /// Allocates a block of `order` with `gfp`; `None` if there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::page_block::{Gfp, PageBlock};
    ///
    /// let block = PageBlock::alloc(Gfp::HIGHUSER | Gfp::ZERO, 2).ok_or(ENOMEM)?;
    /// assert_eq!((block.page_count(), block.size()), (4, 4 * kernel::page::PAGE_SIZE));
    /// let mut page = KBox::new([0xffu8; kernel::page::PAGE_SIZE], GFP_KERNEL)?;
    /// block.read_page(3, &mut page);
    /// assert!(page.iter().all(|&b| b == 0));
    /// block.fill_page(3, 0x5a);
    /// block.read_page(3, &mut page);
    /// assert!(page.iter().all(|&b| b == 0x5a));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn alloc(gfp: Gfp, order: u32) -> Option<Self> {
        // SAFETY: `alloc_pages` may be called with any flags and order; it
        // returns NULL or an exclusively owned block.
        let page = NonNull::new(unsafe { bindings::alloc_pages(gfp.0, order) })?;
        // INVARIANT: Just allocated with `order`, and ours; not counted.
        Some(Self {
            page,
            order,
            counter: None,
        })
    }

    /// Counts the block's size in `counter` until it is freed (instead of
    /// any counter it was counted in before).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::sync::atomic::{AtomicUsize, Ordering};
    /// use kernel::page_block::{Gfp, PageBlock};
    ///
    /// static LIVE: AtomicUsize = AtomicUsize::new(0);
    /// let block = PageBlock::alloc(Gfp::HIGHUSER, 1).ok_or(ENOMEM)?.counted_in(&LIVE);
    /// assert_eq!(LIVE.load(Ordering::Relaxed), block.size());
    /// drop(block);
    /// assert_eq!(LIVE.load(Ordering::Relaxed), 0);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn counted_in(mut self, counter: &'static AtomicUsize) -> Self {
        if self.counter.is_some_and(|c| core::ptr::eq(c, counter)) {
            return self;
        }
        self.uncount();
        counter.fetch_add(self.size(), Ordering::Relaxed);
        // INVARIANT: Counted just above.
        self.counter = Some(counter);
        self
    }

    fn uncount(&mut self) {
        if let Some(counter) = self.counter.take() {
            counter.fetch_sub(self.size(), Ordering::Relaxed);
        }
    }

    /// The block's order.
    pub fn order(&self) -> u32 {
        self.order
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Its number of pages.
    pub fn page_count(&self) -> usize {
        1 << self.order
    }

    /// Page `n` of the block. Panics if `n` is out of range.
    pub(crate) fn nth_page(&self, n: usize) -> *mut bindings::page {
        assert!(n < self.page_count());
        // SAFETY: The block has `page_count()` consecutive `struct page`s
        // (type invariant), and `n` is in range.
        unsafe { self.page.as_ptr().add(n) }
    }

    /// The head page.
    pub(crate) fn head(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// The page frame number of page `n`. Panics if `n` is out of range.
    pub fn pfn(&self, n: usize) -> usize {
        // SAFETY: A page of the block.
        unsafe { bindings::page_to_pfn(self.nth_page(n)) }
    }

    /// The physical address just past the block's last byte.
    pub fn phys_end(&self) -> u64 {
        ((self.pfn(0) + self.page_count()) as u64) << kernel::page::PAGE_SHIFT
    }

    /// Zeroes every page (through temporary kernel mappings), then yields
    /// the CPU if a reschedule is due.
    pub fn zero(&self) {
        for n in 0..self.page_count() {
            // SAFETY: A page of the block, owned by it.
            unsafe { bindings::clear_highpage(self.nth_page(n)) };
        }
        // SAFETY: Process context, the only one that frees or zeroes
        // blocks of pages.
        unsafe { bindings::cond_resched() };
    }

    /// Copies page `n` into `out`.
    pub fn read_page(&self, n: usize, out: &mut [u8; PAGE_SIZE]) {
        // SAFETY: A page of the block, owned by it.
        let vaddr = unsafe { bindings::kmap_local_page(self.nth_page(n)) };
        // SAFETY: `vaddr` maps `PAGE_SIZE` readable bytes; `out` is a
        // distinct kernel buffer of the same size.
        unsafe { core::ptr::copy_nonoverlapping(vaddr.cast::<u8>(), out.as_mut_ptr(), PAGE_SIZE) };
        // SAFETY: Mapped just above.
        unsafe { bindings::kunmap_local(vaddr) };
    }

    /// Fills page `n` with `byte`.
    pub fn fill_page(&self, n: usize, byte: u8) {
        // SAFETY: A page of the block, owned by it.
        let vaddr = unsafe { bindings::kmap_local_page(self.nth_page(n)) };
        // SAFETY: `vaddr` maps `PAGE_SIZE` writable bytes.
        unsafe { core::ptr::write_bytes(vaddr.cast::<u8>(), byte, PAGE_SIZE) };
        // SAFETY: Mapped just above.
        unsafe { bindings::kunmap_local(vaddr) };
    }

    /// Counts the block's pages (`pages > 0`) or stops counting them
    /// (`pages < 0`) as reclaimable kernel memory of its node
    /// (`NR_KERNEL_MISC_RECLAIMABLE`): `MemAvailable` includes them.
    pub fn account_reclaimable(&self, pages: isize) {
        // SAFETY: A live page; the counter update is atomic.
        unsafe {
            bindings::mod_node_page_state(
                bindings::page_pgdat(self.page.as_ptr()),
                bindings::node_stat_item_NR_KERNEL_MISC_RECLAIMABLE,
                pages,
            )
        };
    }
}

impl AsRef<PageBlock> for PageBlock {
    fn as_ref(&self) -> &PageBlock {
        self
    }
}

impl Drop for PageBlock {
    fn drop(&mut self) {
        self.uncount();
        // SAFETY: We own this block of `order` (type invariant).
        unsafe { bindings::__free_pages(self.page.as_ptr(), self.order) };
    }
}

/// Blocks kept on their head page's `lru` link (with the order in the
/// page's private field), newest first, counted in the list's counter.
///
/// # Invariants
///
/// `head` is an initialised list (boxed: it points to itself when empty)
/// of `len` head pages of blocks that the list owns, each with its order in
/// `page->private` and counted in `counter` if that is set.
pub struct BlockList {
    head: Pin<KBox<Opaque<bindings::list_head>>>,
    len: usize,
    counter: Option<&'static AtomicUsize>,
}

// SAFETY: The list owns its blocks, which may be freed from any thread.
unsafe impl Send for BlockList {}

impl BlockList {
    /// An empty list whose blocks are counted in `counter`, if given.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::page_block::{BlockList, Gfp, PageBlock};
    ///
    /// let mut list = BlockList::new(None)?;
    /// list.push(PageBlock::alloc(Gfp::HIGHUSER, 0).ok_or(ENOMEM)?);
    /// list.push(PageBlock::alloc(Gfp::HIGHUSER, 4).ok_or(ENOMEM)?);
    /// assert_eq!(list.len(), 2);
    /// // Newest first.
    /// assert_eq!(list.pop().map(|block| block.order()), Some(4));
    /// assert_eq!(list.pop().map(|block| block.order()), Some(0));
    /// assert!(list.pop().is_none());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(counter: Option<&'static AtomicUsize>) -> Result<Self> {
        // SAFETY: `INIT_LIST_HEAD` initialises the head in place, where the
        // box keeps it.
        let head = KBox::pin_init(
            unsafe {
                Opaque::ffi_init(|head: *mut bindings::list_head| bindings::INIT_LIST_HEAD(head))
            },
            GFP_KERNEL,
        )?;
        // INVARIANT: Initialised empty.
        Ok(Self {
            head,
            len: 0,
            counter,
        })
    }

    /// How many blocks the list holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps `block`.
    pub fn push(&mut self, block: PageBlock) {
        let mut block = match self.counter {
            Some(counter) => block.counted_in(counter),
            None => block,
        };
        // The list counts it from here on.
        block.counter = None;
        let block = core::mem::ManuallyDrop::new(block);
        // SAFETY: The head page of a block we now own (its `lru` and
        // `private` are the owner's to use); the list is initialised.
        unsafe { bindings::page_block_list_add(self.head.get(), block.page.as_ptr(), block.order) };
        // INVARIANT: One more block on the list, counted if it counts.
        self.len += 1;
    }

    /// Takes the newest block back (still counted in the list's counter).
    pub fn pop(&mut self) -> Option<PageBlock> {
        let mut order = 0;
        // SAFETY: The list is initialised; what it holds are head pages of
        // blocks it owns, with their orders.
        let page =
            NonNull::new(unsafe { bindings::page_block_list_pop(self.head.get(), &mut order) })?;
        // INVARIANT: One block fewer on the list.
        self.len -= 1;
        // INVARIANT: The block leaves the list, to its new owner, with the
        // count the list kept for it.
        Some(PageBlock {
            page,
            order,
            counter: self.counter,
        })
    }
}

impl Drop for BlockList {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}
