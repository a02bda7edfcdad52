// SPDX-License-Identifier: GPL-2.0

//! Load: threads (one per vCPU) doing random operations on a shared pool of
//! buffers for a fixed number of operations, within a time limit: allocate,
//! close, CPU write and read through mmap (mostly inside SYNC brackets,
//! one in three without), device jobs
//! (attach, map, fence, unmap, detach) on coherent and non-coherent fake
//! devices, mappings held across other threads' operations and across
//! close, fences signalled from a workqueue while the buffer is closed, and
//! fills and checks through the importer's kernel mapping. Every check of
//! the data must match what was last written, by user space or the kernel,
//! and afterwards nothing is left.
//!
//! A buffer's content is guarded by a user-space lock only for writes and
//! checks; everything else runs concurrently with them, from any thread.

use crate::{
    baseline::Baseline,
    checks::allocate,
    importer::{self, Attachment, Device, Dir, Session, Sync},
    ktap::Outcome,
    sys,
};
use std::{
    os::fd::{AsRawFd, OwnedFd},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 2000;
const TIME_LIMIT: Duration = Duration::from_secs(120);
/// Buffers in the shared pool at most.
const POOL: usize = 6;
/// Attachments one thread keeps mapped at most.
const HELD: usize = 3;
const SIZES: [usize; 5] = [4096, 68 << 10, 1 << 20, (1 << 20) + (68 << 10), 3 << 20];

/// What a buffer holds: zeroes, or the pattern of a seed.
#[derive(Clone, Copy)]
enum Content {
    Zero,
    Pattern(u32),
}

struct Data {
    content: Content,
    map: Option<sys::Mapping>,
}

struct Buffer {
    fd: OwnedFd,
    len: usize,
    data: Mutex<Data>,
}

type Pool = Mutex<Vec<Arc<Buffer>>>;

/// xorshift64*: reproducible per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Allocate,
    Close,
    CpuWrite,
    CpuRead,
    Munmap,
    DeviceJob,
    HoldMapping,
    ReleaseMapping,
    FenceThenClose,
    KernelFill,
    KernelCheck,
}

const OPS: [Op; 11] = [
    Op::Allocate,
    Op::Close,
    Op::CpuWrite,
    Op::CpuRead,
    Op::Munmap,
    Op::DeviceJob,
    Op::HoldMapping,
    Op::ReleaseMapping,
    Op::FenceThenClose,
    Op::KernelFill,
    Op::KernelCheck,
];

struct Worker {
    rng: Rng,
    pool: Arc<Pool>,
    session: Session,
    devices: [Device; 2],
    /// Every DMA mapping bounces on this boot.
    bounces: bool,
    /// Attachments this thread keeps mapped (their buffers may be closed).
    held: Vec<Attachment>,
    counts: [usize; OPS.len()],
}

fn os(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn check_content(bytes: &[u8], content: Content) -> Result<(), String> {
    let wrong = match content {
        Content::Zero => bytes.iter().position(|&b| b != 0),
        Content::Pattern(seed) => importer::pattern_mismatch(bytes, 0, seed),
    };
    match wrong {
        None => Ok(()),
        Some(at) => Err(format!("{} bytes: byte {at} differs", bytes.len())),
    }
}

impl Worker {
    fn pick(&mut self) -> Option<Arc<Buffer>> {
        let pool = self.pool.lock().unwrap();
        (!pool.is_empty()).then(|| pool[self.rng.below(pool.len())].clone())
    }

    /// Attaches a random device to `buffer` and maps it in a random
    /// direction.
    fn attach_mapped(&mut self, buffer: &Buffer) -> Result<(Attachment, Dir), String> {
        let device = self.devices[self.rng.below(2)];
        // The fake devices never write. Where their mappings bounce
        // (swiotlb=force), a writing direction copies the bounce slot back
        // at unmap, which is a device write racing the CPU's: then they only
        // read.
        let dir = if self.bounces {
            Dir::ToDevice
        } else {
            [Dir::ToDevice, Dir::FromDevice, Dir::Bidirectional][self.rng.below(3)]
        };
        let a = self
            .session
            .attach(device, buffer.fd.as_raw_fd())
            .map_err(os("attach"))?;
        self.session.map(a, dir).map_err(os("map"))?;
        Ok((a, dir))
    }

    /// A job fence of `a` (explicit or implicit at random), signalled
    /// after `delay_ms` (0: now).
    fn fence(&mut self, a: Attachment, dir: Dir, delay_ms: u32) -> Result<(), String> {
        let sync = if self.rng.below(2) == 0 {
            Sync::Explicit
        } else {
            Sync::Implicit
        };
        let fence = self.session.fence(a, sync, dir).map_err(os("fence"))?;
        self.session.signal(fence, delay_ms).map_err(os("signal"))
    }

    fn release(&self, a: Attachment) -> Result<(), String> {
        self.session.unmap(a).map_err(os("unmap"))?;
        self.session.detach(a).map_err(os("detach"))
    }

    fn run(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Allocate => {
                if self.pool.lock().unwrap().len() >= POOL {
                    return Ok(());
                }
                let len = SIZES[self.rng.below(SIZES.len())];
                let fd = allocate(len as u64)?;
                let buffer = Buffer {
                    fd,
                    len,
                    data: Mutex::new(Data {
                        content: Content::Zero,
                        map: None,
                    }),
                };
                self.pool.lock().unwrap().push(Arc::new(buffer));
            }
            Op::Close => {
                let mut pool = self.pool.lock().unwrap();
                if !pool.is_empty() {
                    let i = self.rng.below(pool.len());
                    // The fd closes when the last thread using it lets go.
                    pool.swap_remove(i);
                }
            }
            Op::CpuWrite | Op::CpuRead => {
                let Some(buffer) = self.pick() else {
                    return Ok(());
                };
                let mut data = buffer.data.lock().unwrap();
                if data.map.is_none() {
                    data.map =
                        Some(sys::Mapping::new(&buffer.fd, buffer.len, 0).map_err(os("mmap"))?);
                }
                let write = matches!(op, Op::CpuWrite);
                let dir = if write {
                    sys::DMA_BUF_SYNC_WRITE
                } else {
                    sys::DMA_BUF_SYNC_READ
                };
                // One access in three skips SYNC, as some user space does:
                // the heap's faults and revocations then race with the
                // other threads' maps, jobs and closes (QEMU's memory is
                // coherent, so the data checks still hold).
                let bracketed = self.rng.below(3) != 0;
                if bracketed {
                    sys::dma_buf_sync(&buffer.fd, sys::DMA_BUF_SYNC_START | dir)
                        .map_err(os("sync start"))?;
                }
                let seed = self.rng.next() as u32;
                let content = data.content;
                let map = data.map.as_mut().ok_or("no mapping")?;
                let checked = if write {
                    importer::fill_pattern(map.bytes_mut(), 0, seed);
                    Ok(())
                } else {
                    check_content(map.bytes(), content).map_err(|e| format!("CPU read: {e}"))
                };
                if bracketed {
                    sys::dma_buf_sync(&buffer.fd, sys::DMA_BUF_SYNC_END | dir)
                        .map_err(os("sync end"))?;
                }
                checked?;
                if write {
                    data.content = Content::Pattern(seed);
                }
            }
            Op::Munmap => {
                if let Some(buffer) = self.pick() {
                    buffer.data.lock().unwrap().map = None;
                }
            }
            Op::DeviceJob => {
                let Some(buffer) = self.pick() else {
                    return Ok(());
                };
                let (a, dir) = self.attach_mapped(&buffer)?;
                if self.rng.below(2) == 0 {
                    self.fence(a, dir, 0)?;
                }
                self.release(a)?;
            }
            Op::HoldMapping => {
                let Some(buffer) = self.pick() else {
                    return Ok(());
                };
                if self.held.len() >= HELD {
                    return self.run(Op::ReleaseMapping);
                }
                let (a, _) = self.attach_mapped(&buffer)?;
                self.held.push(a);
            }
            Op::ReleaseMapping => {
                if !self.held.is_empty() {
                    let a = self.held.swap_remove(self.rng.below(self.held.len()));
                    self.release(a)?;
                }
            }
            Op::FenceThenClose => {
                let Some(buffer) = self.pick() else {
                    return Ok(());
                };
                let (a, dir) = self.attach_mapped(&buffer)?;
                let delay_ms = 1 + self.rng.below(4) as u32;
                self.fence(a, dir, delay_ms)?;
                // Close (if no other thread holds it) while the fence is
                // pending; the attachment goes later, with a released one.
                self.pool
                    .lock()
                    .unwrap()
                    .retain(|b| !Arc::ptr_eq(b, &buffer));
                drop(buffer);
                self.held.push(a);
                if self.held.len() > HELD {
                    self.run(Op::ReleaseMapping)?;
                }
            }
            Op::KernelFill | Op::KernelCheck => {
                let Some(buffer) = self.pick() else {
                    return Ok(());
                };
                let mut data = buffer.data.lock().unwrap();
                let vmap = self
                    .session
                    .vmap(buffer.fd.as_raw_fd())
                    .map_err(os("vmap"))?;
                let result = match (op, data.content) {
                    (Op::KernelFill, _) => {
                        let seed = self.rng.next() as u32;
                        self.session
                            .fill(vmap, seed)
                            .map(|()| data.content = Content::Pattern(seed))
                            .map_err(os("kernel fill"))
                    }
                    (_, Content::Pattern(seed)) => match self.session.verify(vmap, seed) {
                        Ok(None) => Ok(()),
                        Ok(Some(at)) => Err(format!(
                            "kernel read of {} bytes: byte {at} differs",
                            buffer.len
                        )),
                        Err(e) => Err(format!("kernel check: {e}")),
                    },
                    (_, Content::Zero) => Ok(()),
                };
                self.session.vunmap(vmap).map_err(os("vunmap"))?;
                result?;
            }
        }
        let i = OPS
            .iter()
            .position(|o| std::mem::discriminant(o) == std::mem::discriminant(&op))
            .unwrap_or(0);
        self.counts[i] += 1;
        Ok(())
    }
}

/// One thread's result: operations run per kind, or the first failure.
fn worker(index: usize, pool: Arc<Pool>, deadline: Instant) -> Result<[usize; OPS.len()], String> {
    let session = Session::open().map_err(os("importer"))?;
    let devices = [
        session.device(false).map_err(os("device"))?,
        session.device(true).map_err(os("device"))?,
    ];
    let mut worker = Worker {
        rng: Rng(0x5eed_0000 + index as u64 * 0x9e37_79b9),
        pool,
        session,
        devices,
        bounces: crate::checks::dma_bounces_everywhere(),
        held: Vec::new(),
        counts: [0; OPS.len()],
    };
    for step in 0..OPS_PER_THREAD {
        if Instant::now() > deadline {
            break;
        }
        let op = OPS[worker.rng.below(OPS.len())];
        worker
            .run(op)
            .map_err(|e| format!("thread {index} step {step} {op:?}: {e}"))?;
    }
    Ok(worker.counts)
}

pub fn concurrent_random_operations_keep_data_and_leave_nothing() -> Outcome {
    let baseline = Baseline::take()?;
    let pool: Arc<Pool> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + TIME_LIMIT;
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || worker(i, pool, deadline))
        })
        .collect();
    let mut totals = [0usize; OPS.len()];
    let mut failures = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(Ok(counts)) => totals.iter_mut().zip(counts).for_each(|(t, c)| *t += c),
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a thread panicked".to_string()),
        }
    }
    pool.lock().unwrap().clear();
    let ops: usize = totals.iter().sum();
    let kinds: Vec<String> = OPS
        .iter()
        .zip(totals)
        .map(|(op, n)| format!("{op:?} {n}"))
        .collect();
    println!(
        "# stress: {THREADS} threads, {ops} operations in {:.1} s: {}",
        start.elapsed().as_secs_f64(),
        kinds.join(", ")
    );
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    let planned = THREADS * OPS_PER_THREAD;
    if start.elapsed() > TIME_LIMIT {
        println!("# stress: time limit reached after {ops} of {planned} planned operations");
    }
    baseline.check_returned()
}
