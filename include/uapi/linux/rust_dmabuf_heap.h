/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * User-space interface of rust_dmabuf_heap.ko beyond the dma-heap and
 * dma-buf ones: CPU access to a range of a buffer.
 *
 * DMA_BUF_IOCTL_SYNC brackets CPU access to a whole dma-buf; the heap's
 * control device /dev/rust_dmabuf_heap brackets a range of one of its
 * buffers, so that only that range's cache lines are invalidated (at
 * START, after a device wrote) and cleaned (at END, for a device that
 * reads), e.g. a region of interest of a camera frame:
 *
 *	struct rdh_sync_range sync = {
 *		.fd = dmabuf_fd,
 *		.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
 *		.offset = roi_offset,
 *		.len = roi_len,
 *	};
 *	ioctl(control_fd, RDH_IOCTL_SYNC_RANGE, &sync);
 *	... read the region through the mmap of dmabuf_fd ...
 *	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
 *	ioctl(control_fd, RDH_IOCTL_SYNC_RANGE, &sync);
 *
 * Range and whole-buffer brackets nest and overlap freely; an END closes
 * the latest open bracket of the same range. The range is widened to whole
 * pages. START waits for the buffer's fences, as DMA_BUF_IOCTL_SYNC does.
 *
 * Errors: EBADF (@fd is not an open file), EINVAL (@fd is not a dma-buf
 * of this module's heaps, @flags unknown or without READ/WRITE, @len 0,
 * the range reaches past the buffer or overflows), EBUSY (too many range
 * brackets open on the buffer), EINTR (a signal while waiting for
 * fences). On error nothing changed.
 */
#ifndef _UAPI_LINUX_RUST_DMABUF_HEAP_H
#define _UAPI_LINUX_RUST_DMABUF_HEAP_H

#include <linux/dma-buf.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/**
 * struct rdh_sync_range - CPU access to a range of a dma-buf
 * @fd: the dma-buf
 * @flags: DMA_BUF_SYNC_START or DMA_BUF_SYNC_END, with DMA_BUF_SYNC_READ,
 *	DMA_BUF_SYNC_WRITE or both (DMA_BUF_SYNC_VALID_FLAGS_MASK)
 * @offset: first byte of the range
 * @len: bytes in the range, at least one
 */
struct rdh_sync_range {
	__s32 fd;
	__u32 flags;
	__u64 offset;
	__u64 len;
};

/*
 * 'R' 0x30-0x3F: free in Documentation/userspace-api/ioctl/ioctl-number.rst
 * (between linux/trace_mmap.h's 20-2F and net/bluetooth/rfcomm.h's C0-DF),
 * where upstreaming would register it.
 */
#define RDH_IOCTL_BASE 'R'
#define RDH_IOCTL_SYNC_RANGE _IOW(RDH_IOCTL_BASE, 0x30, struct rdh_sync_range)

#endif /* _UAPI_LINUX_RUST_DMABUF_HEAP_H */
