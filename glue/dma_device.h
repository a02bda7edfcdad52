/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Driverless DMA devices: the heap's maintenance device, the importer test
 * driver's fake devices and the KUnit suite's devices are all made this way.
 */
#ifndef RDH_GLUE_DMA_DEVICE_H
#define RDH_GLUE_DMA_DEVICE_H

#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/platform_device.h>

/*
 * Direct DMA mapping (no IOMMU) with a 64-bit mask and no segment size
 * limit (the heap's chunks are up to 1 MiB), coherent or not. Coherence
 * must be set before the mask: setting the mask decides whether the DMA API
 * skips syncs for the device. @dev must have dma_parms.
 */
static inline int rdh_setup_dma_device(struct device *dev, bool coherent)
{
	dma_set_max_seg_size(dev, UINT_MAX);
	dev_assign_dma_coherent(dev, coherent);
	return dma_coerce_mask_and_coherent(dev, DMA_BIT_MASK(64));
}

/* A platform device with no driver, set up by rdh_setup_dma_device(). */
static inline struct device *rdh_platform_dma_device(const char *name, int id, bool coherent)
{
	struct platform_device *pdev;
	int ret;

	pdev = platform_device_register_simple(name, id, NULL, 0);
	if (IS_ERR(pdev))
		return ERR_CAST(pdev);
	ret = rdh_setup_dma_device(&pdev->dev, coherent);
	if (ret) {
		platform_device_unregister(pdev);
		return ERR_PTR(ret);
	}
	return &pdev->dev;
}

#endif /* RDH_GLUE_DMA_DEVICE_H */
