// SPDX-License-Identifier: GPL-2.0

//! Out of tree only: the `bindings` the abstractions in `kernel/` use,
//! which in the kernel tree is the kernel crate's own. It is the kernel
//! crate's bindings plus what `bindings_helper.h` and `helpers/` add,
//! generated at build time (see `Kbuild`), and the declarations of the
//! driver's own C functions.

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

// Generated in the build directory (see `Kbuild`).
include!(env!("RDH_FFI_GENERATED"));

/// The static-inline wrappers of `helpers/`, under the names of the
/// functions they wrap (as the kernel crate's `bindings` has them).
mod helpers {
    use super::*;
    include!(env!("RDH_HELPERS_GENERATED"));
}
#[allow(unused_imports)]
pub(crate) use helpers::*;
