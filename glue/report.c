// SPDX-License-Identifier: GPL-2.0
/*
 * The log line for user access outside DMA_BUF_IOCTL_SYNC, in C: it is rate
 * limited, which the kernel crate's printing is not.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/printk.h>
#include <linux/sched.h>

#include "glue.h"

/* The log line for the first access of a buffer outside a SYNC bracket. */
void rdh_report_unbracketed(u64 inode, size_t size, bool write)
{
	pr_info_ratelimited("%s[%d] %s dma-buf %llu (%zu bytes) outside DMA_BUF_IOCTL_SYNC; the heap keeps it coherent, but other heaps may not\n",
			    current->comm, task_pid_nr(current), write ? "wrote" : "read",
			    (unsigned long long)inode, size);
}
