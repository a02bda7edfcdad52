// SPDX-License-Identifier: GPL-2.0

//! The C declarations the module uses: the kernel crate's bindings, the
//! driver's own C and C API (`glue/glue.h`), and, where the abstractions of
//! `rust/kernel/` are compiled into the module (`rdh_own_abstractions`),
//! what they add to the kernel crate's bindings (`rust/bindings_helper.h`,
//! `rust/helpers/`). All of it is generated at build time (see `Kbuild`).
//! The importer test driver includes this file too.

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    unreachable_pub,
    missing_docs,
    dead_code,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::cast_lossless,
    clippy::as_underscore
)]

pub(crate) use kernel::bindings::*;

include!(env!("RDH_GLUE_GENERATED"));

#[cfg(rdh_own_abstractions)]
include!(env!("RDH_LAYER_GENERATED"));

/// The static-inline wrappers of `rust/helpers/`, under the names of the
/// functions they wrap (as the kernel crate's `bindings` has them).
#[cfg(rdh_own_abstractions)]
mod helpers {
    use super::*;
    include!(env!("RDH_HELPERS_GENERATED"));
}
#[cfg(rdh_own_abstractions)]
#[allow(unused_imports)]
pub(crate) use helpers::*;
