// SPDX-License-Identifier: GPL-2.0

//! User space that touches its mmap without DMA_BUF_IOCTL_SYNC.
//!
//! Under `unbracketed_cpu=trap` (the default) user mappings get their
//! page-table entries from faults and lose them whenever a device may
//! change what the CPU should see, so an access outside a bracket faults
//! and gets the maintenance a SYNC would have given it. Each check runs the
//! same sequence under `trust` too, where that maintenance is missing: the
//! bug the trap exists for. The buffers' debugfs counters show both.

use crate::{
    checks::{allocate, buffer_file, debugfs_number, ensure, expect_errno},
    importer::{Dir, Session, Sync},
    kmsg::Kmsg,
    ktap::Outcome,
    sys::{self, Mapping},
};
use std::os::fd::{AsRawFd, OwnedFd};

const MIB: usize = 1 << 20;
const MODE: &str = "/sys/module/rust_dmabuf_heap/parameters/unbracketed_cpu";

/// What a buffer's debugfs file counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    cleans: u64,
    invalidates: u64,
    user_faults: u64,
    unbracketed_faults: u64,
    revokes: u64,
}

impl Counters {
    fn of(fd: &OwnedFd) -> Result<Self, String> {
        let file = buffer_file(fd)?;
        let n = |key| debugfs_number(&file, key);
        Ok(Self {
            cleans: n("cleans")?,
            invalidates: n("invalidates")?,
            user_faults: n("user_faults")?,
            unbracketed_faults: n("unbracketed_faults")?,
            revokes: n("user_revokes")?,
        })
    }

    /// What happened since `before`.
    fn since(self, before: Self) -> Self {
        Self {
            cleans: self.cleans - before.cleans,
            invalidates: self.invalidates - before.invalidates,
            user_faults: self.user_faults - before.user_faults,
            unbracketed_faults: self.unbracketed_faults - before.unbracketed_faults,
            revokes: self.revokes - before.revokes,
        }
    }
}

/// Allocates 1 MiB under `unbracketed_cpu=mode`.
fn allocate_with(mode: &str) -> Result<OwnedFd, String> {
    allocate_in(mode, MIB as u64)
}

/// Allocates `len` bytes under `unbracketed_cpu=mode` (the parameter
/// applies to new buffers), then sets the default back.
pub fn allocate_in(mode: &str, len: u64) -> Result<OwnedFd, String> {
    std::fs::write(MODE, mode).map_err(|e| format!("set unbracketed_cpu={mode}: {e}"))?;
    let fd = allocate(len);
    std::fs::write(MODE, "trap").map_err(|e| format!("reset unbracketed_cpu: {e}"))?;
    fd
}

fn importer_err(e: std::io::Error) -> String {
    format!("importer: {e}")
}

/// A buffer, a non-coherent device that has read it once (so that the
/// zeroes are cleaned and nothing is pending), and a mapping of it.
struct Setup {
    fd: OwnedFd,
    session: Session,
    device: crate::importer::Device,
    mapping: Mapping,
}

impl Setup {
    fn new(mode: &str) -> Result<Self, String> {
        let fd = allocate_with(mode)?;
        let session = Session::open().map_err(importer_err)?;
        let device = session.device(false).map_err(importer_err)?;
        session
            .job(device, fd.as_raw_fd(), Dir::ToDevice)
            .map_err(importer_err)?;
        let mapping = Mapping::new(&fd, MIB, 0).map_err(|e| format!("mmap: {e}"))?;
        Ok(Self {
            fd,
            session,
            device,
            mapping,
        })
    }

    fn job(&self, dir: Dir) -> Outcome {
        self.session
            .job(self.device, self.fd.as_raw_fd(), dir)
            .map_err(importer_err)
    }

    fn counters(&self) -> Result<Counters, String> {
        Counters::of(&self.fd)
    }

    /// Writes a page without SYNC.
    fn write_unbracketed(&mut self, byte: u8) {
        let bytes = self.mapping.bytes_mut();
        bytes[..4096].fill(byte);
        std::hint::black_box(bytes);
    }

    /// Reads a word without SYNC.
    fn read_unbracketed(&self) -> u8 {
        std::hint::black_box(self.mapping.bytes()[8])
    }
}

/// A frame written without SYNC, then mapped by a non-coherent device (the
/// encoder bug). Returns what the device's job cost.
fn write_then_device_reads(mode: &str) -> Result<Counters, String> {
    let mut s = Setup::new(mode)?;
    let before = s.counters()?;
    s.write_unbracketed(0x5a);
    s.job(Dir::ToDevice)?;
    Ok(s.counters()?.since(before))
}

pub fn writer_without_sync_gets_its_clean_before_a_noncoherent_map() -> Outcome {
    let trap = write_then_device_reads("trap")?;
    let trust = write_then_device_reads("trust")?;
    ensure(
        trap.cleans == 1 && trap.unbracketed_faults == 1 && trap.revokes == 1,
        || format!("trap: {trap:?} (want 1 clean, 1 unbracketed fault, 1 revoke)"),
    )?;
    ensure(trust.cleans == 0 && trust.user_faults == 0, || {
        format!("trust: {trust:?} (want no clean: the frame never reaches memory)")
    })
}

/// The CPU reads without SYNC, a non-coherent device writes the buffer and
/// unmaps, the CPU reads again without SYNC (the camera bug). Returns what
/// the device's job and the second read cost.
fn device_writes_then_read(mode: &str) -> Result<Counters, String> {
    let s = Setup::new(mode)?;
    s.read_unbracketed();
    let before = s.counters()?;
    s.job(Dir::FromDevice)?;
    s.read_unbracketed();
    Ok(s.counters()?.since(before))
}

pub fn reader_without_sync_after_a_device_write_gets_its_invalidate() -> Outcome {
    let trap = device_writes_then_read("trap")?;
    let trust = device_writes_then_read("trust")?;
    ensure(
        trap.invalidates == 1 && trap.unbracketed_faults == 1 && trap.revokes == 1,
        || format!("trap: {trap:?} (want 1 invalidate, 1 unbracketed fault, 1 revoke)"),
    )?;
    ensure(trust.invalidates == 0, || {
        format!("trust: {trust:?} (want no invalidate: the read sees stale lines)")
    })
}

/// Ten frames of: the CPU writes under SYNC, a non-coherent device reads,
/// then the CPU reads what the device wrote under SYNC. Returns the cost.
fn disciplined_frames(mode: &str) -> Result<Counters, String> {
    let mut s = Setup::new(mode)?;
    let before = s.counters()?;
    for frame in 0..10u8 {
        sys::dma_buf_sync(&s.fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_WRITE)
            .map_err(|e| e.to_string())?;
        s.write_unbracketed(frame);
        sys::dma_buf_sync(&s.fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)
            .map_err(|e| e.to_string())?;
        s.job(Dir::Bidirectional)?;
        sys::dma_buf_sync(&s.fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)
            .map_err(|e| e.to_string())?;
        s.read_unbracketed();
        sys::dma_buf_sync(&s.fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)
            .map_err(|e| e.to_string())?;
    }
    Ok(s.counters()?.since(before))
}

pub fn disciplined_user_pays_the_same_maintenance_and_never_faults_outside_a_bracket() -> Outcome {
    let trap = disciplined_frames("trap")?;
    let trust = disciplined_frames("trust")?;
    ensure(trap.unbracketed_faults == 0, || {
        format!("trap: {trap:?} (want no fault outside a bracket)")
    })?;
    ensure(
        (trap.cleans, trap.invalidates) == (trust.cleans, trust.invalidates)
            && (trap.cleans, trap.invalidates) == (10, 10),
        || format!("trap {trap:?}, trust {trust:?}: want 10 cleans and 10 invalidates each"),
    )
}

/// One log line per buffer, naming the process, however often it skips
/// SYNC.
pub fn first_access_outside_sync_is_logged_once_naming_the_process() -> Outcome {
    let mut kmsg = Kmsg::open_and_skip_backlog().map_err(|e| format!("/dev/kmsg: {e}"))?;
    let mut s = Setup::new("trap")?;
    for frame in 0..3 {
        s.write_unbracketed(frame);
        s.job(Dir::ToDevice)?;
    }
    let faults = s.counters()?.unbracketed_faults;
    // SAFETY: `st` is a valid out-parameter for fstat on an open fd.
    let ino = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(s.fd.as_raw_fd(), &mut st);
        st.st_ino
    };
    let ours = format!("[{}] wrote dma-buf {ino} ", std::process::id());
    let lines: Vec<String> = kmsg
        .drain()
        .into_iter()
        .filter(|l| l.contains(&ours))
        .collect();
    ensure(faults == 3 && lines.len() == 1, || {
        format!(
            "{faults} unbracketed faults (want 3), log lines {lines:?} (want one with {ours:?})"
        )
    })?;
    ensure(lines[0].contains("outside DMA_BUF_IOCTL_SYNC"), || {
        format!("log line {:?}", lines[0])
    })
}

/// A revocation reaches every mapping of the buffer, also in a child
/// process: a write through any of them afterwards faults.
pub fn revocation_reaches_every_mapping_and_process() -> Outcome {
    let mut s = Setup::new("trap")?;
    let mut second = Mapping::new(&s.fd, MIB, 0).map_err(|e| format!("mmap: {e}"))?;
    s.write_unbracketed(1);
    second.bytes_mut()[4096] = 2;
    s.job(Dir::ToDevice)?;
    let before = s.counters()?;
    second.bytes_mut()[4096] = 3;
    let after_second = s.counters()?.since(before);
    s.job(Dir::ToDevice)?;
    let before = s.counters()?;
    // SAFETY: The guest is single-threaded here; the child only writes to
    // the mapping and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        s.write_unbracketed(4);
        // SAFETY: Leave the child at once, without running destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let after_child = s.counters()?.since(before);
    ensure(after_second.unbracketed_faults == 1, || {
        format!("a write through the second mapping after a revocation: {after_second:?}")
    })?;
    ensure(
        after_child.unbracketed_faults == 1 && s.mapping.bytes()[0] == 4,
        || format!("a write by a child after a revocation: {after_child:?}"),
    )?;
    let before = s.counters()?;
    s.job(Dir::ToDevice)?;
    let cost = s.counters()?.since(before);
    ensure(cost.cleans == 1, || {
        format!("the child's write was not cleaned for the device: {cost:?}")
    })
}

/// A private mapping cannot be trapped: read-only works (it cannot be made
/// writable later), writable is refused.
pub fn private_mappings_are_read_only_or_einval() -> Outcome {
    let fd = allocate_with("trap")?;
    let map = |prot| {
        // SAFETY: A fresh private mapping; the kernel validates the request.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MIB,
                prot,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(ptr)
        }
    };
    expect_errno(
        map(libc::PROT_READ | libc::PROT_WRITE),
        libc::EINVAL,
        "private writable mmap",
    )?;
    let ptr = map(libc::PROT_READ).map_err(|e| format!("private read-only mmap: {e}"))?;
    // SAFETY: `ptr` maps MIB readable bytes.
    let zero = unsafe { std::ptr::read_volatile(ptr.cast::<u64>()) };
    // SAFETY: As above; making a mapping without VM_MAYWRITE writable fails.
    let mprotect = unsafe { libc::mprotect(ptr, MIB, libc::PROT_READ | libc::PROT_WRITE) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `ptr` is the mapping made above.
    unsafe { libc::munmap(ptr, MIB) };
    ensure(zero == 0 && mprotect != 0, || {
        format!("read {zero:#x}, mprotect to writable: {mprotect} ({err})")
    })
}

/// A one-page buffer (one chunk: the remap path maps it with one call)
/// from every heap and policy, mapped at once or on faults.
fn one_page_buffers() -> Result<Vec<(String, OwnedFd)>, String> {
    let policy = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|v| v.trim().to_string())
            .map_err(|e| format!("{path}: {e}"))
    };
    let page_of = |name: &str| {
        dma_heap::Heap::new(dma_heap::HeapKind::Custom(crate::checks::heap_path(name)))
            .and_then(|heap| heap.allocate(4096))
            .map_err(|e| format!("{name}: allocate 4096: {e}"))
    };
    let (policy_was, mode_was) = (read(policy)?, read(MODE)?);
    let (cached, uncached) = (crate::cached_heap_name(), crate::uncached_heap_name());
    let mut out = Vec::new();
    for (p, m) in [
        ("tracked", "trap"),
        ("tracked", "trust"),
        ("always", "trust"),
    ] {
        std::fs::write(policy, p).map_err(|e| format!("sync_policy={p}: {e}"))?;
        std::fs::write(MODE, m).map_err(|e| format!("unbracketed_cpu={m}: {e}"))?;
        let fd = page_of(&cached);
        std::fs::write(policy, &policy_was).map_err(|e| format!("sync_policy: {e}"))?;
        std::fs::write(MODE, &mode_was).map_err(|e| format!("unbracketed_cpu: {e}"))?;
        out.push((format!("{cached} ({p}, {m})"), fd?));
    }
    if crate::checks::heap_path(&uncached).exists() {
        out.push((uncached.clone(), page_of(&uncached)?));
    }
    Ok(out)
}

/// Maps page 0 of `fd` private read-only as an unprivileged user (nobody)
/// in a child process and returns the offset of that mapping's line in
/// the child's `/proc/self/maps`.
fn private_mapping_offset_as_nobody(fd: &OwnedFd) -> Result<u64, String> {
    let report = crate::child::in_child(
        || {
            // SAFETY: Plain system calls; the child drops its privileges.
            if unsafe { libc::setgid(65534) != 0 || libc::setuid(65534) != 0 } {
                return Err(format!("setuid: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: A fresh private mapping; the kernel validates it.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: `ptr` maps 4096 readable bytes (a fault maps a
            // trapped one).
            let zero = unsafe { std::ptr::read_volatile(ptr.cast::<u8>()) };
            let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
            let start = format!("{:x}-", ptr as usize);
            let line = maps
                .lines()
                .find(|l| l.starts_with(&start))
                .ok_or_else(|| format!("no line for {start} in /proc/self/maps"))?;
            if zero != 0 {
                return Err(format!("read {zero:#x}, not 0: {line}"));
            }
            let offset = line.split_whitespace().nth(2).unwrap_or("?");
            u64::from_str_radix(offset, 16)
                .map(|offset| offset.to_string())
                .map_err(|_| format!("bad line {line}"))
        },
        false,
    )?;
    report.parse().map_err(|_| format!("bad report {report}"))
}

/// A private mapping is never copy-on-write, on any heap and policy: a
/// read-only one shows offset 0 in an unprivileged process's
/// `/proc/self/maps` (a copy-on-write pfn mapping would show the page's
/// physical frame number there) and cannot be made writable; a writable
/// one is refused with EINVAL.
pub fn private_mappings_never_show_a_physical_address() -> Outcome {
    for (what, fd) in one_page_buffers()? {
        let offset = private_mapping_offset_as_nobody(&fd).map_err(|e| format!("{what}: {e}"))?;
        ensure(offset == 0, || {
            format!("{what}: a private read-only mapping shows offset {offset:#x}")
        })?;
        // SAFETY: A fresh private mapping; the kernel validates it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        };
        let mapped = if ptr == libc::MAP_FAILED {
            Err(std::io::Error::last_os_error())
        } else {
            // SAFETY: The mapping made above.
            unsafe { libc::munmap(ptr, 4096) };
            Ok(())
        };
        expect_errno(
            mapped,
            libc::EINVAL,
            &format!("{what}: private writable mmap"),
        )?;
    }
    Ok(())
}

/// A process killed between SYNC START and END leaves its bracket open for
/// ever (the dma-buf core keeps no record per process). A non-coherent
/// device then writes (maps, unmaps) and another process reads without
/// SYNC: its fault must invalidate, as if no bracket were open, so that it
/// reads the device's bytes (QEMU models no cache: the counters show it).
pub fn a_bracket_left_open_by_a_killed_process_excuses_no_later_fault() -> Outcome {
    let s = Setup::new("trap")?;
    crate::child::in_child(
        || {
            sys::dma_buf_sync(&s.fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)
                .map(|()| String::new())
                .map_err(|e| format!("SYNC START: {e}"))
        },
        true,
    )?;
    let depth = debugfs_number(&buffer_file(&s.fd)?, "cpu_depth")?;
    s.job(Dir::FromDevice)?;
    let before = s.counters()?;
    let _ = s.read_unbracketed();
    let read = s.counters()?.since(before);
    ensure(depth == 1, || {
        format!("the killed process's bracket: depth {depth}, want 1")
    })?;
    ensure(read.user_faults == 1 && read.invalidates == 1, || {
        format!("the read after the device's write: {read:?}, want a fault that invalidates")
    })
}

/// A process waits for a camera's write fence and reads the frame without
/// SYNC through the read entries its previous read's fault left (the
/// camera stays mapped and reports each frame with a fence). The signal
/// itself invalidates, from the fence callback, so the read needs no
/// fault and sees the new frame (QEMU models no cache: the counters show
/// it).
pub fn reader_whose_entries_stay_sees_a_signalled_write() -> Outcome {
    let fd = allocate_with("trap")?;
    let mapping = Mapping::new(&fd, MIB, 0).map_err(|e| format!("mmap: {e}"))?;
    let session = Session::open().map_err(importer_err)?;
    let camera = session.device(false).map_err(importer_err)?;
    let a = session
        .attach(camera, fd.as_raw_fd())
        .map_err(importer_err)?;
    let frame = || -> Outcome {
        let fence = session
            .fence(a, Sync::Explicit, Dir::FromDevice)
            .map_err(importer_err)?;
        session.signal(fence, 0).map_err(importer_err)
    };
    frame()?;
    session.map(a, Dir::FromDevice).map_err(importer_err)?;
    // The first frame, read without SYNC: a fault maps read entries.
    std::hint::black_box(mapping.bytes()[8]);
    let before = Counters::of(&fd)?;
    frame()?;
    let signalled = Counters::of(&fd)?.since(before);
    std::hint::black_box(mapping.bytes()[8]);
    let read = Counters::of(&fd)?.since(before);
    ensure(
        signalled.invalidates == 1 && signalled.revokes == 0 && read == signalled,
        || {
            format!("the signal: {signalled:?}, with the read after it: {read:?}; want one invalidate at the signal, no revocation, no fault")
        },
    )
}

/// The two-word parameters refuse anything else with EINVAL and keep their
/// value.
pub fn parameters_refuse_unknown_words() -> Outcome {
    let policy = "/sys/module/rust_dmabuf_heap/parameters/sync_policy";
    for (path, value) in [(policy, "tracked"), (MODE, "trap")] {
        expect_errno(
            std::fs::write(path, "bogus"),
            libc::EINVAL,
            &format!("{path} = bogus"),
        )?;
        let now = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        ensure(now.trim() == value, || {
            format!("{path} is {now:?} after the refusal")
        })?;
    }
    Ok(())
}

/// What user space may do to a trapped mapping, besides reading and
/// writing: `mprotect` down and up again, `MADV_DONTNEED` (refused for pfn
/// mappings, EINVAL), a partial `munmap`, and `mremap` to grow it (refused:
/// `VM_DONTEXPAND`). The data stays, and nothing oopses.
pub fn trapped_mappings_survive_mprotect_madvise_munmap_and_mremap() -> Outcome {
    let fd = allocate_with("trap")?;
    let len = MIB;
    let trapped = Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let ptr = trapped.as_ptr();
    let bytes = ptr.cast::<u8>();
    let check = |what: &str, ok: bool| {
        ensure(ok, || {
            format!("{what}: {}", std::io::Error::last_os_error())
        })
    };
    // SAFETY: Every access below stays inside the `len` bytes mapped above
    // (`trapped` unmaps what is left when dropped), while they are mapped
    // and with the protection they have.
    unsafe {
        // A read fault maps read-only; mprotect down, then up and write: the
        // write comes in through pfn_mkwrite.
        let _ = std::ptr::read_volatile(bytes);
        check(
            "mprotect read-only",
            libc::mprotect(ptr, len, libc::PROT_READ) == 0,
        )?;
        let _ = std::ptr::read_volatile(bytes.add(4096));
        check(
            "mprotect read-write",
            libc::mprotect(ptr, len, libc::PROT_READ | libc::PROT_WRITE) == 0,
        )?;
        std::ptr::write_volatile(bytes, 0x11);
        std::ptr::write_volatile(bytes.add(len - 1), 0x22);
        // `MADV_DONTNEED` is refused for pfn mappings (as for the system
        // heap's); the data stays.
        let dontneed = libc::madvise(ptr, len, libc::MADV_DONTNEED);
        let errno = std::io::Error::last_os_error().raw_os_error();
        ensure(dontneed != 0 && errno == Some(libc::EINVAL), || {
            format!("madvise(MADV_DONTNEED): {dontneed} ({errno:?}), want EINVAL")
        })?;
        let first = std::ptr::read_volatile(bytes);
        // Growing is refused; the mapping stays as it was.
        let grown = libc::mremap(ptr, len, 2 * len, 0);
        check("mremap to grow is refused", grown == libc::MAP_FAILED)?;
        // Unmapping the middle leaves two working pieces.
        check(
            "partial munmap",
            libc::munmap(bytes.add(4096).cast(), 8192) == 0,
        )?;
        std::ptr::write_volatile(bytes.add(len - 2), 0x33);
        let last = std::ptr::read_volatile(bytes.add(len - 1));
        ensure(first == 0x11 && last == 0x22, || {
            format!("after mremap and munmap: read {first:#x} and {last:#x}, want 0x11 and 0x22")
        })?;
    }
    // A new mapping sees every write.
    let map = Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let b = map.bytes();
    ensure(
        b[0] == 0x11 && b[len - 2] == 0x33 && b[len - 1] == 0x22,
        || {
            format!(
                "a new mapping reads {:#x} {:#x} {:#x}",
                b[0],
                b[len - 2],
                b[len - 1]
            )
        },
    )
}
