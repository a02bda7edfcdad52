/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What rust_dmabuf_heap.ko exports to importer drivers.
 */
#ifndef _RUST_DMABUF_HEAP_H
#define _RUST_DMABUF_HEAP_H

#include <linux/dma-buf.h>
#include <linux/dma-direction.h>
#include <linux/dma-fence.h>

/**
 * rdh_dma_buf_access_until - declare a device access that ends with a fence
 * @attach: an attachment of a dma-buf exported by rust_dmabuf_heap
 * @dir: what the device does: DMA_TO_DEVICE reads, DMA_FROM_DEVICE or
 *       DMA_BIDIRECTIONAL writes
 * @fence: signals when the access is over
 *
 * From the first call on, the attachment's writes count only through such
 * fences: while it stays mapped, a CPU access invalidates the CPU cache only
 * if one of its write fences signalled since the previous invalidate. So the
 * driver must declare every access it makes through the attachment. A fence
 * that has already signalled counts at once. The heap keeps a reference on
 * @fence until it signals or the buffer is freed. CPU access to the buffer
 * (DMA_BUF_IOCTL_SYNC, dma_buf_begin_cpu_access) waits for these fences.
 *
 * Context: process context; takes the buffer's mutex.
 * Return: 0, -EINVAL if @attach is not one of the heap's, or -ENOMEM.
 */
int rdh_dma_buf_access_until(struct dma_buf_attachment *attach,
			     enum dma_data_direction dir,
			     struct dma_fence *fence);

#endif /* _RUST_DMABUF_HEAP_H */
