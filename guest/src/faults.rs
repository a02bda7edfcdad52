// SPDX-License-Identifier: GPL-2.0

//! Fault injection (test kernel: `CONFIG_FAILSLAB`, `CONFIG_FAIL_PAGE_ALLOC`).
//!
//! Every allocation on a path is made to fail in turn with the kernel's
//! per-thread `fail-nth` (as syzkaller does): the n-th slab or page
//! allocation of the next system call fails, for n = 1, 2, ... until the
//! call makes no more allocations. Each path: allocate, mmap, attach, map,
//! SYNC, an explicit fence. An injected failure must come back as `ENOMEM`
//! (or be absorbed: a failed high-order chunk falls back to a smaller one)
//! and leave nothing behind; the heap then works normally.
//!
//! Not vmap: the dma-buf core answers any exporter vmap failure with a
//! `WARN_ON_ONCE` (for every heap), which the test run rightly counts as a
//! kernel warning.

use crate::{
    baseline::Baseline,
    checks::{allocate, buffer_file, debugfs_number, ensure, open_heap},
    importer::{Dir, Session, Sync},
    ktap::Outcome,
    sys,
};
use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
};

/// A size that takes chunks of every order: 1 MiB + 64 KiB + 4 KiB.
const MIXED_LEN: u64 = (1 << 20) + (64 << 10) + 4096;
/// No path makes this many allocations; reaching it means fail-nth is broken.
const SITE_LIMIT: u32 = 2000;

/// The calling thread's `fail-nth` file, with the failure types set up to
/// apply to the heap's allocations. Dropping it disarms.
struct FailNth(File);

fn knob(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

impl FailNth {
    fn open() -> Result<Self, String> {
        let debugfs = "/sys/kernel/debug";
        for kind in ["failslab", "fail_page_alloc"] {
            // By default both skip allocations that may sleep, and
            // fail_page_alloc skips order 0 and highmem flags: all of ours.
            knob(&format!("{debugfs}/{kind}/ignore-gfp-wait"), "N")?;
            // One line per injected fault is noise; we count them ourselves.
            knob(&format!("{debugfs}/{kind}/verbose"), "0")?;
        }
        knob(
            &format!("{debugfs}/fail_page_alloc/ignore-gfp-highmem"),
            "N",
        )?;
        knob(&format!("{debugfs}/fail_page_alloc/min-order"), "0")?;
        let path = "/proc/thread-self/fail-nth";
        File::options()
            .read(true)
            .write(true)
            .open(path)
            .map(Self)
            .map_err(|e| format!("{path}: {e} (kernel without fault injection?)"))
    }

    /// Makes the `n`-th allocation from now on fail.
    fn arm(&self, n: u32) -> io::Result<()> {
        self.0.write_at(n.to_string().as_bytes(), 0).map(drop)
    }

    /// Whether the armed failure was injected (the counter reached 0);
    /// disarms it if not.
    fn injected(&self) -> io::Result<bool> {
        let mut text = [0u8; 16];
        let n = self.0.read_at(&mut text, 0)?;
        let left: u32 = String::from_utf8_lossy(&text[..n])
            .trim()
            .parse()
            .unwrap_or(1);
        if left != 0 {
            self.0.write_at(b"0", 0)?;
        }
        Ok(left == 0)
    }
}

impl Drop for FailNth {
    fn drop(&mut self) {
        let _ = self.0.write_at(b"0", 0);
    }
}

/// What failing every allocation of one path did.
#[derive(Default)]
struct Sweep {
    /// Allocations made to fail that the call reported as ENOMEM.
    enomem: u32,
    /// Allocations made to fail that the call recovered from.
    absorbed: u32,
}

/// Fails the 1st, 2nd, ... allocation of `op` (after a fresh `setup`
/// each time) until `op` succeeds without reaching the failure.
fn sweep<T>(
    fail: &FailNth,
    setup: impl FnMut() -> Result<T, String>,
    op: impl FnMut(&T) -> io::Result<()>,
) -> Result<Sweep, String> {
    sweep_checking(fail, setup, op, |_| Ok(()))
}

/// [`sweep`], and after each ENOMEM `unchanged` checks that the failed
/// call changed nothing.
fn sweep_checking<T>(
    fail: &FailNth,
    mut setup: impl FnMut() -> Result<T, String>,
    mut op: impl FnMut(&T) -> io::Result<()>,
    mut unchanged: impl FnMut(&T) -> Outcome,
) -> Result<Sweep, String> {
    let mut sweep = Sweep::default();
    for n in 1..SITE_LIMIT {
        let state = setup()?;
        fail.arm(n).map_err(|e| format!("arm fail-nth: {e}"))?;
        let result = op(&state);
        let injected = fail.injected().map_err(|e| format!("read fail-nth: {e}"))?;
        match (injected, result) {
            (false, Ok(())) => return Ok(sweep),
            (false, Err(e)) => return Err(format!("failed with no fault injected: {e}")),
            (true, Ok(())) => sweep.absorbed += 1,
            (true, Err(e)) if e.raw_os_error() == Some(libc::ENOMEM) => {
                unchanged(&state).map_err(|e| format!("after allocation {n} failed: {e}"))?;
                sweep.enomem += 1;
            }
            (true, Err(e)) => return Err(format!("allocation {n} failed: {e}, expected ENOMEM")),
        }
    }
    Err(format!("more than {SITE_LIMIT} allocations"))
}

/// A mapped writer that has not declared its accesses: every CPU read
/// invalidates (two reads, two invalidates). A failed explicit-fence call
/// must leave it so (before the fix, the attachment was already marked
/// fenced when the allocation failed, and the second read skipped its
/// invalidate). On the uncached heap CPU reads cost nothing either way.
fn still_unfenced(a: &Attached) -> Outcome {
    let file = buffer_file(&a.fd)?;
    let before = debugfs_number(&file, "invalidates")?;
    for _ in 0..2 {
        sys::dma_buf_sync(&a.fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)
            .and_then(|()| sys::dma_buf_sync(&a.fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ))
            .map_err(|e| format!("SYNC READ: {e}"))?;
    }
    let after = debugfs_number(&file, "invalidates")?;
    let want = if crate::uncached_boot() { 0 } else { 2 };
    ensure(after - before == want, || {
        format!(
            "two CPU reads cost {} invalidates, want {want}: the attachment counts as fenced",
            after - before
        )
    })
}

/// A buffer, attached (and optionally mapped) by a non-coherent device.
struct Attached {
    session: Session,
    attachment: crate::importer::Attachment,
    fd: std::os::fd::OwnedFd,
}

fn attached(mapped: bool) -> Result<Attached, String> {
    let fd = allocate(MIXED_LEN)?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let device = session.device(false).map_err(|e| format!("device: {e}"))?;
    let attachment = session
        .attach(device, fd.as_raw_fd())
        .map_err(|e| format!("attach: {e}"))?;
    if mapped {
        session
            .map(attachment, Dir::FromDevice)
            .map_err(|e| format!("map: {e}"))?;
    }
    Ok(Attached {
        session,
        attachment,
        fd,
    })
}

/// Every allocation on every path fails once; see the module comment.
/// Prints one diagnostic line per path with the counts.
pub fn every_allocation_failure_is_enomem_and_leaves_nothing() -> Outcome {
    let baseline = Baseline::take()?;
    let fail = FailNth::open()?;
    let heap = open_heap().map_err(|e| format!("open heap: {e}"))?;
    let mut total = Sweep::default();
    let mut record = |path: &str, result: Result<Sweep, String>| -> Outcome {
        let sweep = result.map_err(|e| format!("{path}: {e}"))?;
        println!(
            "# faults: {path}: {} allocations failed: {} ENOMEM, {} absorbed",
            sweep.enomem + sweep.absorbed,
            sweep.enomem,
            sweep.absorbed
        );
        total.enomem += sweep.enomem;
        total.absorbed += sweep.absorbed;
        Ok(())
    };
    record(
        "allocate",
        sweep(
            &fail,
            || Ok(()),
            |()| {
                let mut data = sys::AllocationData {
                    len: MIXED_LEN,
                    fd: 0,
                    fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
                    heap_flags: 0,
                };
                sys::heap_alloc_raw(&heap, &mut data).map(drop)
            },
        ),
    )?;
    record(
        "mmap",
        sweep(
            &fail,
            || allocate(MIXED_LEN),
            |fd| sys::Mapping::new(fd, MIXED_LEN as usize, 0).map(drop),
        ),
    )?;
    record(
        "attach",
        sweep(
            &fail,
            || {
                let fd = allocate(MIXED_LEN)?;
                let session = Session::open().map_err(|e| format!("importer: {e}"))?;
                let device = session.device(false).map_err(|e| format!("device: {e}"))?;
                Ok((fd, session, device))
            },
            |(fd, session, device)| session.attach(*device, fd.as_raw_fd()).map(drop),
        ),
    )?;
    record(
        "map",
        sweep(
            &fail,
            || attached(false),
            |a| a.session.map(a.attachment, Dir::Bidirectional),
        ),
    )?;
    record(
        "explicit fence",
        sweep_checking(
            &fail,
            || attached(true),
            |a| {
                a.session
                    .fence(a.attachment, Sync::Explicit, Dir::FromDevice)
                    .map(drop)
            },
            still_unfenced,
        ),
    )?;
    record(
        "sync after a device write",
        sweep(
            &fail,
            || {
                let a = attached(true)?;
                a.session
                    .unmap(a.attachment)
                    .map_err(|e| format!("unmap: {e}"))?;
                Ok(a)
            },
            |a| {
                sys::dma_buf_sync(&a.fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)?;
                sys::dma_buf_sync(&a.fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)
            },
        ),
    )?;
    drop(fail);
    println!(
        "# faults: total: {} allocations failed: {} ENOMEM, {} absorbed",
        total.enomem + total.absorbed,
        total.enomem,
        total.absorbed
    );
    ensure(total.enomem > 0, || "no fault was ever injected".into())?;
    baseline.check_returned()?;
    // And the heap works as before.
    let fd = allocate(MIXED_LEN)?;
    let mut map =
        sys::Mapping::new(&fd, MIXED_LEN as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    map.bytes_mut().fill(0xa5);
    ensure(map.bytes().iter().all(|&b| b == 0xa5), || {
        "a buffer allocated afterwards lost a write".into()
    })
}
