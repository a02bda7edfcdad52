// SPDX-License-Identifier: GPL-2.0

//! Thin wrappers over the system calls an init process needs; the raw
//! dma-heap / dma-buf ioctls are `rdh::sys`'s (re-exported here).

pub use rdh::sys::*;

use std::{ffi::CString, fs::File, io, os::fd::AsRawFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Mounts a pseudo file system, creating the mount point if needed.
pub fn mount(fstype: &str, target: &str) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let fstype = CString::new(fstype).unwrap();
    let target = CString::new(target).unwrap();
    // SAFETY: All pointers are valid NUL-terminated strings.
    cvt(unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// Loads a kernel module from a file with the given parameters.
pub fn load_module(path: &str, params: &str) -> io::Result<()> {
    let file = File::open(path)?;
    let params = CString::new(params).unwrap();
    // SAFETY: `file` is an open module file; `params` is NUL-terminated.
    let ret =
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    cvt(ret as libc::c_int).map(drop)
}

/// Asks the kernel to unload a module (non-blocking).
pub fn unload_module(name: &str) -> io::Result<()> {
    let name = CString::new(name).unwrap();
    // SAFETY: `name` is NUL-terminated.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    cvt(ret as libc::c_int).map(drop)
}

/// Powers the machine off (QEMU exits).
pub fn power_off() -> ! {
    // SAFETY: Plain system calls; `reboot` does not return on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    std::process::exit(1)
}

/// Free memory in KiB: MemFree plus the pages waiting on the per-CPU free
/// lists (`count` in /proc/zoneinfo), which MemFree leaves out and which
/// hold many MiB right after a large free (2 MiB blocks too, on kernels
/// with transparent huge pages).
pub fn free_kib() -> Result<u64, String> {
    let mem_free = meminfo_kib("MemFree").ok_or("no MemFree")?;
    let zoneinfo = std::fs::read_to_string("/proc/zoneinfo")
        .map_err(|e| format!("read /proc/zoneinfo: {e}"))?;
    let per_cpu_pages: u64 = zoneinfo
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count:")?.trim().parse::<u64>().ok())
        .sum();
    Ok(mem_free + per_cpu_pages * 4)
}
