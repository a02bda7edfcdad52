/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Everything the Rust side calls that is not an exported C function: static
 * inline helpers, macros and the string module parameter. bindgen reads this
 * header (plus the dma-buf headers it includes) to produce ffi_generated.rs.
 */
#ifndef RDH_SHIM_H
#define RDH_SHIM_H

#include <linux/dma-buf.h>
#include <linux/dma-direction.h>
#include <linux/dma-fence.h>
#include <linux/dma-heap.h>
#include <linux/dma-resv.h>
#include <linux/gfp.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/vmalloc.h>

#include "include/rust_dmabuf_heap.h"
/* The SYNC flags (the kernel's linux/dma-buf.h does not include them). */
#include <uapi/linux/dma-buf.h>
#include "include/uapi/linux/rust_dmabuf_heap.h"

#ifdef __BINDGEN__
/*
 * Allocation flags, evaluated by the C compiler so that bindgen sees plain
 * constants. High orders are opportunistic: no reclaim, no retries, no
 * warning. Order 0 may reclaim but fails with -ENOMEM rather than invoking
 * the OOM killer (__GFP_RETRY_MAYFAIL), because dma-buf memory is not charged
 * to the allocating process and the killer would pick an innocent one.
 */
const gfp_t RDH_GFP_HIGH_ORDER = ((GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN |
				   __GFP_NORETRY) & ~__GFP_RECLAIM) | __GFP_COMP;
const gfp_t RDH_GFP_LOW_ORDER = GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN |
				__GFP_RETRY_MAYFAIL;
const gfp_t RDH_GFP_ACCOUNT = __GFP_ACCOUNT;
const unsigned long RDH_PAGE_SIZE = PAGE_SIZE;
const unsigned int RDH_PAGE_SHIFT = PAGE_SHIFT;
const unsigned long RDH_DMA_ATTR_SKIP_CPU_SYNC = DMA_ATTR_SKIP_CPU_SYNC;
/* The control device's ioctl and the SYNC flags it shares with dma-buf. */
const unsigned int RDH_SYNC_RANGE_CMD = RDH_IOCTL_SYNC_RANGE;
const unsigned int RDH_SYNC_READ = DMA_BUF_SYNC_READ;
const unsigned int RDH_SYNC_WRITE = DMA_BUF_SYNC_WRITE;
const unsigned int RDH_SYNC_END = DMA_BUF_SYNC_END;
const unsigned int RDH_SYNC_VALID_FLAGS = DMA_BUF_SYNC_VALID_FLAGS_MASK;
#endif

const char *rdh_heap_name(void);
const char *rdh_uncached_heap_name(void);
bool rdh_sync_policy_always(void);
bool rdh_debugfs_buffers_enabled(void);
bool rdh_trap_user_access(void);
struct device *rdh_maintenance_device_create(void);
void rdh_maintenance_device_destroy(struct device *dev);
bool rdh_dev_is_dma_coherent(struct device *dev);

/* Why DMA mappings for a device may bounce through swiotlb slots. */
#define RDH_BOUNCE_NONE 0
#define RDH_BOUNCE_FORCED 1		/* swiotlb=force, restricted pool, CC guest */
#define RDH_BOUNCE_ADDRESSING_LIMITED 2	/* DMA mask cannot reach all RAM */
#define RDH_BOUNCE_LIMITED_MAPPING 3	/* any other limit the DMA layer reports */
int rdh_dma_bounce_reason(struct device *dev);
size_t rdh_dma_max_segment(struct device *dev);
struct module *rdh_this_module(void);
void rdh_pin_module(void);
bool rdh_fatal_signal_pending(void);
unsigned long rdh_totalram_pages(void);
long rdh_available_pages(void);

void rdh_sg_set_page(struct scatterlist *sg, struct page *page,
		     unsigned int len, unsigned int offset);
struct page *rdh_sg_page(struct scatterlist *sg);
struct page *rdh_nth_page(struct page *page, unsigned long n);

int rdh_dma_map_sgtable(struct device *dev, struct sg_table *sgt,
			enum dma_data_direction dir, unsigned long attrs);
void rdh_dma_unmap_sgtable(struct device *dev, struct sg_table *sgt,
			   enum dma_data_direction dir, unsigned long attrs);
void rdh_dma_sync_sgtable_for_cpu(struct device *dev, struct sg_table *sgt,
				  enum dma_data_direction dir);
void rdh_dma_sync_sgtable_for_device(struct device *dev, struct sg_table *sgt,
				     enum dma_data_direction dir);
unsigned long rdh_vmf_pgoff(struct vm_fault *vmf);
void rdh_dma_sync_sgtable_range(struct device *dev, struct sg_table *sgt,
				size_t offset, size_t len,
				enum dma_data_direction dir, bool for_device);

unsigned long rdh_page_to_pfn(struct page *page);

/* User mappings whose entries the fault handler inserts (user_mappings.rs). */
int rdh_vma_forbid_cow(struct vm_area_struct *vma);
void rdh_vma_trap(struct vm_area_struct *vma, const struct vm_operations_struct *ops);
vm_fault_t rdh_vma_insert_pfn(struct vm_area_struct *vma, unsigned long addr,
			      unsigned long pfn, bool writable);
void rdh_vma_zap(struct vm_area_struct *vma);
void rdh_revoke_user_mappings(struct dma_buf *dmabuf);
void rdh_report_unbracketed(struct dma_buf *dmabuf, bool write);
void *rdh_vmap_pages(struct page **pages, unsigned int count, bool writecombine);
void rdh_vma_set_writecombine(struct vm_area_struct *vma);
void rdh_invalidate_kernel_vmap_range(void *vaddr, int size);
void rdh_flush_kernel_vmap_range(void *vaddr, int size);
void rdh_iosys_map_set_vaddr(struct iosys_map *map, void *vaddr);
u64 rdh_dma_buf_inode(struct dma_buf *dmabuf);

/* dma_fence and dma_resv static inlines (used by fence_hooks.rs only). */
struct dma_fence *rdh_dma_fence_get(struct dma_fence *fence);
void rdh_dma_fence_put(struct dma_fence *fence);
bool rdh_dma_fence_is_signaled(struct dma_fence *fence);
long rdh_dma_fence_wait(struct dma_fence *fence);
long rdh_resv_wait_for_cpu(struct dma_resv *resv, bool write);
int rdh_resv_write_fences(struct dma_resv *resv, u64 *ids, unsigned int max);

/* The page pool (pool.rs). */
unsigned long rdh_pool_limit_bytes(void);
void rdh_page_list_init(struct list_head *list);
void rdh_page_list_push(struct list_head *list, struct page *page,
			unsigned int order);
struct page *rdh_page_list_pop(struct list_head *list, unsigned int *order);
void rdh_pool_account(struct page *page, long nr_pages);
void rdh_clear_pages(struct page *page, unsigned int order);
bool rdh_dma_clean_pages(struct device *dev, struct page *page, size_t size);
bool rdh_dma_flush_pages(struct device *dev, struct page *page, size_t size);
unsigned long rdh_free_pages(void);
unsigned long rdh_jiffies(void);
unsigned long rdh_ms_to_jiffies(unsigned int ms);
bool rdh_time_before(unsigned long a, unsigned long b);
struct rdh_worker;
struct rdh_worker *rdh_worker_create(void);
int rdh_worker_run(struct rdh_worker *worker, void *pool, const char *name);
void rdh_worker_kick(struct rdh_worker *worker);
void rdh_worker_halt(struct rdh_worker *worker);
void rdh_worker_destroy(struct rdh_worker *worker);
struct shrinker *rdh_shrinker_create(void *pool, const char *name);
void rdh_shrinker_destroy(struct shrinker *shrinker);

unsigned long rdh_spin_lock_irqsave(spinlock_t *lock);
void rdh_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
bool rdh_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);

/* For the KUnit suite only: tests/kunit_shim.c, linked into test builds. */
struct device *rdh_kunit_dma_device(const char *name, bool coherent);
struct dma_fence *rdh_test_fence_create(void);
void rdh_test_fence_signal(struct dma_fence *fence);
void rdh_test_fence_signal_later(struct dma_fence *fence, unsigned int ms);
void rdh_kunit_skip(const char *why);
void rdh_test_resv_lock(struct dma_buf *dmabuf);
void rdh_test_resv_unlock(struct dma_buf *dmabuf);
bool rdh_test_begin_signalling(void);
void rdh_test_end_signalling(bool cookie);
int rdh_kunit_kernel_mapping_is_writecombine(const void *addr);
bool rdh_kunit_is_vmalloc_addr(const void *addr);
unsigned long rdh_kunit_nr_free_pages(void);
unsigned long rdh_kunit_nr_free_cma_pages(void);

#endif /* RDH_SHIM_H */
