// SPDX-License-Identifier: GPL-2.0

//! Work done in a child process, which reports back through a pipe: as
//! another user, or by a process that dies in the middle of something.

/// Runs `work` in a child process and returns its report (`Err` for its
/// error, or if it reported nothing). If `then_killed`, the child waits
/// after reporting until it is killed with SIGKILL, which this does: it
/// dies inside whatever `work` left open. Else it exits.
pub fn in_child(
    work: impl FnOnce() -> Result<String, String>,
    then_killed: bool,
) -> Result<String, String> {
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: The guest is single-threaded; the child reports and then
    // waits or exits without returning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let report = match work() {
            Ok(report) => format!("ok {report}"),
            Err(e) => format!("error {e}"),
        };
        // SAFETY: Writes the report and closes the pipe; then waits to be
        // killed, or leaves at once without running destructors.
        unsafe {
            libc::write(pipe[1], report.as_ptr().cast(), report.len());
            libc::close(pipe[1]);
            if then_killed {
                loop {
                    libc::pause();
                }
            }
            libc::_exit(0);
        }
    }
    // SAFETY: The write end is the child's.
    unsafe { libc::close(pipe[1]) };
    let mut buf = [0u8; 4096];
    let mut report = Vec::new();
    loop {
        // SAFETY: Reads into `buf`; the read end is ours.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        report.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: `pipe[0]` is ours; `pid` is our child.
    unsafe {
        libc::close(pipe[0]);
        if then_killed {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::waitpid(pid, &mut status, 0);
    }
    let report = String::from_utf8_lossy(&report).into_owned();
    match report.strip_prefix("ok ") {
        Some(report) => Ok(report.to_string()),
        None if report.is_empty() => Err("the child reported nothing".into()),
        None => Err(report.strip_prefix("error ").unwrap_or(&report).into()),
    }
}
