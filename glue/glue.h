/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The driver's own C functions (the files of this directory, and
 * tests/kunit_shim.c in test builds), the C API it exports and its uAPI.
 * bindgen reads this header to produce glue_generated.rs.
 */
#ifndef RDH_GLUE_H
#define RDH_GLUE_H

#include <linux/rust_dmabuf_heap.h>
#include <linux/types.h>
/* The SYNC flags (the kernel's linux/dma-buf.h does not include them). */
#include <uapi/linux/dma-buf.h>
#include <uapi/linux/rust_dmabuf_heap.h>

struct device;
struct dma_buf;
struct dma_fence;

#ifdef __BINDGEN__
/* The control device's ioctl and the SYNC flags it shares with dma-buf. */
const unsigned int RDH_SYNC_RANGE_CMD = RDH_IOCTL_SYNC_RANGE;
const unsigned int RDH_SYNC_READ = DMA_BUF_SYNC_READ;
const unsigned int RDH_SYNC_WRITE = DMA_BUF_SYNC_WRITE;
const unsigned int RDH_SYNC_END = DMA_BUF_SYNC_END;
const unsigned int RDH_SYNC_VALID_FLAGS = DMA_BUF_SYNC_VALID_FLAGS_MASK;
#endif

/* The module parameters (params.c). */
/* The heaps the module may register, and their names (NULL: turned off). */
enum rdh_heap_kind {
	RDH_HEAP_CACHED,
	RDH_HEAP_UNCACHED,
	RDH_HEAP_DMA32,
	RDH_HEAP_UNCACHED_DMA32,
};

const char *rdh_heap_name(enum rdh_heap_kind kind);
bool rdh_dma_heap_name_taken(struct device *dev, const char *name);
bool rdh_sync_policy_always(void);
bool rdh_debugfs_buffers_enabled(void);
bool rdh_trap_user_access(void);
unsigned long rdh_pool_limit_bytes(void);
unsigned int rdh_pool_window_ms(void);

/* maintenance_device.c, report.c */
struct device *rdh_maintenance_device_create(void);
void rdh_maintenance_device_destroy(struct device *dev);
void rdh_report_unbracketed(u64 inode, size_t size, bool write);

/* The page pool's worker (worker.c). */
struct rdh_worker;
struct rdh_worker *rdh_worker_create(void);
int rdh_worker_run(struct rdh_worker *worker, void (*job)(void *data),
		   void *data, const char *name);
void rdh_worker_kick(struct rdh_worker *worker);
void rdh_worker_kick_after(struct rdh_worker *worker, unsigned int msecs);
void rdh_worker_halt(struct rdh_worker *worker);
void rdh_worker_destroy(struct rdh_worker *worker);

/* For the KUnit suite only: tests/kunit_shim.c, linked into test builds. */
struct sg_table;
struct device *rdh_kunit_dma_device(const char *name, bool coherent);
struct device *rdh_kunit_dma32_device(const char *name);
bool rdh_kunit_table_is_direct(struct sg_table *table);
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

#endif /* RDH_GLUE_H */
