/* SPDX-License-Identifier: GPL-2.0 */
/* Differences between the kernel releases we build against (7.2, 7.3). */
#ifndef RDH_COMPAT_H
#define RDH_COMPAT_H

#include <linux/device.h>
#include <linux/version.h>

/* Marks a device as snooping the CPU caches (before its DMA mask is set). */
static inline void rdh_set_dma_coherent(struct device *dev, bool coherent)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 3, 0)
	dev_assign_dma_coherent(dev, coherent);
#else
	dev->dma_coherent = coherent;
#endif
}

#endif /* RDH_COMPAT_H */
