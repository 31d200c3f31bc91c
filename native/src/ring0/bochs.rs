//! The `bochs` host: Bochs 2.7 (`cpu: model=tigerlake`) boots the image from a
//! raw hard-disk image; results leave through the port 0xE9 hack on stdout; the
//! guest ends the run through Bochs's shutdown port (0x8900). Bochs is built
//! with its debugger, so it is driven by an `-rc` file holding `continue`, with
//! the `term` display on a `dumb` terminal (no window, no prompt).

use super::batch::Loaded;
use super::process::{run_with_deadline, scratch_dir};
use std::process::Command;
use std::time::Duration;

pub const CPU_MODEL: &str = "tigerlake";
const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGABIOS: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";

fn program() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bochs"))
        .find(|p| p.is_file())
}

/// Why Bochs cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if program().is_none() {
        return Some(
            "bochs is not installed (Debian packages bochs, bochsbios, vgabios, bochs-term)".into(),
        );
    }
    for f in [BIOS, VGABIOS] {
        if !std::path::Path::new(f).is_file() {
            return Some(format!("{f} is missing (packages bochsbios, vgabios)"));
        }
    }
    let term = std::path::Path::new("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so");
    if !term.exists() {
        return Some("Bochs's term display is missing (package bochs-term)".into());
    }
    None
}

/// Boots `img` and returns Bochs's stdout.
pub fn boot(img: &Loaded, limit: Duration) -> Result<String, String> {
    if let Some(m) = missing() {
        return Err(m);
    }
    let dir = scratch_dir("bochs")?;
    let disk = dir.join("disk.img");
    std::fs::write(&disk, img.disk()).map_err(|e| e.to_string())?;
    let rc = format!(
        "megs: 16\n\
         romimage: file={BIOS}\n\
         vgaromimage: file={VGABIOS}\n\
         ata0-master: type=disk, path={}, mode=flat, cylinders={}, heads=16, spt=63\n\
         boot: disk\n\
         cpu: model={CPU_MODEL}, reset_on_triple_fault=0\n\
         clock: sync=none\n\
         display_library: term\n\
         port_e9_hack: enabled=1\n\
         speaker: enabled=0\n\
         log: {}\n",
        disk.display(),
        img.cylinders(),
        dir.join("bochs.log").display()
    );
    let rc_path = dir.join("bochsrc");
    std::fs::write(&rc_path, rc).map_err(|e| e.to_string())?;
    let cmds = dir.join("cmds");
    std::fs::write(&cmds, "continue\nquit\n").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program().expect("checked"));
    cmd.arg("-q")
        .arg("-f")
        .arg(&rc_path)
        .arg("-rc")
        .arg(&cmds)
        .env("TERM", "dumb")
        .current_dir(&dir);
    let r = run_with_deadline(cmd, limit);
    let keep = r.is_err() && std::env::var_os("XSAVE_RING0_KEEP").is_some();
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}
