// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>
#include <linux/vmstat.h>

__rust_helper unsigned long rust_helper_totalram_pages(void)
{
	return totalram_pages();
}

__rust_helper unsigned long rust_helper_global_zone_page_state(enum zone_stat_item item)
{
	return global_zone_page_state(item);
}
