// SPDX-License-Identifier: GPL-2.0

//! Data isolation: what one buffer held never shows up in a later one. Each
//! round frees a buffer full of a pattern and allocates the same size again
//! at once, which the page allocator's per-CPU free lists (last in, first
//! out) mostly serve with the very pages just freed; every byte must read
//! zero. Sizes cover each chunk order and mixes of them, and the previous
//! owner is our heap or the system heap. The page pool is on: it serves
//! what its worker zeroed, never what is still waiting to be zeroed.

use crate::{
    checks::{allocate, ensure},
    ktap::Outcome,
    pool, sys,
};
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
    let hits = pool::number("hit_bytes")?;
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
    // Half the rounds free one of ours just before: the page pool serves
    // what its worker has zeroed and never what is still on its backlog.
    let hit = pool::number("hit_bytes")? - hits;
    println!(
        "# isolation: {} buffers, {} MiB checked zero after a patterned free, {} KiB of them from the page pool",
        SIZES.len() * ROUNDS,
        checked / MIB,
        hit / 1024
    );
    ensure(hit > 0 || pool::number("limit_bytes")? == 0, || {
        "the page pool served none of the allocations".into()
    })
}

/// Frees a patterned buffer and allocates the same size at once, many
/// times in a row, so that allocations race with the pool's worker still
/// zeroing what was just freed: every byte must read zero.
pub fn allocation_racing_the_pool_worker_reads_zero() -> Outcome {
    let len = MIB + 64 * KIB + 4 * KIB;
    let mut fd = allocate(len as u64)?;
    for round in 0..200 {
        check_zero_then_fill(&fd, len, 0xc3).map_err(|e| format!("round {round}: {e}"))?;
        drop(fd);
        fd = allocate(len as u64)?;
    }
    Ok(())
}
