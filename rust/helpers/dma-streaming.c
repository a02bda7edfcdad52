// SPDX-License-Identifier: GPL-2.0

#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/iommu-dma.h>
#include <linux/swiotlb.h>

__rust_helper bool rust_helper_dev_is_dma_coherent(struct device *dev)
{
	return dev_is_dma_coherent(dev);
}

__rust_helper bool rust_helper_is_swiotlb_force_bounce(struct device *dev)
{
	return is_swiotlb_force_bounce(dev);
}

__rust_helper unsigned int rust_helper_dma_get_max_seg_size(struct device *dev)
{
	return dma_get_max_seg_size(dev);
}

__rust_helper void rust_helper_dma_sync_sgtable_for_cpu(struct device *dev,
							struct sg_table *sgt,
							enum dma_data_direction dir)
{
	dma_sync_sgtable_for_cpu(dev, sgt, dir);
}

__rust_helper void rust_helper_dma_sync_sgtable_for_device(struct device *dev,
							   struct sg_table *sgt,
							   enum dma_data_direction dir)
{
	dma_sync_sgtable_for_device(dev, sgt, dir);
}

__rust_helper void rust_helper_dma_sync_single_range_for_cpu(struct device *dev,
							     dma_addr_t addr,
							     unsigned long offset,
							     size_t size,
							     enum dma_data_direction dir)
{
	dma_sync_single_range_for_cpu(dev, addr, offset, size, dir);
}

__rust_helper void rust_helper_dma_sync_single_range_for_device(struct device *dev,
								dma_addr_t addr,
								unsigned long offset,
								size_t size,
								enum dma_data_direction dir)
{
	dma_sync_single_range_for_device(dev, addr, offset, size, dir);
}

__rust_helper int rust_helper_dma_mapping_error(struct device *dev, dma_addr_t addr)
{
	return dma_mapping_error(dev, addr);
}

/*
 * Whether streaming mappings of memory below physical address @end never
 * bounce for @dev: it maps directly (no IOMMU, no dma_map_ops), without
 * bus offsets or forced bouncing, and the bus address of the last byte is
 * within its mask and bus limit, as dma_capable() asks of every page
 * (TODO(dma-reach) in rust/todo.rst). False where unsure, which costs a
 * bounce, never data.
 */
__rust_helper bool rust_helper_dma_direct_reaches(struct device *dev, phys_addr_t end)
{
	if (!end || !dev->dma_mask || get_dma_ops(dev) || use_dma_iommu(dev) ||
	    dev->dma_range_map || is_swiotlb_force_bounce(dev) || force_dma_unencrypted(dev))
		return false;
	return phys_to_dma(dev, end - 1) <= min_not_zero(*dev->dma_mask, dev->bus_dma_limit);
}
