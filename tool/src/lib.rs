// SPDX-License-Identifier: GPL-2.0

//! What the `rdh` tool and the test VM's guest program share: the raw
//! dma-heap/dma-buf ioctls, the importer test driver's interface, the
//! heap's debugfs files, and the benchmark scenarios and their player.

pub mod debugfs;
pub mod heaps;
pub mod importer;
pub mod pipeline;
pub mod sys;

/// The benchmark scenarios, as data (shared with the host's report).
#[allow(dead_code)]
#[path = "../../bench/scenarios.rs"]
pub mod scenarios;
