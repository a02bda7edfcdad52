// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the importer test driver: creating and destroying its fake
 * platform devices (static inlines). No logic here.
 */
#include "../../rdh_dma_device.h"

struct device *rdi_device_create(int id, bool coherent);
void rdi_device_destroy(struct device *dev);

struct device *rdi_device_create(int id, bool coherent)
{
	return rdh_platform_dma_device("rdh_importer", id, coherent);
}

void rdi_device_destroy(struct device *dev)
{
	platform_device_unregister(to_platform_device(dev));
}
