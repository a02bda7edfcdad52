// SPDX-License-Identifier: GPL-2.0
/*
 * The static-inline wrappers the abstractions in ../kernel/ call, one file
 * per header. In the kernel tree these files join rust/helpers/ and are
 * listed in its helpers.c; out of tree this file compiles them into the
 * module and bindgen reads it for their declarations.
 */

#include <linux/compiler_types.h>

#define __rust_helper

#include "dma_fence.c"
#include "dma_mapping.c"
#include "dma_resv.c"
#include "mm_pfnmap.c"
#include "mm_stat.c"
#include "page_block.c"
#include "scatterlist_pages.c"
#include "spinlock_irqsave.c"
#include "task_signal.c"
#include "vmap.c"
