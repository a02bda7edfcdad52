// SPDX-License-Identifier: GPL-2.0

//! The command line on the host, where there is no heap: what clap makes
//! of it (help, version, completions, usage errors and their exit code 2)
//! and what the guest's `rdh_errors_say_what_to_do` relies on.

use std::process::{Command, Output, Stdio};

fn rdh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rdh"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 2 and `hint` in the message on stderr, nothing on stdout.
fn usage_error(args: &[&str], hint: &str) {
    let out = rdh(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "rdh {args:?}: {stderr}");
    assert!(stderr.contains(hint), "rdh {args:?}: {stderr:?}");
    assert!(out.stdout.is_empty(), "rdh {args:?}");
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["help"],
        &["alloc", "--help"],
        &["help", "bench", "alloc"],
        &[],
    ] {
        let out = rdh(args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "rdh {args:?}");
        assert!(
            stdout.contains("Usage: rdh") && stdout.contains("Exit codes"),
            "{stdout}"
        );
    }
    let help = text(&rdh(&["alloc", "--help"]).stdout);
    for flag in ["<SIZE>", "--heap <H>", "--hold <SECS>", "--json"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    let help = text(&rdh(&["bench", "alloc", "--help"]).stdout);
    assert!(help.contains("[default: 4K,64K,1M,8M]") && help.contains("[default: 32]"));
    let out = rdh(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("rdh {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The errors `guest/src/tool.rs` checks for, and a few more.
#[test]
fn usage_errors_exit_2() {
    usage_error(&["alloc", "12Q"], "bad size");
    usage_error(&["alloc", "0"], "bad size");
    usage_error(&["alloc"], "<SIZE>");
    usage_error(&["alloc", "1M", "--hold", "x"], "--hold <SECS>");
    usage_error(&["alloc", "1M", "--heap", "../x"], "bad heap name");
    usage_error(&["bench", "alloc", "--heap", ""], "bad heap name");
    usage_error(&["bench", "alloc", "--heap", "system,"], "bad heap name");
    usage_error(&["bench", "alloc", "--sizes", "4K,8Q"], "bad size");
    usage_error(
        &["bench", "alloc", "--iterations", "1000000"],
        "not in 1..=100000",
    );
    usage_error(
        &["bench", "alloc", "--iterations", "0"],
        "not in 1..=100000",
    );
    usage_error(&["frobnicate"], "unrecognized subcommand");
    usage_error(&["list", "--jsn"], "--json");
    usage_error(&["stats", "extra"], "unexpected argument");
    usage_error(&["completions", "tcsh"], "possible values");
    // `rdh bench` alone: its help, as a usage error.
    usage_error(&["bench"], "Usage: rdh bench");
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _rdh"),
        ("zsh", "#compdef rdh"),
        ("fish", "complete -c rdh"),
    ] {
        let out = rdh(&["completions", shell]);
        let script = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(script.contains(marker), "{shell}: {marker}");
        assert!(script.contains("pipeline") && script.contains("iterations"));
    }
}

/// `rdh --help | head -0`: ended by SIGPIPE, with nothing on stderr.
#[test]
fn a_closed_pipe_ends_it_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (read, write) = std::io::pipe().unwrap();
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_rdh"))
        .args(["--help"])
        .stdout(write)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(13), "{:?}", text(&out.stderr));
    assert!(out.stderr.is_empty());
}
