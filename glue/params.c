// SPDX-License-Identifier: GPL-2.0
/*
 * The module parameters, in C: Rust module! parameters are integers only,
 * and these are a string, a name derived from it, and words.
 */
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "glue.h"

/*
 * The heaps' names. heap_name is the cached heap of any memory; the
 * siblings' names default to it plus the suffixes Android's libdmabufheap,
 * Codec2 and Rockchip MPP look for, and are filled in at load, so that
 * sysfs shows the names in use. A sibling whose switch (uncached_heap,
 * dma32_heaps) is off is not registered.
 */
#define RDH_NAME_MAX 64
static char heap_name[RDH_NAME_MAX] = "rust_system";
module_param_string(heap_name, heap_name, sizeof(heap_name), 0444);
MODULE_PARM_DESC(heap_name,
		 "Name of the heap under /dev/dma_heap (default: rust_system; system to stand in for the upstream system heap)");

static bool uncached_heap = true;
module_param(uncached_heap, bool, 0444);
MODULE_PARM_DESC(uncached_heap,
		 "Also register the uncached heaps, write-combined CPU mappings (default: Y)");

static bool dma32_heaps = true;
module_param(dma32_heaps, bool, 0444);
MODULE_PARM_DESC(dma32_heaps,
		 "Also register the DMA32 heaps, memory below 4 GiB for 32-bit DMA masters (default: Y, where the kernel has ZONE_DMA32)");

/* A sibling's default name: heap_name and a suffix, which always fit. */
static char uncached_heap_name[RDH_NAME_MAX + sizeof("-uncached")];
module_param_string(uncached_heap_name, uncached_heap_name, sizeof(uncached_heap_name), 0444);
MODULE_PARM_DESC(uncached_heap_name, "Name of the uncached heap (default: <heap_name>-uncached)");

static char dma32_heap_name[RDH_NAME_MAX + sizeof("-dma32")];
module_param_string(dma32_heap_name, dma32_heap_name, sizeof(dma32_heap_name), 0444);
MODULE_PARM_DESC(dma32_heap_name, "Name of the DMA32 heap (default: <heap_name>-dma32)");

static char uncached_dma32_heap_name[RDH_NAME_MAX + sizeof("-uncached-dma32")];
module_param_string(uncached_dma32_heap_name, uncached_dma32_heap_name,
		    sizeof(uncached_dma32_heap_name), 0444);
MODULE_PARM_DESC(uncached_dma32_heap_name,
		 "Name of the uncached DMA32 heap (default: <heap_name>-uncached-dma32)");

/*
 * Fills an unset sibling name in, during module init (the only caller, which
 * runs once); a reader of the parameter in sysfs meanwhile may see it empty.
 */
static const char *sibling_name(char *name, size_t size, bool on, const char *suffix)
{
	if (!on)
		return NULL;
	if (!name[0])
		snprintf(name, size, "%s%s", heap_name, suffix);
	return name;
}

const char *rdh_heap_name(enum rdh_heap_kind kind)
{
	switch (kind) {
	case RDH_HEAP_CACHED:
		return heap_name;
	case RDH_HEAP_UNCACHED:
		return sibling_name(uncached_heap_name, sizeof(uncached_heap_name),
				    uncached_heap, "-uncached");
	case RDH_HEAP_DMA32:
		return sibling_name(dma32_heap_name, sizeof(dma32_heap_name), dma32_heaps,
				    "-dma32");
	case RDH_HEAP_UNCACHED_DMA32:
		return sibling_name(uncached_dma32_heap_name, sizeof(uncached_dma32_heap_name),
				    uncached_heap && dma32_heaps, "-uncached-dma32");
	}
	return NULL;
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

static int pool_limit_mib = -1;
module_param(pool_limit_mib, int, 0644);
MODULE_PARM_DESC(pool_limit_mib,
		 "Hard cap on the memory each page pool (one per zone: any, DMA32) keeps zeroed for new buffers, in MiB: -1 (default) for 1/2 of RAM, 0 disables the pools. Below it a pool keeps only as much as its heap allocated within a fifth of pool_window_ms, the busiest such stretch of the window, less what free memory is short of 1/12 of RAM; a lower cap applies from the next free on, which also releases what a pool holds beyond it");

static unsigned int pool_window_ms = 5000;
module_param(pool_window_ms, uint, 0644);
MODULE_PARM_DESC(pool_window_ms,
		 "How long a page pool remembers its heap's allocations, in ms (default 5000, at least 5): it keeps as much as the heap allocated within a fifth of the window, the busiest such stretch of it, so what nobody asks for goes back within about the window plus a fifth of it; a change forgets what was allocated");

unsigned int rdh_pool_window_ms(void)
{
	return max(READ_ONCE(pool_window_ms), 5U);
}

unsigned long rdh_pool_limit_bytes(void)
{
	int mib = READ_ONCE(pool_limit_mib);

	if (mib < 0)
		return (totalram_pages() / 2) << PAGE_SHIFT;
	return (unsigned long)mib << 20;
}
