// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers of the KUnit suite (tests/kunit.rs): KUnit-owned DMA devices and
 * test fences. Linked into rust_dmabuf_heap.ko only for the test build
 * (RDH_KUNIT=y, which needs CONFIG_KUNIT); the production module has none
 * of this.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/pgtable.h>
#include <linux/vmalloc.h>

#include <kunit/device.h>
#include <kunit/test-bug.h>
#include <kunit/test.h>

#include "../glue/dma_device.h"
#include "../glue/glue.h"
#include "rdh_test_fence.h"

/*
 * A device owned by the running KUnit test (released when the test ends),
 * with a 64-bit DMA mask and no IOMMU: non-coherent on arm64 unless asked
 * otherwise, so mapping a buffer for it goes through the real cache
 * maintenance path.
 */
struct device *rdh_kunit_dma_device(const char *name, bool coherent)
{
	struct kunit *test = kunit_get_current_test();
	struct device *dev;

	if (!test)
		return ERR_PTR(-EINVAL);
	dev = kunit_device_register(test, name);
	if (IS_ERR(dev))
		return dev;
	/* KUnit devices come without DMA parameters; platform devices have them. */
	dev->dma_parms = kunit_kzalloc(test, sizeof(*dev->dma_parms), GFP_KERNEL);
	if (!dev->dma_parms)
		return ERR_PTR(-ENOMEM);
	if (rdh_setup_dma_device(dev, coherent))
		return ERR_PTR(-EIO);
	return dev;
}

/* The same, non-coherent, with a 32-bit DMA mask: a device that may bounce. */
struct device *rdh_kunit_dma32_device(const char *name)
{
	struct device *dev = rdh_kunit_dma_device(name, false);

	if (!IS_ERR(dev) && dma_coerce_mask_and_coherent(dev, DMA_BIT_MASK(32)))
		return ERR_PTR(-EIO);
	return dev;
}

/*
 * Whether a mapped table points the device at the pages themselves (no
 * swiotlb slot): every entry's bus address is its physical address, as
 * direct mapping without bus offsets gives (the KUnit devices' case).
 */
bool rdh_kunit_table_is_direct(struct sg_table *table)
{
	struct scatterlist *sg;
	int i;

	if (!table->nents)
		return false;
	for_each_sgtable_dma_sg(table, sg, i)
		if (sg_dma_address(sg) != sg_phys(sg))
			return false;
	return true;
}

struct dma_fence *rdh_test_fence_create(void)
{
	return rdh_test_fence_new();
}

void rdh_test_fence_signal(struct dma_fence *fence)
{
	rdh_test_fence_fire(fence);
}

void rdh_test_fence_signal_later(struct dma_fence *fence, unsigned int ms)
{
	rdh_test_fence_fire_later(fence, ms);
}

/* Marks the running test skipped (Rust KUnit has no skip of its own). */
/* The reservation lock, for a dynamic importer's map. */
void rdh_test_resv_lock(struct dma_buf *dmabuf)
{
	dma_resv_lock(dmabuf->resv, NULL);
}

void rdh_test_resv_unlock(struct dma_buf *dmabuf)
{
	dma_resv_unlock(dmabuf->resv);
}

/* Fence signalling sections, for lockdep (no-ops without it). */
bool rdh_test_begin_signalling(void)
{
	return dma_fence_begin_signalling();
}

void rdh_test_end_signalling(bool cookie)
{
	dma_fence_end_signalling(cookie);
}

void rdh_kunit_skip(const char *why)
{
	struct kunit *test = kunit_get_current_test();

	if (test)
		kunit_mark_skipped(test, "%s", why);
}

/*
 * Whether the page-table entry that maps kernel address @addr (a vmap of
 * single pages, so a PTE) has write-combined attributes: making it
 * write-combined would change nothing. 1 or 0; -EOPNOTSUPP off arm64. The
 * kernel's tables are found through TTBR1 (init_mm is not exported).
 */
int rdh_kunit_kernel_mapping_is_writecombine(const void *addr)
{
#ifdef CONFIG_ARM64
	unsigned long va = (unsigned long)addr;
	u64 ttbr = read_sysreg(ttbr1_el1) & TTBR_BADDR_MASK_52;
	phys_addr_t table = ttbr;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;
	pte_t pte;

	if (IS_ENABLED(CONFIG_ARM64_PA_BITS_52))	/* undo phys_to_ttbr() */
		table = (ttbr & GENMASK_ULL(47, 6)) | ((ttbr & GENMASK_ULL(5, 2)) << 46);
	pgd = (pgd_t *)phys_to_virt(table) + pgd_index(va);
	if (pgd_none(READ_ONCE(*pgd)))
		return 0;
	p4d = p4d_offset(pgd, va);
	if (p4d_none(READ_ONCE(*p4d)))
		return 0;
	pud = pud_offset(p4d, va);
	if (pud_none(READ_ONCE(*pud)) || pud_leaf(READ_ONCE(*pud)))
		return 0;
	pmd = pmd_offset(pud, va);
	if (pmd_none(READ_ONCE(*pmd)) || pmd_leaf(READ_ONCE(*pmd)))
		return 0;
	pte = ptep_get(pte_offset_kernel(pmd, va));
	if (!pte_present(pte))
		return 0;
	return pgprot_val(pgprot_writecombine(pte_pgprot(pte))) == pgprot_val(pte_pgprot(pte));
#else
	return -EOPNOTSUPP;
#endif
}

/* Whether @addr lies in vmalloc memory (whose free may sleep). */
bool rdh_kunit_is_vmalloc_addr(const void *addr)
{
	return is_vmalloc_addr(addr);
}
