// SPDX-License-Identifier: GPL-2.0

//! Reads the kernel log through `/dev/kmsg`, one record per `read`.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
};

/// A reader positioned after the records already printed at boot.
pub struct Kmsg(File);

impl Kmsg {
    /// Opens `/dev/kmsg` and skips what is already in the log (the console
    /// printed it during boot).
    pub fn open_and_skip_backlog() -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        let mut kmsg = Self(file);
        while kmsg.next_record().is_some() {}
        Ok(kmsg)
    }

    /// The next record's text, or `None` when the log is drained.
    fn next_record(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // "prio,seq,time,flags;text\n" then " KEY=value" lines.
                    let text = record.split_once(';').map_or("", |(_, t)| t);
                    return Some(text.lines().next().unwrap_or("").to_string());
                }
                // A record was overwritten before we read it: keep going.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Every new record since the last call, one line each.
    pub fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next_record()).collect()
    }

    /// Prints every new record on the console, one line each.
    pub fn replay(&mut self) {
        while let Some(line) = self.next_record() {
            println!("{line}");
        }
    }
}
