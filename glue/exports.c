// SPDX-License-Identifier: GPL-2.0
/*
 * The exports of the C API that c_api.rs implements, in C: Rust code
 * cannot export a symbol.
 */
#include <linux/export.h>

#include "glue.h"

EXPORT_SYMBOL_GPL(rdh_dma_buf_access_reserve);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_commit);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_cancel);
EXPORT_SYMBOL_GPL(rdh_dma_buf_access_until);
EXPORT_SYMBOL_GPL(rdh_dma_buf_begin_cpu_access_range);
EXPORT_SYMBOL_GPL(rdh_dma_buf_end_cpu_access_range);
