// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the importer test driver: creating fake platform devices
 * (static inlines and version differences). No logic here.
 */
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/platform_device.h>

#include "../../rdh_compat.h"

struct device *rdi_device_create(int id, bool coherent);
void rdi_device_destroy(struct device *dev);

/*
 * A platform device with no driver and no IOMMU: direct DMA mapping, with
 * a 64-bit mask. Non-coherent unless asked; coherence must be set before
 * the mask, which is what decides whether the DMA API skips syncs for it.
 */
struct device *rdi_device_create(int id, bool coherent)
{
	struct platform_device *pdev;
	int ret;

	pdev = platform_device_register_simple("rdh_importer", id, NULL, 0);
	if (IS_ERR(pdev))
		return ERR_CAST(pdev);
	rdh_set_dma_coherent(&pdev->dev, coherent);
	ret = dma_coerce_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret) {
		platform_device_unregister(pdev);
		return ERR_PTR(ret);
	}
	return &pdev->dev;
}

void rdi_device_destroy(struct device *dev)
{
	platform_device_unregister(to_platform_device(dev));
}
