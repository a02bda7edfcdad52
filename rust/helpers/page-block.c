// SPDX-License-Identifier: GPL-2.0

#include <linux/highmem.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/vmstat.h>

__rust_helper unsigned long rust_helper_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}

__rust_helper void rust_helper_clear_highpage(struct page *page)
{
	clear_highpage(page);
}

__rust_helper struct pglist_data *rust_helper_page_pgdat(const struct page *page)
{
	return page_pgdat(page);
}

/* A block on a list by its head page's lru link, its order alongside. */
__rust_helper void rust_helper_page_block_list_add(struct list_head *list,
						   struct page *page,
						   unsigned int order)
{
	set_page_private(page, order);
	list_add(&page->lru, list);
}

__rust_helper struct page *rust_helper_page_block_list_pop(struct list_head *list,
							   unsigned int *order)
{
	struct page *page = list_first_entry_or_null(list, struct page, lru);

	if (page) {
		list_del(&page->lru);
		*order = page_private(page);
		set_page_private(page, 0);
	}
	return page;
}

__rust_helper int rust_helper_cond_resched(void)
{
	return cond_resched();
}
