// SPDX-License-Identifier: GPL-2.0
/*
 * Whether a dma-heap name is taken, asked before dma_heap_add(): the
 * dma-heap core creates the heap's device before it checks the name, so a
 * taken name fails in sysfs, which dumps a stack. A dma-heap's device is
 * /sys/devices/virtual/dma_heap/<name>.
 */
#include <linux/device.h>
#include <linux/kernfs.h>
#include <linux/sysfs.h>

#include "glue.h"

/*
 * @dev is a class device without a parent device (the module's misc
 * device): its kobject's grandparent is /sys/devices/virtual. False where
 * that cannot be read; dma_heap_add() then still refuses a taken name.
 */
bool rdh_dma_heap_name_taken(struct device *dev, const char *name)
{
	struct kobject *class_dir = dev->kobj.parent;
	struct kernfs_node *heaps, *heap;
	bool taken;

	if (dev->parent || !class_dir || !class_dir->parent || !class_dir->parent->sd)
		return false;
	heaps = sysfs_get_dirent(class_dir->parent->sd, "dma_heap");
	if (!heaps)
		return false;
	heap = sysfs_get_dirent(heaps, name);
	taken = heap;
	kernfs_put(heap);
	kernfs_put(heaps);
	return taken;
}
