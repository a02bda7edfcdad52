/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the abstractions in kernel/ need bound beyond the kernel crate's
 * rust/bindings/bindings_helper.h: in the kernel tree these lines join that
 * file. bindgen evaluates the RUST_CONST_HELPER_ constants, which macros
 * define, and the build strips the prefix.
 */

#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/dma-heap.h>
#include <linux/dma-resv.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/huge_mm.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/sched/signal.h>
#include <linux/shrinker.h>
#include <linux/vmalloc.h>
#include <linux/vmstat.h>

#ifdef __BINDGEN__
const gfp_t RUST_CONST_HELPER_GFP_HIGHUSER = GFP_HIGHUSER;
const gfp_t RUST_CONST_HELPER_GFP_USER = GFP_USER;
const gfp_t RUST_CONST_HELPER___GFP_DMA32 = __GFP_DMA32;
const gfp_t RUST_CONST_HELPER___GFP_NORETRY = __GFP_NORETRY;
const gfp_t RUST_CONST_HELPER___GFP_RETRY_MAYFAIL = __GFP_RETRY_MAYFAIL;
const gfp_t RUST_CONST_HELPER___GFP_RECLAIM = __GFP_RECLAIM;
const gfp_t RUST_CONST_HELPER___GFP_COMP = __GFP_COMP;
const gfp_t RUST_CONST_HELPER___GFP_ACCOUNT = __GFP_ACCOUNT;
const unsigned int RUST_CONST_HELPER_PMD_ORDER = PMD_ORDER;
#endif
