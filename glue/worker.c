// SPDX-License-Identifier: GPL-2.0
/*
 * The page pool's worker, in C: zeroing is background work that must yield
 * to everything else (nice 19, freezable), which neither the kernel crate
 * (it has no kthread) nor a workqueue item can be.
 */
#include <linux/freezer.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/timer.h>
#include <linux/wait.h>

#include "glue.h"

struct rdh_worker {
	struct task_struct *task;
	wait_queue_head_t wait;
	atomic_t kicked;
	/*
	 * A kick wakes the thread from this timer, one tick later: freeing
	 * pays for arming a local timer, not for waking another CPU.
	 */
	struct timer_list timer;
	void (*job)(void *data);
	void *data;
};

static void rdh_worker_wake(struct timer_list *timer)
{
	struct rdh_worker *worker = container_of(timer, struct rdh_worker, timer);

	atomic_set(&worker->kicked, 1);
	wake_up(&worker->wait);
}

static int rdh_worker_thread(void *arg)
{
	struct rdh_worker *worker = arg;

	/* Zeroing is background work: it yields to everything else. */
	sched_set_normal(current, MAX_NICE);
	set_freezable();
	while (!kthread_should_stop()) {
		wait_event_freezable(worker->wait,
				     atomic_read(&worker->kicked) ||
				     kthread_should_stop());
		if (atomic_xchg(&worker->kicked, 0))
			worker->job(worker->data);
	}
	return 0;
}

/* A worker that can be kicked at once and runs once started. */
struct rdh_worker *rdh_worker_create(void)
{
	struct rdh_worker *worker = kzalloc(sizeof(*worker), GFP_KERNEL);

	if (worker) {
		init_waitqueue_head(&worker->wait);
		timer_setup(&worker->timer, rdh_worker_wake, 0);
	}
	return worker;
}

int rdh_worker_run(struct rdh_worker *worker, void (*job)(void *data),
		   void *data, const char *name)
{
	struct task_struct *task;

	worker->job = job;
	worker->data = data;
	task = kthread_run(rdh_worker_thread, worker, "rdh-pool/%s", name);
	if (IS_ERR(task))
		return PTR_ERR(task);
	worker->task = task;
	return 0;
}

void rdh_worker_kick(struct rdh_worker *worker)
{
	/* Cheap when armed already; a later wake-up (kick_after) comes sooner. */
	if (!atomic_read(&worker->kicked))
		timer_reduce(&worker->timer, jiffies + 1);
}

/* Runs the job in about @msecs, unless a kick runs it sooner. */
void rdh_worker_kick_after(struct rdh_worker *worker, unsigned int msecs)
{
	timer_reduce(&worker->timer, jiffies + msecs_to_jiffies(msecs));
}

/*
 * Returns once the thread (if any) has exited: the job is not running and
 * will not run again.
 */
void rdh_worker_halt(struct rdh_worker *worker)
{
	timer_shutdown_sync(&worker->timer);
	if (worker->task)
		kthread_stop(worker->task);
	worker->task = NULL;
}

void rdh_worker_destroy(struct rdh_worker *worker)
{
	rdh_worker_halt(worker);
	kfree(worker);
}
