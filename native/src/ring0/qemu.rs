//! The `qemu-system` host: qemu-system-x86_64 with TCG boots the image from a
//! raw IDE disk; results leave through `-debugcon` (port 0xE9) on stdout; the
//! guest ends the run through `isa-debug-exit` (port 0xF4).

use super::batch::Loaded;
use super::process::{run_with_deadline, scratch_dir};
use std::process::Command;
use std::time::Duration;

pub const PROGRAM: &str = "qemu-system-x86_64";

fn program() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(PROGRAM))
        .find(|p| p.is_file())
}

pub fn missing() -> Option<String> {
    program().map_or(
        Some(format!(
            "{PROGRAM} is not installed (Debian package qemu-system-x86)"
        )),
        |_| None,
    )
}

/// `qemu-system-x86_64 --version`, first line.
pub fn version() -> Option<String> {
    let out = Command::new(program()?).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Boots `img` under TCG with `-cpu <cpu>` and returns the debug console text.
pub fn boot(img: &Loaded, cpu: &str, limit: Duration) -> Result<String, String> {
    if let Some(m) = missing() {
        return Err(m);
    }
    let dir = scratch_dir("qemu")?;
    let disk = dir.join("disk.img");
    std::fs::write(&disk, img.disk()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program().expect("checked"));
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        cpu,
        "-m",
        "16",
        "-nodefaults",
        "-no-reboot",
    ])
    .args(["-display", "none", "-monitor", "none", "-serial", "none"])
    .arg("-drive")
    .arg(format!("file={},format=raw,if=ide", disk.display()))
    .args(["-debugcon", "stdio"])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    let r = run_with_deadline(cmd, limit);
    let _ = std::fs::remove_dir_all(&dir);
    r
}
