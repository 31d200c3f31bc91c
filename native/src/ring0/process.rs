//! Running an emulator process with a deadline, capturing its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with stdin closed; returns its stdout (lossy UTF-8) or why not.
/// The process is killed after `limit`.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Result<String, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let ereader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                let e = ereader.join().unwrap_or_default();
                return Err(format!(
                    "{what} did not finish within {limit:?}; stderr ends: {}",
                    tail(&e)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = ereader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&stdout).into_owned();
    if text.starts_with('!') {
        return Err(format!(
            "{what}: the boot sector could not read the image (INT 13h AH=42h failed)"
        ));
    }
    if !text.contains("#E") {
        return Err(format!(
            "{what} exited ({status}) before the guest finished; stderr ends: {}",
            tail(&stderr)
        ));
    }
    Ok(text)
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let lines: Vec<&str> = s.lines().filter(|l| !l.starts_with("ALSA")).collect();
    lines[lines.len().saturating_sub(6)..].join(" / ")
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> Result<std::path::PathBuf, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "xsave-ring0-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    Ok(d)
}
