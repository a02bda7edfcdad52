// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust module: only what Rust cannot reach through exported
 * symbols (static inlines, macros, a string module parameter). No logic here.
 */
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
