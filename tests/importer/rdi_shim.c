// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the importer test driver: its fake platform devices and test
 * fences (static inlines, reservation object locking). No logic here.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>

#include "../../rdh_dma_device.h"
#include "../../rdh_test_fence.h"

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
