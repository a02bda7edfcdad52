/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What rust_dmabuf_heap.ko exports to importer drivers.
 */
#ifndef _RUST_DMABUF_HEAP_H
#define _RUST_DMABUF_HEAP_H

#include <linux/dma-buf.h>
#include <linux/dma-direction.h>
#include <linux/dma-fence.h>
#include <uapi/linux/rust_dmabuf_heap.h>

/* A reserved access declaration (opaque). */
struct rdh_dma_buf_access;

/**
 * rdh_dma_buf_access_reserve - prepare to declare a device access (step 1)
 * @attach: an attachment of a dma-buf exported by rust_dmabuf_heap
 * @dir: what the device does: DMA_TO_DEVICE reads, DMA_FROM_DEVICE or
 *       DMA_BIDIRECTIONAL writes
 *
 * Reserves what declaring one access needs, before the driver publishes the
 * fence that will end it. From the first reservation on, the attachment's
 * writes count only through such fences: while it stays mapped, a CPU access
 * invalidates the CPU cache only if one of its write fences signalled since
 * the previous invalidate. So the driver must declare every access it makes
 * through the attachment. CPU access to the buffer (DMA_BUF_IOCTL_SYNC,
 * dma_buf_begin_cpu_access) waits for the committed fences.
 *
 * Context: process context, before the fence is published: allocates and
 * takes the buffer's mutex.
 * Return: a reservation to pass to rdh_dma_buf_access_commit() or
 * rdh_dma_buf_access_cancel(); ERR_PTR(-EINVAL) if @attach is not one of
 * the heap's, ERR_PTR(-ENOMEM). On error nothing changed.
 */
struct rdh_dma_buf_access *rdh_dma_buf_access_reserve(struct dma_buf_attachment *attach,
						      enum dma_data_direction dir);

/**
 * rdh_dma_buf_access_commit - the reserved access ends with @fence (step 2)
 * @access: from rdh_dma_buf_access_reserve(), consumed
 * @fence: signals when the access is over
 *
 * A fence that has already signalled counts at once. The heap keeps a
 * reference on @fence until it signals or the buffer is freed. A NULL or
 * error-pointer @access (what a failed rdh_dma_buf_access_reserve()
 * returned), or a NULL @fence, is ignored.
 *
 * Context: any, also inside a fence signalling critical section
 * (dma_fence_begin_signalling()): no allocation, no sleeping lock. The
 * attachment must still be live.
 */
void rdh_dma_buf_access_commit(struct rdh_dma_buf_access *access,
			       struct dma_fence *fence);

/**
 * rdh_dma_buf_access_cancel - drop a reservation that will not be committed
 * @attach: the attachment @access was reserved for
 * @access: from rdh_dma_buf_access_reserve(), consumed
 *
 * The attachment stays fenced. A NULL or error-pointer @access is ignored.
 *
 * Context: process context.
 */
void rdh_dma_buf_access_cancel(struct dma_buf_attachment *attach,
			       struct rdh_dma_buf_access *access);

/**
 * rdh_dma_buf_access_until - declare a device access that ends with a fence
 * @attach: as for rdh_dma_buf_access_reserve()
 * @dir: as for rdh_dma_buf_access_reserve()
 * @fence: signals when the access is over
 *
 * Both steps at once, for a driver that declares before publishing @fence.
 *
 * Context: process context, outside any fence signalling critical section.
 * Return: 0, -EINVAL if @attach is not one of the heap's or @fence is NULL,
 * or -ENOMEM (then nothing changed).
 */
int rdh_dma_buf_access_until(struct dma_buf_attachment *attach,
			     enum dma_data_direction dir,
			     struct dma_fence *fence);

/**
 * rdh_dma_buf_begin_cpu_access_range - CPU access to a range begins
 * @dmabuf: a dma-buf exported by rust_dmabuf_heap
 * @dir: as for dma_buf_begin_cpu_access()
 * @offset: first byte of the range
 * @len: bytes in the range, at least one
 *
 * dma_buf_begin_cpu_access() for bytes @offset..@offset + @len only
 * (widened to whole pages): only their cache lines are invalidated.
 * Brackets of ranges and of the whole buffer nest and overlap freely; end
 * each with rdh_dma_buf_end_cpu_access_range() of the same range.
 *
 * Context: process context; waits for the buffer's fences (interruptible).
 * Return: 0; -EINVAL if @dmabuf is not one of the heap's or the range is
 * empty or reaches past the buffer; -EBUSY if 8 range brackets are already
 * open on it; -EINTR. On error nothing changed.
 */
int rdh_dma_buf_begin_cpu_access_range(struct dma_buf *dmabuf,
				       enum dma_data_direction dir,
				       size_t offset, size_t len);

/**
 * rdh_dma_buf_end_cpu_access_range - CPU access to a range ends
 * @dmabuf: as for rdh_dma_buf_begin_cpu_access_range()
 * @dir: as for dma_buf_end_cpu_access()
 * @offset: as given at the begin
 * @len: as given at the begin
 *
 * Cleans the range's cache lines if a non-coherent device is mapped.
 *
 * Context: process context.
 * Return: 0, or -EINVAL as for rdh_dma_buf_begin_cpu_access_range().
 */
int rdh_dma_buf_end_cpu_access_range(struct dma_buf *dmabuf,
				     enum dma_data_direction dir,
				     size_t offset, size_t len);

#endif /* _RUST_DMABUF_HEAP_H */
