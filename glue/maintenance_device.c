// SPDX-License-Identifier: GPL-2.0
/*
 * The heap's maintenance device, in C: a driverless platform device whose
 * DMA coherence and mask are set by hand, which the kernel crate can do for
 * neither a platform device nor a faux device.
 */
#include <linux/platform_device.h>

#include "dma_device.h"
#include "glue.h"

/*
 * The heap's own DMA device: non-coherent, direct-mapped, 64-bit mask. Every
 * buffer is mapped to it once (without syncing), so that cache maintenance
 * can run at the moment ownership changes, even when no importer has the
 * buffer mapped (the invalidate deferred from an unmap to the next CPU
 * access). arm64 cleans and invalidates by physical address, so the device
 * used does not matter for non-coherent importers.
 */
struct device *rdh_maintenance_device_create(void)
{
	return rdh_platform_dma_device(KBUILD_MODNAME, PLATFORM_DEVID_AUTO, false);
}

/* Undoes rdh_maintenance_device_create() when module init fails later. */
void rdh_maintenance_device_destroy(struct device *dev)
{
	platform_device_unregister(to_platform_device(dev));
}
