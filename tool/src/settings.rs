// SPDX-License-Identifier: GPL-2.0

//! The tool's signals, and the module parameters the benchmarks change
//! for a while (the page pool's limit, the sync policy, per-buffer
//! debugfs files), put back when the benchmark ends: when it succeeds,
//! fails, or is stopped by Ctrl-C or SIGTERM (which stop it at its next
//! round instead of killing it). Part of the binary, not of the library
//! the guest shares.

use crate::Fail;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::{
    ffi::c_int,
    io::ErrorKind,
    sync::atomic::{AtomicBool, Ordering},
};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

/// Output into a closed pipe (`rdh stats | head -1`) ends the program
/// quietly, as it does any Unix tool, instead of a panic: Rust ignores
/// SIGPIPE by default.
pub fn end_quietly_on_closed_pipes() {
    // SAFETY: restores the default action of a signal; no handler runs.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// From now on, SIGINT and SIGTERM only ask the benchmark to stop (see
/// [`stop_requested`]); without `SA_RESTART`, a blocking call they hit
/// returns `EINTR`, so a long allocation ends early too.
pub fn stop_on_signals() {
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { signal::sigaction(s, &action) };
    }
}

/// `Err` once a stop was requested, for the benchmarks to check between
/// rounds.
pub fn stop_requested() -> Result<(), Fail> {
    match STOP_REQUESTED.load(Ordering::Relaxed) {
        true => Err(Fail(130, "stopped; module parameters put back".into())),
        false => Ok(()),
    }
}

/// `result`, unless a stop was requested: then the stop, also when it
/// made a call of the benchmark fail (`EINTR`).
pub fn unless_stopped<T>(result: Result<T, Fail>) -> Result<T, Fail> {
    stop_requested()?;
    result
}

/// Parameters changed so far, with the values they had before.
///
/// # Invariants
///
/// Each path is listed once, with the value it had before the first
/// change; dropping this writes them back, the last changed first.
#[derive(Default)]
pub struct Saved(Vec<(&'static str, String)>);

impl Saved {
    /// Records `path`'s value to be put back, once, and checks that it can
    /// be written (exit 4 if not).
    pub fn keep(&mut self, path: &'static str) -> Result<(), Fail> {
        if self.0.iter().any(|(p, _)| *p == path) {
            return Ok(());
        }
        let before =
            std::fs::read_to_string(path).map_err(|e| Fail(1, format!("read {path}: {e}")))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| write_error(path, e))?;
        // INVARIANT: the first value, recorded once.
        self.0.push((path, before.trim().to_string()));
        Ok(())
    }

    /// Writes `value` to `path`, keeping its old value to put back.
    pub fn set(&mut self, path: &'static str, value: &str) -> Result<(), Fail> {
        self.keep(path)?;
        std::fs::write(path, value).map_err(|e| write_error(path, e))
    }

    /// The value `path` had before it was first changed.
    pub fn before(&self, path: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| v.as_str())
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (path, value) in self.0.iter().rev() {
            if let Err(e) = std::fs::write(path, value) {
                eprintln!("rdh: could not put back {path}={value}: {e}");
            }
        }
    }
}

fn write_error(path: &str, e: std::io::Error) -> Fail {
    match e.kind() {
        ErrorKind::PermissionDenied => Fail(4, format!("write {path}: {e} (as root)")),
        _ => Fail(1, format!("write {path}: {e}")),
    }
}
