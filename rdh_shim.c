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

/* The log line for the first access of a buffer outside a SYNC bracket. */
void rdh_report_unbracketed(u64 inode, size_t size, bool write)
{
	pr_info_ratelimited("%s[%d] %s dma-buf %llu (%zu bytes) outside DMA_BUF_IOCTL_SYNC; the heap keeps it coherent, but other heaps may not\n",
			    current->comm, task_pid_nr(current), write ? "wrote" : "read",
			    (unsigned long long)inode, size);
}

/* The explicit fence API and CPU access by range; implemented in Rust
 * (c_api.rs). */
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_reserve);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_commit);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_cancel);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_until);
EXPORT_SYMBOL_GPL(rdh_dma_buf_begin_cpu_access_range);
EXPORT_SYMBOL_GPL(rdh_dma_buf_end_cpu_access_range);


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

/*
 * The page pool's worker (glue.rs, Worker): a kthread, because zeroing is
 * background work that must yield to everything else (nice 19, freezable),
 * which neither the kernel crate (no kthread) nor a workqueue item can be.
 */
struct rdh_worker {
	struct task_struct *task;
	wait_queue_head_t wait;
	atomic_t kicked;
	/* A kick wakes the thread from this timer, one tick later: freeing
	 * pays for arming a local timer, not for waking another CPU. */
	struct timer_list timer;
	void (*job)(void *data);
	void *data;
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
			worker->job(worker->data);
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

int rdh_worker_run(struct rdh_worker *worker, void (*job)(void *data),
		   void *data, const char *name)
{
	struct task_struct *task;

	worker->job = job;
	worker->data = data;
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

/* Returns once the thread (if any) has exited: the job is not running and
 * will not run again. */
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

