/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Test fences: on a private context, signalled on command, now or from a
 * workqueue after a delay. Used by the KUnit suite and by the importer test
 * driver (each module gets its own copy of these static functions).
 */
#ifndef RDH_TEST_FENCE_H
#define RDH_TEST_FENCE_H

#include <linux/dma-fence.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

static const char *rdh_test_fence_name(struct dma_fence *fence)
{
	return "rdh-test";
}

static const struct dma_fence_ops rdh_test_fence_ops = {
	.get_driver_name = rdh_test_fence_name,
	.get_timeline_name = rdh_test_fence_name,
};

static DEFINE_SPINLOCK(rdh_test_fence_lock);

/* A new unsignalled fence; the caller owns the one reference. */
static inline struct dma_fence *rdh_test_fence_new(void)
{
	struct dma_fence *fence = kzalloc(sizeof(*fence), GFP_KERNEL);

	if (!fence)
		return ERR_PTR(-ENOMEM);
	dma_fence_init(fence, &rdh_test_fence_ops, &rdh_test_fence_lock,
		       dma_fence_context_alloc(1), 1);
	return fence;
}

/* Signals @fence (a no-op if it already signalled). */
static inline void rdh_test_fence_fire(struct dma_fence *fence)
{
	bool cookie = dma_fence_begin_signalling();

	dma_fence_signal(fence);
	dma_fence_end_signalling(cookie);
}

struct rdh_late_signal {
	struct delayed_work work;
	struct dma_fence *fence;
};

static void rdh_late_signal_fn(struct work_struct *work)
{
	struct rdh_late_signal *late =
		container_of(to_delayed_work(work), struct rdh_late_signal, work);

	rdh_test_fence_fire(late->fence);
	dma_fence_put(late->fence);
	kfree(late);
}

/*
 * Signals @fence from a workqueue (possibly on another CPU) after @ms; the
 * work holds its own reference. Without memory for the work, signals now.
 */
static inline void rdh_test_fence_fire_later(struct dma_fence *fence, unsigned int ms)
{
	struct rdh_late_signal *late = kzalloc(sizeof(*late), GFP_KERNEL);

	if (!late) {
		rdh_test_fence_fire(fence);
		return;
	}
	late->fence = dma_fence_get(fence);
	INIT_DELAYED_WORK(&late->work, rdh_late_signal_fn);
	schedule_delayed_work(&late->work, msecs_to_jiffies(ms));
}

#endif /* RDH_TEST_FENCE_H */
