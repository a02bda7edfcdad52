// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust module: only what Rust cannot reach through exported
 * symbols (static inlines, macros, a string module parameter). No logic here.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-fence.h>
#include <linux/dma-resv.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/freezer.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/sched/signal.h>
#include <linux/shrinker.h>
#include <linux/swiotlb.h>
#include <linux/vmstat.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "rdh_dma_device.h"
#include "rdh_shim.h"

/* Rust module parameters are integers only; the heap name is a string. */
static char heap_name[64] = "rust_system";
module_param_string(heap_name, heap_name, sizeof(heap_name), 0444);
MODULE_PARM_DESC(heap_name,
		 "Name of the heap under /dev/dma_heap (default: rust_system)");

const char *rdh_heap_name(void)
{
	return heap_name;
}

/*
 * The uncached heap (write-combined CPU mappings) is registered next to the
 * cached one unless turned off; its name is the cached heap's plus
 * "_uncached", made once at load (the dma-heap core keeps the pointer).
 */
static bool uncached_heap = true;
module_param(uncached_heap, bool, 0444);
MODULE_PARM_DESC(uncached_heap,
		 "Also register /dev/dma_heap/<heap_name>_uncached, write-combined CPU mappings (default: Y)");

static char uncached_heap_name[sizeof(heap_name) + sizeof("_uncached")];

const char *rdh_uncached_heap_name(void)
{
	if (!uncached_heap)
		return NULL;
	snprintf(uncached_heap_name, sizeof(uncached_heap_name), "%s_uncached", heap_name);
	return uncached_heap_name;
}

/*
 * A parameter that is one of two words (the first is the default), kept as
 * a bool: anything else is refused with -EINVAL. Writable at run time; a
 * buffer keeps what it was allocated with.
 */
struct rdh_choice {
	const char *word[2];
	bool second;
};

static int choice_set(const char *val, const struct kernel_param *kp)
{
	struct rdh_choice *choice = kp->arg;

	if (sysfs_streq(val, choice->word[0]))
		WRITE_ONCE(choice->second, false);
	else if (sysfs_streq(val, choice->word[1]))
		WRITE_ONCE(choice->second, true);
	else
		return -EINVAL;
	return 0;
}

static int choice_get(char *buf, const struct kernel_param *kp)
{
	const struct rdh_choice *choice = kp->arg;

	return sysfs_emit(buf, "%s\n", choice->word[READ_ONCE(choice->second)]);
}

static const struct kernel_param_ops choice_ops = {
	.set = choice_set,
	.get = choice_get,
};

/* sync_policy: tracked (default) or always. */
static struct rdh_choice sync_policy = { .word = { "tracked", "always" } };
module_param_cb(sync_policy, &choice_ops, &sync_policy, 0644);
MODULE_PARM_DESC(sync_policy,
		 "Cache maintenance for new buffers: tracked (on ownership changes only, default) or always (like the system heap)");

bool rdh_sync_policy_always(void)
{
	return READ_ONCE(sync_policy.second);
}

/*
 * unbracketed_cpu: trap (default) or trust. Under trap, user mappings of
 * tracked buffers get their page-table entries from a fault handler, and
 * lose them whenever a device may change what the CPU should see: an
 * access without DMA_BUF_IOCTL_SYNC then faults, and the fault does what
 * SYNC_START would (ownership.rs, "User space that skips SYNC"). Under
 * trust, mmap maps everything at once, and user space that skips SYNC may
 * see stale data.
 */
static struct rdh_choice unbracketed_cpu = { .word = { "trap", "trust" } };
module_param_cb(unbracketed_cpu, &choice_ops, &unbracketed_cpu, 0644);
MODULE_PARM_DESC(unbracketed_cpu,
		 "User access without DMA_BUF_IOCTL_SYNC: trap (page faults tell the heap, default) or trust (user space brackets every access)");

bool rdh_trap_user_access(void)
{
	return !READ_ONCE(unbracketed_cpu.second);
}

/*
 * Per-buffer debugfs files cost a file creation and removal per buffer
 * (about as much as the rest of a small allocation), so they are a debug
 * feature, off by default; writable at run time, applies to new buffers.
 */
static bool debugfs_buffers;
module_param(debugfs_buffers, bool, 0644);
MODULE_PARM_DESC(debugfs_buffers,
		 "Create /sys/kernel/debug/rust_dmabuf_heap/<heap>/buffers/<ino> for new buffers (default: N)");

bool rdh_debugfs_buffers_enabled(void)
{
	return READ_ONCE(debugfs_buffers);
}

/*
 * The heap's own DMA device: non-coherent, direct-mapped, 64-bit mask. Every
 * buffer is mapped to it once (without syncing), so that cache maintenance
 * can run at the moment ownership changes, even when no importer has the
 * buffer mapped (the invalidate deferred from an unmap to the next CPU
 * access). arm64 cleans and invalidates by physical address, so the device
 * used does not matter for non-coherent importers.
 */
struct device *rdh_maintenance_device_create(void)
{
	return rdh_platform_dma_device(KBUILD_MODNAME, PLATFORM_DEVID_AUTO, false);
}

/* Undoes rdh_maintenance_device_create() when module init fails later. */
void rdh_maintenance_device_destroy(struct device *dev)
{
	platform_device_unregister(to_platform_device(dev));
}

bool rdh_dev_is_dma_coherent(struct device *dev)
{
	return dev_is_dma_coherent(dev);
}

/*
 * Whether mappings for @dev may bounce through swiotlb slots, and why. The
 * DMA API then copies between the pages and the slot in the mapping's own
 * map, unmap and sync calls, and only without DMA_ATTR_SKIP_CPU_SYNC. A
 * finite dma_max_mapping_size() is how the DMA layer itself says that it
 * may bounce (dma-direct with swiotlb in use, untrusted devices behind an
 * IOMMU); the two named cases come first for a precise reason.
 */
int rdh_dma_bounce_reason(struct device *dev)
{
	if (is_swiotlb_force_bounce(dev))
		return RDH_BOUNCE_FORCED;
	if (dma_addressing_limited(dev))
		return RDH_BOUNCE_ADDRESSING_LIMITED;
	if (dma_max_mapping_size(dev) != SIZE_MAX)
		return RDH_BOUNCE_LIMITED_MAPPING;
	return RDH_BOUNCE_NONE;
}

/* The longest scatterlist segment @dev can map, in whole pages. */
size_t rdh_dma_max_segment(struct device *dev)
{
	size_t max = min_t(size_t, dma_max_mapping_size(dev), dma_get_max_seg_size(dev));

	return max_t(size_t, max & PAGE_MASK, PAGE_SIZE);
}

/* Rust's way to name the module changed between 7.2 and 7.3; C's did not. */
struct module *rdh_this_module(void)
{
	return THIS_MODULE;
}

/* A registered heap can never be removed: refuse rmmod from then on. */
void rdh_pin_module(void)
{
	__module_get(THIS_MODULE);
}

bool rdh_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

unsigned long rdh_totalram_pages(void)
{
	return totalram_pages();
}

/*
 * What the kernel could hand out without swapping, as MemAvailable says,
 * less free CMA pages: they serve only movable allocations, and a heap
 * buffer's pages are not movable.
 */
long rdh_available_pages(void)
{
	return si_mem_available() - (long)global_zone_page_state(NR_FREE_CMA_PAGES);
}

void rdh_sg_set_page(struct scatterlist *sg, struct page *page,
		     unsigned int len, unsigned int offset)
{
	sg_set_page(sg, page, len, offset);
}

struct page *rdh_sg_page(struct scatterlist *sg)
{
	return sg_page(sg);
}

struct page *rdh_nth_page(struct page *page, unsigned long n)
{
	return page + n;
}

int rdh_dma_map_sgtable(struct device *dev, struct sg_table *sgt,
			enum dma_data_direction dir, unsigned long attrs)
{
	return dma_map_sgtable(dev, sgt, dir, attrs);
}

void rdh_dma_unmap_sgtable(struct device *dev, struct sg_table *sgt,
			   enum dma_data_direction dir, unsigned long attrs)
{
	dma_unmap_sgtable(dev, sgt, dir, attrs);
}

void rdh_dma_sync_sgtable_for_cpu(struct device *dev, struct sg_table *sgt,
				  enum dma_data_direction dir)
{
	dma_sync_sgtable_for_cpu(dev, sgt, dir);
}

void rdh_dma_sync_sgtable_for_device(struct device *dev, struct sg_table *sgt,
				     enum dma_data_direction dir)
{
	dma_sync_sgtable_for_device(dev, sgt, dir);
}

/* The file page (buffer page) a fault is for. */
unsigned long rdh_vmf_pgoff(struct vm_fault *vmf)
{
	return vmf->pgoff;
}

/*
 * Syncs bytes @offset..@offset + @len of the buffer that @sgt maps for
 * @dev (cleans if @for_device, else invalidates): the DMA segments hold
 * the buffer's bytes in order, however the mapping merged them, so the
 * range is found by walking them.
 */
void rdh_dma_sync_sgtable_range(struct device *dev, struct sg_table *sgt,
				size_t offset, size_t len,
				enum dma_data_direction dir, bool for_device)
{
	struct scatterlist *sg;
	size_t at = 0;
	int i;

	for_each_sgtable_dma_sg(sgt, sg, i) {
		size_t seg_len = sg_dma_len(sg);
		size_t from, to;

		if (at >= offset + len)
			break;
		from = max(offset, at);
		to = min(offset + len, at + seg_len);
		if (from < to) {
			if (for_device)
				dma_sync_single_range_for_device(
					dev, sg_dma_address(sg), from - at,
					to - from, dir);
			else
				dma_sync_single_range_for_cpu(
					dev, sg_dma_address(sg), from - at,
					to - from, dir);
		}
		at += seg_len;
	}
}

/*
 * A private mapping that may become writable is copy-on-write, which a pfn
 * mapping cannot be: vmf_insert_pfn() refuses it, and remap_pfn_range()
 * would store the first page's PFN in vm_pgoff (a physical address, shown
 * in /proc/PID/maps) and refuse to map part of the vma. A read-only one
 * loses VM_MAYWRITE, so it can never become writable; a writable one, whose
 * writes could never reach a device anyway, is refused.
 */
int rdh_vma_forbid_cow(struct vm_area_struct *vma)
{
	/* is_cow_mapping(), which 7.3 renamed */
	if ((vma->vm_flags & (VM_SHARED | VM_MAYWRITE)) != VM_MAYWRITE)
		return 0;
	if (vma->vm_flags & VM_WRITE)
		return -EINVAL;
	vm_flags_clear(vma, VM_MAYWRITE);
	return 0;
}

/*
 * A user mapping whose entries come from the fault handler in @ops: none
 * at mmap time (not copy-on-write: see rdh_vma_forbid_cow()).
 */
void rdh_vma_trap(struct vm_area_struct *vma, const struct vm_operations_struct *ops)
{
	vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = ops;
}

/*
 * Maps one page from the fault handler, read-only or writable. A shared
 * writable vma with pfn_mkwrite has a read-only vm_page_prot (write
 * notification), so writable entries take the vma's full protection.
 */
vm_fault_t rdh_vma_insert_pfn(struct vm_area_struct *vma, unsigned long addr,
			      unsigned long pfn, bool writable)
{
	pgprot_t prot = vma->vm_page_prot;

	if (writable)
		prot = pgprot_modify(prot, vm_get_page_prot(vma->vm_flags));
	return vmf_insert_pfn_prot(vma, addr, pfn, prot);
}

/* Removes every entry of one vma (to map it again writable). */
void rdh_vma_zap(struct vm_area_struct *vma)
{
	zap_special_vma_range(vma, vma->vm_start, vma->vm_end - vma->vm_start);
}

/* Removes every user entry of the buffer, in every process. */
void rdh_revoke_user_mappings(struct dma_buf *dmabuf)
{
	unmap_mapping_range(dmabuf->file->f_mapping, 0, 0, 1);
}

/* The log line for the first access of a buffer outside a SYNC bracket. */
void rdh_report_unbracketed(struct dma_buf *dmabuf, bool write)
{
	pr_info_ratelimited("%s[%d] %s dma-buf %llu (%zu bytes) outside DMA_BUF_IOCTL_SYNC; the heap keeps it coherent, but other heaps may not\n",
			    current->comm, task_pid_nr(current), write ? "wrote" : "read",
			    (unsigned long long)file_inode(dmabuf->file)->i_ino, dmabuf->size);
}

unsigned long rdh_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}

/* Alias maintenance for the kernel mapping (a no-op on arm64's PIPT caches). */
void rdh_invalidate_kernel_vmap_range(void *vaddr, int size)
{
	invalidate_kernel_vmap_range(vaddr, size);
}

void rdh_flush_kernel_vmap_range(void *vaddr, int size)
{
	flush_kernel_vmap_range(vaddr, size);
}

void *rdh_vmap_pages(struct page **pages, unsigned int count, bool writecombine)
{
	return vmap(pages, count, VM_MAP,
		    writecombine ? pgprot_writecombine(PAGE_KERNEL) : PAGE_KERNEL);
}

/* Makes the user mapping write-combined (before its entries exist). */
void rdh_vma_set_writecombine(struct vm_area_struct *vma)
{
	vma->vm_page_prot = pgprot_writecombine(vma->vm_page_prot);
}

u64 rdh_dma_buf_inode(struct dma_buf *dmabuf)
{
	return file_inode(dmabuf->file)->i_ino;
}

void rdh_iosys_map_set_vaddr(struct iosys_map *map, void *vaddr)
{
	iosys_map_set_vaddr(map, vaddr);
}

/* The explicit fence API and CPU access by range; implemented in Rust
 * (dmabuf.rs, fence_hooks.rs, buffer.rs). */
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_reserve);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_commit);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_cancel);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_until);
EXPORT_SYMBOL_GPL(rdh_dma_buf_begin_cpu_access_range);
EXPORT_SYMBOL_GPL(rdh_dma_buf_end_cpu_access_range);

struct dma_fence *rdh_dma_fence_get(struct dma_fence *fence)
{
	return dma_fence_get(fence);
}

void rdh_dma_fence_put(struct dma_fence *fence)
{
	dma_fence_put(fence);
}

bool rdh_dma_fence_is_signaled(struct dma_fence *fence)
{
	return dma_fence_is_signaled(fence);
}

/* Interruptible: a CPU access may be cancelled by a signal and retried. */
long rdh_dma_fence_wait(struct dma_fence *fence)
{
	return dma_fence_wait(fence, true);
}

/*
 * What DMA_BUF_IOCTL_SYNC would wait for after begin_cpu_access, waited for
 * before it instead, so that the decision sees the devices' work complete.
 */
long rdh_resv_wait_for_cpu(struct dma_resv *resv, bool write)
{
	return dma_resv_wait_timeout(resv, dma_resv_usage_rw(write), true, MAX_SCHEDULE_TIMEOUT);
}

/*
 * The write fences of @resv, signalled or not (the locked iterator; the
 * unlocked one skips signalled fences): up to @max (context, seqno) pairs
 * into @ids. Returns how many there are, or -EINTR.
 */
int rdh_resv_write_fences(struct dma_resv *resv, u64 *ids, unsigned int max)
{
	struct dma_resv_iter cursor;
	struct dma_fence *fence;
	int count = 0, ret;

	ret = dma_resv_lock_interruptible(resv, NULL);
	if (ret)
		return ret;
	dma_resv_for_each_fence(&cursor, resv, DMA_RESV_USAGE_WRITE, fence) {
		if (dma_resv_iter_usage(&cursor) != DMA_RESV_USAGE_WRITE)
			continue;
		if (count < max) {
			ids[2 * count] = fence->context;
			ids[2 * count + 1] = fence->seqno;
		}
		count++;
	}
	dma_resv_unlock(resv);
	return count;
}


/*
 * The page pool (pool.rs): its size limit, the intrusive lists it keeps
 * chunks on (page->lru of the head page, as the system heaps of Android and
 * TTM's pool do), the counters that make pooled pages reclaimable kernel
 * memory, and the two callers the core needs: a low-priority kthread that
 * zeroes freed chunks, and a shrinker.
 */
/* Defined in Rust (pool.rs). */
void rdh_pool_work(void *pool);
unsigned long rdh_pool_count(void *pool);
unsigned long rdh_pool_scan(void *pool, unsigned long nr_pages);

static int pool_limit_mib = -1;
module_param(pool_limit_mib, int, 0644);
MODULE_PARM_DESC(pool_limit_mib,
		 "Most memory kept zeroed for new buffers, in MiB: -1 (default) for 1/16 of RAM, 0 disables the pool; a lower limit applies from the next free on, which also releases what the pool holds beyond it");

unsigned long rdh_pool_limit_bytes(void)
{
	int mib = READ_ONCE(pool_limit_mib);

	if (mib < 0)
		return (totalram_pages() / 16) << PAGE_SHIFT;
	return (unsigned long)mib << 20;
}

void rdh_page_list_init(struct list_head *list)
{
	INIT_LIST_HEAD(list);
}

void rdh_page_list_push(struct list_head *list, struct page *page,
			unsigned int order)
{
	set_page_private(page, order);
	list_add(&page->lru, list);
}

struct page *rdh_page_list_pop(struct list_head *list, unsigned int *order)
{
	struct page *page = list_first_entry_or_null(list, struct page, lru);

	if (page) {
		list_del(&page->lru);
		*order = page_private(page);
		set_page_private(page, 0);
	}
	return page;
}

/* Pooled pages are reclaimable (the shrinker gives them back): MemAvailable
 * counts them, and no memory cgroup is charged for them. */
void rdh_pool_account(struct page *page, long nr_pages)
{
	mod_node_page_state(page_pgdat(page), NR_KERNEL_MISC_RECLAIMABLE,
			    nr_pages);
}

void rdh_clear_pages(struct page *page, unsigned int order)
{
	unsigned long i;

	for (i = 0; i < (1UL << order); i++)
		clear_highpage(page + i);
	cond_resched();
}

/* Cleans @size bytes at @page to the point of coherency, by mapping them
 * for @dev (a non-coherent device: the map cleans) and unmapping without a
 * sync. */
bool rdh_dma_clean_pages(struct device *dev, struct page *page, size_t size)
{
	dma_addr_t addr = dma_map_page(dev, page, 0, size, DMA_TO_DEVICE);

	if (dma_mapping_error(dev, addr))
		return false;
	dma_unmap_page_attrs(dev, addr, size, DMA_TO_DEVICE,
			     DMA_ATTR_SKIP_CPU_SYNC);
	return true;
}

/* Cleans and invalidates @size bytes at @page (the map cleans, the unmap
 * for a bidirectional mapping invalidates): no line of them stays cached. */
bool rdh_dma_flush_pages(struct device *dev, struct page *page, size_t size)
{
	dma_addr_t addr = dma_map_page(dev, page, 0, size, DMA_BIDIRECTIONAL);

	if (dma_mapping_error(dev, addr))
		return false;
	dma_unmap_page(dev, addr, size, DMA_BIDIRECTIONAL);
	return true;
}

/* Free pages an unmovable allocation can take (free CMA pages excluded). */
unsigned long rdh_free_pages(void)
{
	unsigned long free = global_zone_page_state(NR_FREE_PAGES);
	unsigned long cma = global_zone_page_state(NR_FREE_CMA_PAGES);

	return free > cma ? free - cma : 0;
}

unsigned long rdh_jiffies(void)
{
	return jiffies;
}

unsigned long rdh_ms_to_jiffies(unsigned int ms)
{
	return msecs_to_jiffies(ms);
}

bool rdh_time_before(unsigned long a, unsigned long b)
{
	return time_before(a, b);
}

struct rdh_worker {
	struct task_struct *task;
	wait_queue_head_t wait;
	atomic_t kicked;
	/* A kick wakes the thread from this timer, one tick later: freeing
	 * pays for arming a local timer, not for waking another CPU. */
	struct timer_list timer;
	void *pool;
};

static void rdh_worker_wake(struct timer_list *timer)
{
	struct rdh_worker *worker = container_of(timer, struct rdh_worker, timer);

	atomic_set(&worker->kicked, 1);
	wake_up(&worker->wait);
}

static int rdh_worker_thread(void *arg)
{
	struct rdh_worker *worker = arg;

	/* Zeroing is background work: it yields to everything else. */
	sched_set_normal(current, MAX_NICE);
	set_freezable();
	while (!kthread_should_stop()) {
		wait_event_freezable(worker->wait,
				     atomic_read(&worker->kicked) ||
				     kthread_should_stop());
		if (atomic_xchg(&worker->kicked, 0))
			rdh_pool_work(worker->pool);
	}
	return 0;
}

/* A worker that can be kicked at once and runs once started. */
struct rdh_worker *rdh_worker_create(void)
{
	struct rdh_worker *worker = kzalloc(sizeof(*worker), GFP_KERNEL);

	if (worker) {
		init_waitqueue_head(&worker->wait);
		timer_setup(&worker->timer, rdh_worker_wake, 0);
	}
	return worker;
}

int rdh_worker_run(struct rdh_worker *worker, void *pool, const char *name)
{
	struct task_struct *task;

	worker->pool = pool;
	task = kthread_run(rdh_worker_thread, worker, "rdh-pool/%s", name);
	if (IS_ERR(task))
		return PTR_ERR(task);
	worker->task = task;
	return 0;
}

void rdh_worker_kick(struct rdh_worker *worker)
{
	if (!timer_pending(&worker->timer) && !atomic_read(&worker->kicked))
		mod_timer(&worker->timer, jiffies + 1);
}

/* Returns once the thread (if any) has exited: rdh_pool_work is not
 * running and will not run again. */
void rdh_worker_halt(struct rdh_worker *worker)
{
	timer_shutdown_sync(&worker->timer);
	if (worker->task)
		kthread_stop(worker->task);
	worker->task = NULL;
}

void rdh_worker_destroy(struct rdh_worker *worker)
{
	rdh_worker_halt(worker);
	kfree(worker);
}

static unsigned long rdh_shrinker_count(struct shrinker *shrinker,
					struct shrink_control *sc)
{
	unsigned long pages = rdh_pool_count(shrinker->private_data);

	return pages ? pages : SHRINK_EMPTY;
}

static unsigned long rdh_shrinker_scan(struct shrinker *shrinker,
				       struct shrink_control *sc)
{
	unsigned long freed = rdh_pool_scan(shrinker->private_data,
					    sc->nr_to_scan);

	return freed ? freed : SHRINK_STOP;
}

struct shrinker *rdh_shrinker_create(void *pool, const char *name)
{
	struct shrinker *shrinker = shrinker_alloc(0, "rdh-pool-%s", name);

	if (!shrinker)
		return ERR_PTR(-ENOMEM);
	shrinker->count_objects = rdh_shrinker_count;
	shrinker->scan_objects = rdh_shrinker_scan;
	shrinker->seeks = DEFAULT_SEEKS;
	shrinker->private_data = pool;
	shrinker_register(shrinker);
	return shrinker;
}

/* Returns once no callback runs any more. */
void rdh_shrinker_destroy(struct shrinker *shrinker)
{
	shrinker_free(shrinker);
}

/*
 * An IRQ-safe spinlock for Rust (irq_lock.rs): spin_lock_irqsave() and its
 * kin are macros, and 7.2's kernel crate has no such lock.
 */
unsigned long rdh_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void rdh_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

bool rdh_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	return spin_trylock_irqsave(lock, *flags);
}
