// SPDX-License-Identifier: GPL-2.0

//! The heap's debugfs files (`/sys/kernel/debug/rust_dmabuf_heap/<heap>/`):
//! every line `key: value`.

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

/// Where debugfs is mounted.
pub const MOUNT: &str = "/sys/kernel/debug";

/// The debugfs directory of heap `name` of the module.
pub fn dir_of(name: &str) -> String {
    format!("{MOUNT}/rust_dmabuf_heap/{name}")
}

/// The `key: value` lines of a debugfs file, in order.
pub fn read(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// One number from a `key: value` debugfs file.
pub fn number(path: &str, key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .ok_or_else(|| format!("{path}: no {key}"))?
        .parse()
        .map_err(|e| format!("{path}: {key}: {e}"))
}

/// The debugfs file of the buffer behind `fd` (named after its inode), of
/// the heap whose debugfs directory is `dir`.
pub fn buffer_file_in(dir: &str, fd: &impl AsFd) -> Result<String, String> {
    Ok(format!("{dir}/buffers/{}", inode(fd)?))
}

/// The inode number of the file behind `fd` (a dma-buf's names its
/// debugfs file and its `/sys/kernel/dmabuf/buffers` entry).
pub fn inode(fd: &impl AsFd) -> Result<u64, String> {
    rustix::fs::fstat(fd)
        .map(|st| st.st_ino)
        .map_err(|e| format!("fstat: {e}"))
}

/// Waits (up to 20 s) until the page pool's worker has zeroed and cleaned
/// everything freed (its `backlog_bytes` and `working_bytes` are 0), so
/// that its background maintenance does not mix with what is measured
/// next and a pooled allocation finds its chunks ready. No-op without
/// debugfs or the module.
pub fn wait_pool_idle() {
    let Ok(dirs) = std::fs::read_dir(format!("{MOUNT}/rust_dmabuf_heap")) else {
        return;
    };
    let pools: Vec<String> = dirs
        .flatten()
        .map(|d| format!("{}/pool", d.path().display()))
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20)
        && pools.iter().any(|pool| {
            number(pool, "backlog_bytes").unwrap_or(0) + number(pool, "working_bytes").unwrap_or(0)
                > 0
        })
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}
