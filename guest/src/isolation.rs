// SPDX-License-Identifier: GPL-2.0

//! Data isolation: what one buffer held never shows up in a later one. Each
//! round frees a buffer full of a pattern and allocates the same size again
//! at once, which the page allocator's per-CPU free lists (last in, first
//! out) mostly serve with the very pages just freed; every byte must read
//! zero. Sizes cover each chunk order and mixes of them, and the previous
//! owner is our heap or the system heap.

use crate::{checks::allocate, ktap::Outcome, sys};
use dma_heap::{Heap, HeapKind};
use std::os::fd::OwnedFd;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const SIZES: [usize; 7] = [
    4 * KIB,
    12 * KIB,
    64 * KIB,
    68 * KIB,
    MIB,
    MIB + 64 * KIB + 4 * KIB,
    4 * MIB + 12 * KIB,
];
const ROUNDS: usize = 6;

/// Maps `fd`, checks it is all zero, then fills it with `byte`.
fn check_zero_then_fill(fd: &OwnedFd, len: usize, byte: u8) -> Outcome {
    let mut map = sys::Mapping::new(fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let sync = |flags| sys::dma_buf_sync(fd, flags).map_err(|e| format!("sync: {e}"));
    sync(sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)?;
    let dirty = map.bytes().iter().position(|&b| b != 0);
    map.bytes_mut().fill(byte);
    sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_RW)?;
    match dirty {
        None => Ok(()),
        Some(at) => Err(format!(
            "{len}-byte buffer: byte {at} is {:#x}, not 0",
            map.bytes()[at]
        )),
    }
}

pub fn freed_contents_never_reach_a_new_buffer() -> Outcome {
    let system = Heap::new(HeapKind::System).map_err(|e| format!("system heap: {e}"))?;
    let mut checked = 0usize;
    for len in SIZES {
        for round in 0..ROUNDS {
            let byte = 0x5a ^ round as u8;
            // Odd rounds: the previous owner was the system heap.
            if round % 2 == 1 {
                let fd = system
                    .allocate(len)
                    .map_err(|e| format!("system heap: {e}"))?;
                let mut map = sys::Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
                map.bytes_mut().fill(byte);
            }
            let fd = allocate(len as u64)?;
            check_zero_then_fill(&fd, len, byte).map_err(|e| format!("round {round}: {e}"))?;
            checked += len;
        }
    }
    println!(
        "# isolation: {} buffers, {} MiB checked zero after a patterned free",
        SIZES.len() * ROUNDS,
        checked / MIB
    );
    Ok(())
}
