// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust module: only what Rust cannot reach through exported
 * symbols (static inlines, macros, a string module parameter). No logic here.
 */
#include <kunit/device.h>
#include <kunit/test-bug.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched/signal.h>
#include <linux/vmalloc.h>

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

void *rdh_vmap_pages(struct page **pages, unsigned int count)
{
	return vmap(pages, count, VM_MAP, PAGE_KERNEL);
}

void rdh_iosys_map_set_vaddr(struct iosys_map *map, void *vaddr)
{
	iosys_map_set_vaddr(map, vaddr);
}

/*
 * A device owned by the running KUnit test (released when the test ends),
 * with a 64-bit DMA mask and no IOMMU: non-coherent on arm64, so mapping a
 * buffer for it goes through the real cache maintenance path.
 */
struct device *rdh_kunit_dma_device(const char *name)
{
	struct kunit *test = kunit_get_current_test();
	struct device *dev;

	if (!test)
		return ERR_PTR(-EINVAL);
	dev = kunit_device_register(test, name);
	if (IS_ERR(dev))
		return dev;
	if (dma_coerce_mask_and_coherent(dev, DMA_BIT_MASK(64)))
		return ERR_PTR(-EIO);
	return dev;
}
