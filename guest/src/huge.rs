// SPDX-License-Identifier: GPL-2.0

//! Huge user entries: a trapped mapping maps each 2 MiB chunk of a buffer
//! with one PMD entry when its address is 2 MiB-aligned, and everything the
//! mm core can do to such an entry (revoke, upgrade, mprotect, fork, a
//! partial munmap) keeps the data and the traps.

use crate::{
    checks::{allocate, buffer_file, debugfs_number, ensure, stats_number},
    child::in_child,
    importer::{Dir, Session},
    ktap::{Outcome, SKIP},
    sys::Mapping,
};
use std::os::fd::{AsRawFd, OwnedFd};

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// The heap-wide fault counters (debugfs `stats`), to take differences of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    pub fault_calls: u64,
    pub entries: u64,
    pub huge: u64,
}

impl Entries {
    /// `n` fault calls, each writing one huge entry.
    fn huge_faults(n: u64) -> Self {
        Self {
            fault_calls: n,
            entries: n,
            huge: n,
        }
    }

    /// What `access` returned, and the counters it moved.
    pub fn during<T>(access: impl FnOnce() -> T) -> Result<(T, Self), String> {
        let before = Self::now()?;
        let value = access();
        Ok((value, Self::now()?.since(before)))
    }

    fn now() -> Result<Self, String> {
        Ok(Self {
            fault_calls: stats_number("fault_calls")?,
            entries: stats_number("user_entries")?,
            huge: stats_number("user_huge_entries")?,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            fault_calls: self.fault_calls - before.fault_calls,
            entries: self.entries - before.entries,
            huge: self.huge - before.huge,
        }
    }
}

/// A buffer of `len` bytes made only of 2 MiB chunks (after compacting
/// memory, so the page allocator has them), or a skip where this kernel
/// cannot map PFNs with huge entries.
fn huge_buffer(len: usize) -> Result<OwnedFd, String> {
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        return Err(format!(
            "{SKIP}no huge user entries without CONFIG_TRANSPARENT_HUGEPAGE"
        ));
    }
    let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
    let fd = allocate(len as u64)?;
    let runs = debugfs_number(&buffer_file(&fd)?, "huge_runs")?;
    ensure(runs as usize == len / HUGE, || {
        format!("a {len}-byte buffer has {runs} 2 MiB chunks after compaction")
    })?;
    Ok(fd)
}

/// Writes `tag` and the page's index into the first word of every page.
fn write_pages(map: &mut Mapping, tag: u64) {
    for (i, page) in map.bytes_mut().chunks_exact_mut(PAGE).enumerate() {
        // SAFETY: The page is 4096 bytes long and 4096-aligned.
        unsafe {
            page.as_mut_ptr()
                .cast::<u64>()
                .write_volatile(tag << 32 | i as u64)
        };
    }
}

/// The first page whose first word is not `tag` and its index, if any.
fn first_wrong_page(bytes: &[u8], tag: u64) -> Option<usize> {
    bytes.chunks_exact(PAGE).enumerate().position(|(i, page)| {
        // SAFETY: As above.
        let word = unsafe { page.as_ptr().cast::<u64>().read_volatile() };
        word != tag << 32 | i as u64
    })
}

/// A trapped 8 MiB frame of four 2 MiB chunks, mapped at a 2 MiB-aligned
/// address, is written with four faults and four entries; after a
/// non-coherent device's map revoked them, read back with four read-only
/// entries, and a write upgrades its entry through the huge fault. The same
/// buffer mapped at an unaligned address takes PTEs and sees every write.
pub fn an_aligned_frame_of_2_mib_chunks_maps_one_entry_per_chunk() -> Outcome {
    let len = 8 << 20;
    let fd = huge_buffer(len)?;
    let mut map = Mapping::aligned(&fd, len, HUGE).map_err(|e| format!("mmap: {e}"))?;
    let session = Session::open().map_err(|e| format!("importer: {e}"))?;
    let device = session
        .device(false)
        .map_err(|e| format!("importer: {e}"))?;
    let job = || {
        session
            .job(device, fd.as_raw_fd(), Dir::ToDevice)
            .map_err(|e| format!("importer: {e}"))
    };
    let ((), written) = Entries::during(|| write_pages(&mut map, 1))?;
    let four = Entries::huge_faults(4);
    ensure(written == four, || {
        format!("writing the frame took {written:?}, want {four:?}")
    })?;
    job()?;
    let (wrong, read) = Entries::during(|| first_wrong_page(map.bytes(), 1))?;
    ensure(wrong.is_none() && read == four, || {
        format!("after a revocation the frame reads page {wrong:?} wrong, taking {read:?} (want {four:?})")
    })?;
    let ((), upgraded) = Entries::during(|| map.bytes_mut()[HUGE + 8] = 0x5a)?;
    let one = Entries::huge_faults(1);
    ensure(upgraded == one, || {
        format!("a write to a read-only huge entry took {upgraded:?}, want {one:?}")
    })?;
    let unaligned = Mapping::placed(&fd, len, HUGE, PAGE).map_err(|e| format!("mmap: {e}"))?;
    let (byte, small) = Entries::during(|| unaligned.bytes()[HUGE + 8])?;
    ensure(byte == 0x5a && small.huge == 0, || {
        format!(
            "an unaligned mapping reads {byte:#x} (want 0x5a), taking {small:?} (no huge entry)"
        )
    })
}

/// The mm core on huge entries: a child inherits them and loses them to a
/// revocation like its parent; mprotect down and up changes them in place;
/// mprotect or munmap of
/// half an entry splits it, and both halves keep working. A new mapping
/// sees every write.
pub fn huge_entries_survive_fork_mprotect_and_half_munmap() -> Outcome {
    let len = 4 << 20;
    let fd = huge_buffer(len)?;
    let mut map = Mapping::aligned(&fd, len, HUGE).map_err(|e| format!("mmap: {e}"))?;
    write_pages(&mut map, 2);
    let inode = buffer_file(&fd)?;
    let unbracketed = || debugfs_number(&inode, "unbracketed_faults");
    // The child reads through the copied entries without a fault, revokes
    // them with a device's map, and faults on its write.
    let child = in_child(
        || {
            let e = |e: std::io::Error| format!("importer: {e}");
            let (wrong, inherited) = Entries::during(|| first_wrong_page(map.bytes(), 2))?;
            let inherited = inherited.fault_calls;
            let session = Session::open().map_err(e)?;
            let device = session.device(false).map_err(e)?;
            session
                .job(device, fd.as_raw_fd(), Dir::ToDevice)
                .map_err(e)?;
            let faults = unbracketed()?;
            // SAFETY: Inside the child's copy of the mapping.
            unsafe { map.as_ptr().cast::<u8>().add(HUGE).write_volatile(0x77) };
            let after_revoke = unbracketed()? - faults;
            Ok(format!("{wrong:?} {inherited} {after_revoke}"))
        },
        false,
    )?;
    ensure(child == "None 0 1", || {
        format!("child: wrong page, faults reading inherited entries, faults writing after a revocation = {child} (want None 0 1)")
    })?;
    let ptr = map.as_ptr().cast::<u8>();
    let check = |what: &str, ok: bool| {
        ensure(ok, || {
            format!("{what}: {}", std::io::Error::last_os_error())
        })
    };
    // Runs `access` and checks that it mapped `huge` huge entries.
    let mapping = |what: &str, huge: u64, access: &dyn Fn()| {
        let ((), took) = Entries::during(access)?;
        ensure(took.huge == huge, || {
            format!("{what} took {took:?}, want {huge} huge entries")
        })
    };
    // SAFETY (of every access below): Inside the `len` bytes mapped above,
    // while they are mapped and with the protection they have; `map` unmaps
    // what is left when dropped.
    let read = |offset: usize| unsafe { std::ptr::read_volatile(ptr.add(offset)) };
    // SAFETY: As above.
    let write = |offset: usize, byte: u8| unsafe { ptr.add(offset).write_volatile(byte) };
    // The child's revocation reached the parent's entries too.
    let seen = std::cell::Cell::new(0);
    mapping("the parent's read of the child's write", 1, &|| {
        seen.set(read(HUGE))
    })?;
    ensure(seen.get() == 0x77, || {
        format!(
            "the parent reads {:#x} where its child wrote 0x77",
            seen.get()
        )
    })?;
    mapping("a read of the first entry", 1, &|| {
        std::hint::black_box(read(0));
    })?;
    // SAFETY: Changes the protection of the mapping above only.
    let protect = |offset: usize, size: usize, prot| unsafe {
        libc::mprotect(ptr.add(offset).cast(), size, prot) == 0
    };
    check("mprotect read-only", protect(0, len, libc::PROT_READ))?;
    // (The parent's check of the child's write mapped the second entry;
    // mprotect changed it in place.)
    mapping("a read under PROT_READ", 0, &|| {
        std::hint::black_box(read(HUGE + PAGE));
    })?;
    check(
        "mprotect read-write",
        protect(0, len, libc::PROT_READ | libc::PROT_WRITE),
    )?;
    // The entry was writable (the child's write fault granted writes) and
    // so dirty: mprotect makes it writable again in place.
    mapping("a write after mprotect read-write", 0, &|| {
        write(PAGE, 0x11)
    })?;
    // Half of the first entry read-only: the entry is split, the other
    // half is written through PTEs.
    check(
        "mprotect half an entry",
        protect(0, HUGE / 2, libc::PROT_READ),
    )?;
    mapping("a write beside half an entry made read-only", 0, &|| {
        write(HUGE / 2 + PAGE, 0x22)
    })?;
    let first = read(PAGE);
    // The middle of the second entry (still mapped whole) unmapped: both
    // sides keep working, through PTEs.
    mapping("a read of the second entry", 0, &|| {
        std::hint::black_box(read(HUGE + PAGE));
    })?;
    // SAFETY: Unmaps part of the mapping above, which is not accessed
    // there again.
    let unmapped = unsafe { libc::munmap(ptr.add(HUGE + HUGE / 4).cast(), HUGE / 2) == 0 };
    check("munmap half an entry", unmapped)?;
    mapping("writes beside half an entry unmapped", 0, &|| {
        write(HUGE + 2 * PAGE, 0x33);
        write(len - PAGE, 0x44);
    })?;
    ensure(first == 0x11, || {
        format!("read {first:#x} after mprotect, want 0x11")
    })?;
    drop(map);
    let fresh = Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let b = fresh.bytes();
    let seen = [
        b[PAGE],
        b[HUGE / 2 + PAGE],
        b[HUGE],
        b[HUGE + 2 * PAGE],
        b[len - PAGE],
    ];
    ensure(seen == [0x11, 0x22, 0x77, 0x33, 0x44], || {
        format!("a new mapping reads {seen:x?}, want [11, 22, 77, 33, 44]")
    })
}

/// On a kernel whose dma-buf files place mappings for huge entries (the
/// patch series' dma-buf change; its in-tree boots say so with
/// `rdh_placed_mappings=1`), a frame of 2 MiB chunks mapped without a hint,
/// as clients map, gets the huge entries an aligned one gets: at offset 0
/// the address is 2 MiB-aligned and the first touch of the 8 MiB takes four
/// faults and four entries; at a page offset of 2 MiB the rest of the frame
/// lies 2 MiB-aligned too and reads the same data with three.
pub fn unhinted_mappings_are_placed_for_huge_entries() -> Outcome {
    if std::env::var("rdh_placed_mappings").as_deref() != Ok("1") {
        return Err(format!(
            "{SKIP}the dma-buf core of this kernel places mappings anywhere (the series' dma-buf patch places them)"
        ));
    }
    let len = 8 << 20;
    let fd = huge_buffer(len)?;
    let mut map = Mapping::new(&fd, len, 0).map_err(|e| format!("mmap: {e}"))?;
    let at = map.as_ptr() as usize;
    ensure(at.is_multiple_of(HUGE), || {
        format!("an 8 MiB frame mapped without a hint lies at {at:#x}")
    })?;
    let ((), written) = Entries::during(|| write_pages(&mut map, 3))?;
    let four = Entries::huge_faults(4);
    ensure(written == four, || {
        format!("writing the unhinted frame took {written:?}, want {four:?}")
    })?;
    let rest = Mapping::new(&fd, len - HUGE, HUGE / PAGE).map_err(|e| format!("mmap: {e}"))?;
    let at = rest.as_ptr() as usize;
    ensure(at.is_multiple_of(HUGE), || {
        format!("the frame mapped from 2 MiB on without a hint lies at {at:#x}")
    })?;
    let (words, read) = Entries::during(|| {
        rest.bytes()
            .chunks_exact(HUGE)
            .map(|run| {
                // SAFETY: Each run is at least a word long and 4096-aligned.
                unsafe { run.as_ptr().cast::<u64>().read_volatile() }
            })
            .collect::<Vec<_>>()
    })?;
    let want: Vec<u64> = (1..4)
        .map(|run| 3 << 32 | (run * HUGE / PAGE) as u64)
        .collect();
    let three = Entries::huge_faults(3);
    ensure(words == want && read == three, || {
        format!("the frame from 2 MiB on reads {words:x?} (want {want:x?}), taking {read:?} (want {three:?})")
    })
}
