// SPDX-License-Identifier: GPL-2.0

//! A cache model that proves the module's ownership decisions safe and
//! counts what they cost.
//!
//! [`sim`] simulates memory, a CPU write-back cache with spontaneous
//! evictions and speculative fills, and coherent and non-coherent devices,
//! some of whose mappings may bounce through swiotlb slots. [`script`]
//! generates event sequences that respect the dma-buf contract (plus the
//! misuse the core lets through), [`run`] drives the real `ownership.rs`
//! through them, performs exactly the operations it returns and checks
//! every read and write, and [`oracle`] computes the minimum maintenance
//! for the same sequence (without bouncing devices).

#[path = "../../../ownership.rs"]
pub mod ownership;

pub mod campaign;
pub mod exhaustive;
pub mod oracle;
pub mod rng;
pub mod run;
pub mod script;
pub mod sim;
