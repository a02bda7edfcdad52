// SPDX-License-Identifier: GPL-2.0

//! Unmodified clients from Debian's arm64 packages (`make check-clients`;
//! `scripts/client-rootfs.sh` puts them in the initramfs): libcamera's `cam`
//! and GStreamer's `gst-launch-1.0 libcamerasrc` capture frames of
//! libcamera's virtual camera, whose buffers libcamera allocates from
//! `/dev/dma_heap/system` -- served by this heap (`heap_name=system`), or in
//! the comparison boot (`rdh_clients_heap=upstream`) by the upstream system
//! heap. Suite `rdh_clients`. Every frame's SHA-256 is printed as
//! `# rdh-clients: <client> frame=<n> sha256=<hex>` for the host to compare
//! across the two boots; a watched capture prints `rdh stats --buffers`
//! while it runs and the maintenance per frame.

use crate::{
    checks::{debugfs_buffers, debugfs_dir_of, debugfs_number, ensure},
    ktap::{Outcome, Suite},
    module_params, sys, MODULE_PATH,
};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The virtual camera (`guest/clients/virtual.yaml`): 640x480 NV12.
const CAMERA: &str = "Virtual0";
const FRAME_BYTES: usize = 640 * 480 * 3 / 2;
/// Frames captured to files, and frames of a capture watched while it runs.
const FRAMES: usize = 10;
const WATCHED_FRAMES: usize = 300;
const UPSTREAM_MODULE: &str = "/system_heap.ko";

/// Whether this boot serves `system` with the upstream system heap.
fn upstream() -> bool {
    std::env::var("rdh_clients_heap").as_deref() == Ok("upstream")
}

/// Runs the suite.
pub fn run() {
    if let Err(err) = sys::mount("tmpfs", "/tmp") {
        println!("rdh-guest: mount /tmp: {err}");
    }
    let mut suite = Suite::begin("rdh_clients", 5);
    suite.report("system_is_served_by_the_heap_under_test", serve_system());
    suite.report("cam_lists_the_virtual_camera", cam_lists_the_camera());
    let cam = ["cam", "-c", CAMERA, &format!("--capture={WATCHED_FRAMES}")];
    suite.report(
        "cam_capture_allocates_from_the_heap",
        watched("cam", &cam, WATCHED_FRAMES),
    );
    suite.report(
        "cam_frames_to_files",
        cam_frames().and_then(|frames| print_frames("cam", &frames)),
    );
    // identity passes one buffer fewer than eos-after.
    let eos = format!("eos-after={}", WATCHED_FRAMES + 1);
    let gst = [
        "gst-launch-1.0",
        "libcamerasrc",
        &format!("camera-name={CAMERA}"),
        "!",
        "identity",
        &eos,
        "!",
        "fakesink",
    ];
    suite.report(
        "gst_capture_allocates_from_the_heap_and_frames_to_a_file",
        watched("gst-launch-1.0", &gst, WATCHED_FRAMES)
            .and_then(|()| gst_frames())
            .and_then(|frames| print_frames("gst", &frames)),
    );
    suite.end();
}

/// Loads the heap under test as `system`: this module (its parameters from
/// the command line, `heap_name=system`), or the upstream module.
fn serve_system() -> Outcome {
    if upstream() {
        sys::load_module(UPSTREAM_MODULE, "").map_err(|e| format!("system_heap.ko: {e}"))?;
    } else {
        sys::load_module(MODULE_PATH, &module_params())
            .map_err(|e| format!("rust_dmabuf_heap.ko: {e}"))?;
        // Per-buffer files: the buffers the clients hold, by inode.
        debugfs_buffers(true)?;
    }
    let ours = Path::new(&debugfs_dir_of("system")).exists();
    println!(
        "    # rdh-clients: heap={} /dev/dma_heap: {:?}",
        if ours { "rust_dmabuf_heap" } else { "upstream" },
        heap_names()
    );
    ensure(Path::new("/dev/dma_heap/system").exists(), || {
        "no /dev/dma_heap/system".into()
    })?;
    ensure(ours != upstream(), || {
        format!(
            "/dev/dma_heap/system is this heap's: {ours}, upstream boot: {}",
            upstream()
        )
    })
}

/// The heaps in `/dev/dma_heap`, by name.
fn heap_names() -> Vec<String> {
    rdh::heaps::list()
        .map(|heaps| heaps.into_iter().map(|h| h.name).collect())
        .unwrap_or_default()
}

/// A client with the environment the packages expect and no display.
fn client(argv: &[&str]) -> Command {
    let mut command = Command::new(format!("/usr/bin/{}", argv[0]));
    command
        .args(&argv[1..])
        .env("HOME", "/tmp")
        // Which heap libcamera opened, at debug level.
        .env("LIBCAMERA_LOG_LEVELS", "*:WARN,DmaBufAllocator:DEBUG")
        // No plugin scanner process, and a registry where it can be written.
        .env("GST_REGISTRY_FORK", "no")
        .env("GST_REGISTRY", "/tmp/gst-registry.bin")
        .stdin(Stdio::null());
    command
}

/// Runs a client to its end; its output, failing on a non-zero exit.
fn finish(what: &str, child: Child) -> Result<String, String> {
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure(out.status.success(), || {
        format!("{what}: {}: {}", out.status, tail(&text))
    })?;
    Ok(text)
}

fn run_client(argv: &[&str]) -> Result<String, String> {
    let child = client(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    finish(argv[0], child)
}

/// The last lines of a client's output, for a failure message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

fn cam_lists_the_camera() -> Outcome {
    let out = run_client(&["cam", "-l"])?;
    for line in out.lines().filter(|l| l.contains(CAMERA)) {
        println!("    # $ cam -l: {line}");
    }
    ensure(out.contains(CAMERA), || format!("cam -l: {}", tail(&out)))
}

/// Our heap's maintenance counters, bytes cleaned and invalidated.
fn maintained() -> Result<u64, String> {
    let stats = format!("{}/stats", debugfs_dir_of("system"));
    Ok(debugfs_number(&stats, "clean_bytes")? + debugfs_number(&stats, "invalidate_bytes")?)
}

/// The inodes of the dma-bufs process `pid` has open.
fn open_dmabufs(pid: u32) -> BTreeSet<u64> {
    rdh::heaps::open_dmabufs()
        .into_iter()
        .filter(|b| b.pid == pid)
        .map(|b| b.inode)
        .collect()
}

/// The inodes of our heap's live buffers (their debugfs files).
fn our_buffers() -> BTreeSet<u64> {
    std::fs::read_dir(format!("{}/buffers", debugfs_dir_of("system")))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a capture of `frames` frames and, while it holds its buffers, shows
/// `rdh stats --buffers` and checks whose they are: every dma-buf the
/// client has open is one of our heap's (none is, in the upstream boot).
/// Then the maintenance our heap did per frame.
fn watched(what: &str, argv: &[&str], frames: usize) -> Outcome {
    let before = if upstream() { 0 } else { maintained()? };
    let mut child = client(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let pid = child.id();
    let start = Instant::now();
    let mut seen = None;
    while seen.is_none() && start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        let held = open_dmabufs(pid);
        if held.len() >= 2 {
            // The tool's view, then ours: read while the client holds them.
            let stats = Command::new("/bin/rdh")
                .args(["stats", "--buffers"])
                .output()
                .map_err(|e| format!("rdh stats: {e}"))?;
            seen = Some((held, our_buffers(), stats));
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let out = finish(what, child)?;
    // libcamera's DmaBufAllocator says which heap it opened.
    for line in out
        .lines()
        .filter(|l| l.contains("dma_heap") || l.contains("DmaBuf"))
    {
        println!("    # {what}: {}", line.trim());
    }
    let Some((held, ours, stats)) = seen else {
        return Err(format!("{what} ended before it held two dma-bufs"));
    };
    println!("    # $ rdh stats --buffers (while {what} runs)");
    for line in String::from_utf8_lossy(&stats.stdout).lines() {
        println!("    # {line}");
    }
    let served: Vec<&u64> = held.intersection(&ours).collect();
    println!(
        "    # rdh-clients: {what} holds {} dma-bufs, {} of them this heap's",
        held.len(),
        served.len()
    );
    if upstream() {
        return ensure(served.is_empty(), || {
            format!("{what}'s buffers are this heap's in the upstream boot")
        });
    }
    ensure(served.len() == held.len(), || {
        format!("{what} holds dma-bufs {held:?}, this heap's: {ours:?}")
    })?;
    let bytes = maintained()? - before;
    println!(
        "    # rdh-clients: {what} maintenance: {bytes} bytes for {frames} frames ({} per frame)",
        bytes / frames as u64
    );
    Ok(())
}

/// `cam` writes `FRAMES` frames to files; their contents, in order.
fn cam_frames() -> Result<Vec<Vec<u8>>, String> {
    std::fs::create_dir_all("/tmp/cam").map_err(|e| format!("/tmp/cam: {e}"))?;
    let capture = format!("--capture={FRAMES}");
    run_client(&["cam", "-c", CAMERA, &capture, "--file=/tmp/cam/frame-#.bin"])?;
    let mut files: Vec<_> = std::fs::read_dir("/tmp/cam")
        .map_err(|e| format!("/tmp/cam: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    // frame-<sequence>.bin, sequences increasing.
    files.sort();
    let frames = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    ensure(frames.len() == FRAMES, || {
        format!("cam wrote {} frames, want {FRAMES}", frames.len())
    })?;
    Ok(frames)
}

/// `gst-launch-1.0` writes `FRAMES` frames into one file; the frames.
fn gst_frames() -> Result<Vec<Vec<u8>>, String> {
    let eos = format!("eos-after={}", FRAMES + 1);
    run_client(&[
        "gst-launch-1.0",
        "libcamerasrc",
        &format!("camera-name={CAMERA}"),
        "!",
        "video/x-raw,format=NV12,width=640,height=480",
        "!",
        "identity",
        &eos,
        "!",
        "filesink",
        "location=/tmp/gst-frames.bin",
    ])?;
    let all = std::fs::read("/tmp/gst-frames.bin").map_err(|e| format!("gst frames: {e}"))?;
    ensure(all.len() == FRAMES * FRAME_BYTES, || {
        format!(
            "gst wrote {} bytes, want {FRAMES} frames of {FRAME_BYTES}",
            all.len()
        )
    })?;
    Ok(all.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect())
}

/// Prints each frame's digest; every frame must have the camera's size.
fn print_frames(client: &str, frames: &[Vec<u8>]) -> Outcome {
    for (n, frame) in frames.iter().enumerate() {
        let digest: String = Sha256::digest(frame)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!(
            "    # rdh-clients: {client} frame={n} bytes={} sha256={digest}",
            frame.len()
        );
        ensure(frame.len() == FRAME_BYTES, || {
            format!(
                "{client} frame {n}: {} bytes, want {FRAME_BYTES}",
                frame.len()
            )
        })?;
    }
    Ok(())
}
