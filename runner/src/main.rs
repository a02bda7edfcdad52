// SPDX-License-Identifier: GPL-2.0

//! Boots the test VM and judges what its console printed.
//!
//! A run passes only if the guest reached its end marker before the
//! timeout, every expected KTAP suite is present and complete, no case
//! failed, and the kernel printed no splat (Oops, BUG, WARNING, panic,
//! ...). The last line is `N passed, N failed` (plus skipped, if any).

mod ktap;
mod verdict;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

struct Options {
    qemu: String,
    qemu_data: Option<String>,
    kernel: String,
    initrd: String,
    append: String,
    log: String,
    timeout: Duration,
    smp: u32,
    memory_mib: u32,
    machine: String,
    qemu_args: Vec<String>,
    expect_suites: Vec<String>,
    /// Suites that run at boot (built into the kernel) and count.
    boot_suites: Vec<String>,
    echo_prefixes: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rdh-runner --qemu BIN [--qemu-data DIR] --kernel IMAGE --initrd CPIO --log FILE \
         [--append ARGS] [--timeout SECS] [--smp N] [--memory MIB] [--machine SPEC] [--qemu-arg ARG]... [--expect-suite NAME]... [--boot-suite NAME]... [--echo PREFIX]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut o = Options {
        qemu: String::new(),
        qemu_data: None,
        kernel: String::new(),
        initrd: String::new(),
        append: String::new(),
        log: String::new(),
        timeout: Duration::from_secs(300),
        smp: 2,
        memory_mib: 1024,
        machine: "virt".to_string(),
        qemu_args: Vec::new(),
        expect_suites: Vec::new(),
        boot_suites: Vec::new(),
        echo_prefixes: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--qemu" => o.qemu = value(),
            "--qemu-data" => o.qemu_data = Some(value()),
            "--kernel" => o.kernel = value(),
            "--initrd" => o.initrd = value(),
            "--append" => o.append = value(),
            "--log" => o.log = value(),
            "--timeout" => {
                o.timeout = Duration::from_secs(value().parse().unwrap_or_else(|_| usage()))
            }
            "--smp" => o.smp = value().parse().unwrap_or_else(|_| usage()),
            "--memory" => o.memory_mib = value().parse().unwrap_or_else(|_| usage()),
            "--machine" => o.machine = value(),
            "--qemu-arg" => o.qemu_args.push(value()),
            "--expect-suite" => o.expect_suites.push(value()),
            "--boot-suite" => o.boot_suites.push(value()),
            "--echo" => o.echo_prefixes.push(value()),
            _ => usage(),
        }
    }
    if o.qemu.is_empty() || o.kernel.is_empty() || o.initrd.is_empty() || o.log.is_empty() {
        usage();
    }
    o
}

/// Runs QEMU, returns the console text and whether it timed out.
fn boot(o: &Options) -> std::io::Result<(String, bool)> {
    let mut cmd = Command::new(&o.qemu);
    if let Some(dir) = &o.qemu_data {
        cmd.args(["-L", dir]);
    }
    cmd.args(["-M", &o.machine])
        .args(["-cpu", "max", "-nographic", "-no-reboot", "-nic", "none"])
        .args(["-smp", &o.smp.to_string(), "-m", &o.memory_mib.to_string()])
        .args(["-kernel", &o.kernel, "-initrd", &o.initrd])
        .args(["-append", &format!("console=ttyAMA0 panic=-1 {}", o.append)])
        .args(&o.qemu_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let tx_err = tx.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let _ = tx.send(
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string(),
            );
        }
    });
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx_err.send(format!("qemu: {line}"));
        }
    });

    let mut log = std::fs::File::create(&o.log)?;
    let mut text = String::new();
    let deadline = Instant::now() + o.timeout;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                if o.echo_prefixes.iter().any(|p| line.starts_with(p.as_str())) {
                    println!("{line}");
                }
                text.push_str(&line);
                text.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    Ok((text, timed_out))
}

fn main() -> ExitCode {
    let o = parse_args();
    let (text, timed_out) = match boot(&o) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("rdh-runner: cannot run {}: {e}", o.qemu);
            return ExitCode::from(2);
        }
    };

    let timed_out = timed_out.then_some(o.timeout);
    let verdict::Verdict { report, problems } =
        verdict::judge(&text, timed_out, &o.expect_suites, &o.boot_suites);

    for (suite, _) in &report.suites {
        let cases = report.cases.iter().filter(|c| &c.suite == suite);
        let (mut pass, mut fail, mut skip) = (0, 0, 0);
        for case in cases {
            match case.status {
                ktap::Status::Pass => pass += 1,
                ktap::Status::Fail => {
                    fail += 1;
                    println!("FAIL {suite}.{}", case.name);
                    // Why, as the case said it (the console log has the rest).
                    for note in case.diagnostics.iter().rev().take(12).rev() {
                        println!("  # {note}");
                    }
                }
                ktap::Status::Skip => skip += 1,
            }
        }
        println!("suite {suite}: {pass} passed, {fail} failed, {skip} skipped");
    }
    for problem in &problems {
        println!("PROBLEM {problem}");
    }
    println!("console log: {}", o.log);
    // One KTAP file per suite, next to the log: `<log stem>.<suite>.ktap`.
    let stem = o.log.strip_suffix(".log").unwrap_or(&o.log);
    for (suite, doc) in ktap::documents(&text) {
        let path = format!("{stem}.{suite}.ktap");
        if let Err(e) = std::fs::write(&path, doc) {
            println!("PROBLEM cannot write {path}: {e}");
        }
    }

    let passed = report.count(ktap::Status::Pass);
    let failed = report.count(ktap::Status::Fail) + problems.len();
    let skipped = report.count(ktap::Status::Skip);
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
