// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the importer test driver: its fake platform devices and test
 * fences (static inlines, reservation object locking). No logic here.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/mm.h>

#include "../../glue/dma_device.h"
#include "../rdh_test_fence.h"

struct device *rdi_device_create(int id, bool coherent);
void rdi_device_destroy(struct device *dev);

struct device *rdi_device_create(int id, bool coherent)
{
	return rdh_platform_dma_device("rdh_importer", id, coherent);
}

void rdi_device_destroy(struct device *dev)
{
	platform_device_unregister(to_platform_device(dev));
}

/* Kernel mappings: the iosys_map stays on this side. */
void *rdi_vmap(struct dma_buf *dmabuf, size_t *len);
void rdi_vunmap(struct dma_buf *dmabuf, void *vaddr);

void *rdi_vmap(struct dma_buf *dmabuf, size_t *len)
{
	struct iosys_map map;
	int ret;

	ret = dma_buf_vmap_unlocked(dmabuf, &map);
	if (ret)
		return ERR_PTR(ret);
	if (map.is_iomem) {
		dma_buf_vunmap_unlocked(dmabuf, &map);
		return ERR_PTR(-EOPNOTSUPP);
	}
	*len = dmabuf->size;
	return map.vaddr;
}

void rdi_vunmap(struct dma_buf *dmabuf, void *vaddr)
{
	struct iosys_map map = IOSYS_MAP_INIT_VADDR(vaddr);

	dma_buf_vunmap_unlocked(dmabuf, &map);
}

/* Fences: made here, declared to the heap in Rust, signalled on command. */
struct dma_fence *rdi_fence_create(void);
void rdi_fence_signal(struct dma_fence *fence, unsigned int delay_ms);
void rdi_fence_put(struct dma_fence *fence);
int rdi_resv_add_fence(struct dma_buf *dmabuf, struct dma_fence *fence, bool write);

/* Like vgem: no fence may wait for user space forever. */
#define RDI_FENCE_TIMEOUT_MS 10000

struct dma_fence *rdi_fence_create(void)
{
	struct dma_fence *fence = rdh_test_fence_new();

	if (!IS_ERR(fence))
		rdh_test_fence_fire_later(fence, RDI_FENCE_TIMEOUT_MS);
	return fence;
}

void rdi_fence_signal(struct dma_fence *fence, unsigned int delay_ms)
{
	if (delay_ms)
		rdh_test_fence_fire_later(fence, delay_ms);
	else
		rdh_test_fence_fire(fence);
}

void rdi_fence_put(struct dma_fence *fence)
{
	dma_fence_put(fence);
}

/* Implicit sync: publish @fence in the buffer's reservation object. */
int rdi_resv_add_fence(struct dma_buf *dmabuf, struct dma_fence *fence, bool write)
{
	struct dma_resv *resv = dmabuf->resv;
	int ret;

	ret = dma_resv_lock(resv, NULL);
	if (ret)
		return ret;
	ret = dma_resv_reserve_fences(resv, 1);
	if (!ret)
		dma_resv_add_fence(resv, fence, write ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ);
	dma_resv_unlock(resv);
	return ret;
}

/*
 * A heap-independent count of cache maintenance: kprobes on arm64's
 * arch_sync_dma_for_device() (always a clean) and arch_sync_dma_for_cpu()
 * (an invalidate unless DMA_TO_DEVICE), summing the bytes exactly as the
 * arch code maintains them, whichever heap or device asked. Needs
 * CONFIG_KPROBES (the `make bench` kernel); otherwise -ENODEV.
 */
int rdi_counters_start(void);
void rdi_counters_stop(void);
void rdi_counters_reset(void);
u64 rdi_clean_bytes(void);
u64 rdi_invalidate_bytes(void);

static atomic64_t rdi_cleaned, rdi_invalidated;

#ifdef CONFIG_KPROBES
#include <linux/kprobes.h>

/* arm64 calling convention: x0 = paddr, x1 = size, x2 = dir. */
static int rdi_for_device(struct kprobe *p, struct pt_regs *regs)
{
	atomic64_add(regs->regs[1], &rdi_cleaned);
	return 0;
}

static int rdi_for_cpu(struct kprobe *p, struct pt_regs *regs)
{
	if (regs->regs[2] != DMA_TO_DEVICE)
		atomic64_add(regs->regs[1], &rdi_invalidated);
	return 0;
}

static struct kprobe rdi_kp_device = {
	.symbol_name = "arch_sync_dma_for_device",
	.pre_handler = rdi_for_device,
};

static struct kprobe rdi_kp_cpu = {
	.symbol_name = "arch_sync_dma_for_cpu",
	.pre_handler = rdi_for_cpu,
};

static bool rdi_counting;

int rdi_counters_start(void)
{
	int ret = register_kprobe(&rdi_kp_device);

	if (ret)
		return ret;
	ret = register_kprobe(&rdi_kp_cpu);
	if (ret) {
		unregister_kprobe(&rdi_kp_device);
		return ret;
	}
	rdi_counting = true;
	return 0;
}

void rdi_counters_stop(void)
{
	if (!rdi_counting)
		return;
	unregister_kprobe(&rdi_kp_cpu);
	unregister_kprobe(&rdi_kp_device);
	rdi_counting = false;
}
#else
int rdi_counters_start(void)
{
	return -ENODEV;
}

void rdi_counters_stop(void)
{
}
#endif

void rdi_counters_reset(void)
{
	atomic64_set(&rdi_cleaned, 0);
	atomic64_set(&rdi_invalidated, 0);
}

u64 rdi_clean_bytes(void)
{
	return atomic64_read(&rdi_cleaned);
}

u64 rdi_invalidate_bytes(void)
{
	return atomic64_read(&rdi_invalidated);
}

/*
 * Whether the caller's page-table entry at user address @addr (in a pfn
 * mapping, as dma-buf mmaps are) has write-combined attributes: making it
 * write-combined would change nothing. 1 or 0; -EFAULT without a vma,
 * -EINVAL if not a pfn mapping or not mapped (follow_pfnmap_start()).
 */
int rdi_user_mapping_is_writecombine(unsigned long addr);

int rdi_user_mapping_is_writecombine(unsigned long addr)
{
	struct mm_struct *mm = current->mm;
	struct follow_pfnmap_args args = { .address = addr };
	int ret;

	if (!mm)
		return -EFAULT;
	mmap_read_lock(mm);
	args.vma = vma_lookup(mm, addr);
	if (!args.vma) {
		ret = -EFAULT;
		goto out;
	}
	ret = follow_pfnmap_start(&args);
	if (ret)
		goto out;
	ret = pgprot_val(pgprot_writecombine(args.pgprot)) == pgprot_val(args.pgprot);
	follow_pfnmap_end(&args);
out:
	mmap_read_unlock(mm);
	return ret;
}
