// SPDX-License-Identifier: GPL-2.0
/*
 * The static-inline wrappers the abstractions in ../kernel/ call, one file
 * per header. In the kernel tree these files join rust/helpers/ and are
 * listed in its helpers.c; out of tree this file compiles them into the
 * module and bindgen reads it for their declarations.
 */

#include <linux/compiler_types.h>

#define __rust_helper

#include "dma-fence.c"
#include "dma-resv-interruptible.c"
#include "dma-streaming.c"
#include "mm-pfnmap.c"
#include "page-block.c"
#include "scatterlist-pages.c"
#include "signal-fatal.c"
#include "spinlock-irqsave.c"
#include "vmap.c"
#include "vmstat.c"
