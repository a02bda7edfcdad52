// SPDX-License-Identifier: GPL-2.0

//! The KUnit suites that span modules: they drive the heap's buffers
//! through the dma-buf core as importer drivers do (attach, map, CPU
//! access, fences) and count the maintenance the heap performs. The suites
//! of single modules sit at the bottom of their files. All of them are
//! compiled into test builds only (`CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST`,
//! which `Kbuild` sets for `RDH_KUNIT=y`) and run when the module loads.

pub(crate) mod rig;
pub(crate) mod support;

mod exporter;
mod fences;
mod maintenance;
