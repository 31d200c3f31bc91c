//! The `bochs` host: a Bochs boots the image from a raw hard-disk image;
//! results leave through the port 0xE9 hack on stdout; the guest ends the run
//! through Bochs's shutdown port (0x8900).
//!
//! Which Bochs and which of its CPU models is a [`Target`], spelt
//! `[VERSION][:CPU]` after `bochs:` in a backend spec:
//! - VERSION `2.7` (the default): Debian's package, `/usr/bin/bochs`, BIOS in
//!   /usr/share/bochs, built with its debugger and plugins: driven by an `-rc`
//!   file holding `continue`, with the `term` display on a `dumb` terminal;
//! - `3.0` and `head`: built from ../shared/vendor by `build-bochs.sh VERSION
//!   PREFIX` into `$XSAVE_BOCHS_ROOT/bochs-VERSION` (default root `/opt`),
//!   `nogui`, no debugger;
//! - a path to a `bochs` binary (`/PREFIX/bin/bochs`): BIOS in PREFIX/share/bochs
//!   (else Debian's), the display and `-rc` as its `--help` and plugins show.
//!
//! CPU is any model name the binary lists in `--help cpu` (`tigerlake`, the
//! default, `sapphire_rapids`, `arrow_lake`, `ryzen`, ...).

use super::batch::Loaded;
use super::process::{run_with_deadline, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The emulator quirks of every Bochs model (names from xsave_emu's quirk table).
/// `xinuse-from-contents`: cpu/xsave.cc computes XINUSE from the registers
/// (`get_xinuse_vector` over the `*_state_xinuse` functions, x87 counting FOP,
/// SSE counting MXCSR != 1F80H) in 2.7, 3.0 and the main branch.
/// `fsw-es-recompute`: FXRSTOR (cpu/sse_move.cc) and XRSTOR's x87 load
/// (cpu/xsave.cc `xrstor_x87_state`) end with "check for unmasked exceptions":
/// FSW.ES and FSW.B set when FSW[5:0] AND NOT FCW[5:0] != 0, cleared otherwise
/// (`set_unmasked_fpu_exception` / `clear_unmasked_fpu_exception`, fpu/ferr.cc),
/// in 3.0 and the main branch; 2.7 measured the same (a loaded FSW = 4680H with
/// every exception masked saves as 4600H).
pub const QUIRKS: &[&str] = &["xinuse-from-contents", "fsw-es-recompute"];

/// The CPU model when the spec names none.
pub const DEFAULT_CPU: &str = "tigerlake";
/// Where source builds live unless `XSAVE_BOCHS_ROOT` says otherwise.
pub const DEFAULT_ROOT: &str = "/opt";

/// Which Bochs binary.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Build {
    /// Debian's package (2.7).
    Debian,
    /// A source build of ../shared/vendor: `3.0` or `head`.
    Source(&'static str),
    /// Any `bochs` binary.
    Path(PathBuf),
}

/// A Bochs binary and the CPU model it is run with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub build: Build,
    pub cpu: String,
}

impl Default for Target {
    fn default() -> Target {
        Target {
            build: Build::Debian,
            cpu: DEFAULT_CPU.into(),
        }
    }
}

/// The root holding source builds (`bochs-3.0`, `bochs-head`).
pub fn source_root() -> PathBuf {
    std::env::var_os("XSAVE_BOCHS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

fn cpu_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Target {
    /// Parses what follows `bochs:` (`""`, `3.0`, `head:sapphire_rapids`,
    /// `ryzen`, `/opt/bochs-head/bin/bochs:arrow_lake`).
    pub fn parse(spec: &str) -> Result<Target, String> {
        let usage = "expected bochs[:VERSION][:CPU], VERSION 2.7, 3.0, head or /path/to/bochs, CPU a Bochs cpu model (tigerlake, sapphire_rapids, arrow_lake, ryzen, ...)";
        let parts: Vec<&str> = if spec.is_empty() {
            vec![]
        } else {
            spec.split(':').collect()
        };
        let version = |s: &str| -> Option<Build> {
            match s {
                "2.7" | "debian" => Some(Build::Debian),
                "3.0" => Some(Build::Source("3.0")),
                "head" | "main" => Some(Build::Source("head")),
                p if p.contains('/') => Some(Build::Path(PathBuf::from(p))),
                _ => None,
            }
        };
        let (build, cpu) = match parts.as_slice() {
            [] => (Build::Debian, DEFAULT_CPU),
            [one] => match version(one) {
                Some(b) => (b, DEFAULT_CPU),
                None => (Build::Debian, *one),
            },
            [v, c] => (
                version(v)
                    .ok_or_else(|| format!("bochs:{spec}: unknown version `{v}` ({usage})"))?,
                *c,
            ),
            _ => return Err(format!("bochs:{spec}: too many fields ({usage})")),
        };
        if !cpu_name_ok(cpu) {
            return Err(format!("bochs:{spec}: bad cpu model `{cpu}` ({usage})"));
        }
        Ok(Target {
            build,
            cpu: cpu.to_string(),
        })
    }

    /// `2.7`, `3.0`, `head`, or the version a binary's banner prints.
    pub fn version_label(&self) -> String {
        match &self.build {
            Build::Debian => "2.7".into(),
            Build::Source(v) => v.to_string(),
            Build::Path(p) => banner_version(p).unwrap_or_else(|| "custom".into()),
        }
    }

    /// The backend's name: `bochs:3.0:sapphire_rapids`.
    pub fn spec(&self) -> String {
        let v = match &self.build {
            Build::Path(p) => p.display().to_string(),
            _ => self.version_label(),
        };
        format!("bochs:{v}:{}", self.cpu)
    }

    /// The name of the model read from this Bochs's CPUID: `bochs-3.0-sapphire_rapids`.
    pub fn model_name(&self) -> String {
        format!("bochs-{}-{}", self.version_label(), self.cpu)
    }

    /// The binary.
    pub fn program(&self) -> PathBuf {
        match &self.build {
            Build::Debian => PathBuf::from("/usr/bin/bochs"),
            Build::Source(v) => source_root().join(format!("bochs-{v}/bin/bochs")),
            Build::Path(p) => p.clone(),
        }
    }

    fn prefix(&self) -> Option<PathBuf> {
        Some(self.program().parent()?.parent()?.to_path_buf())
    }

    /// The BIOS and VGA BIOS images: the build's own, else Debian's.
    fn bios(&self) -> Result<(PathBuf, PathBuf), String> {
        let mut dirs = Vec::new();
        if let Some(p) = self.prefix() {
            dirs.push(p.join("share/bochs"));
        }
        if matches!(self.build, Build::Debian | Build::Path(_)) {
            dirs.push(PathBuf::from("/usr/share/bochs"));
        }
        for d in &dirs {
            let bios = d.join("BIOS-bochs-latest");
            let vga = ["VGABIOS-lgpl-latest", "VGABIOS-lgpl-latest.bin"]
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file());
            if let (true, Some(vga)) = (bios.is_file(), vga) {
                return Ok((bios, vga));
            }
        }
        Err(format!(
            "no BIOS-bochs-latest and VGABIOS-lgpl-latest in {}{}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or "),
            self.how_to_get()
        ))
    }

    /// What installs this Bochs.
    pub fn how_to_get(&self) -> String {
        match &self.build {
            Build::Debian => " (Debian: apt-get install bochs bochsbios vgabios bochs-term)".into(),
            Build::Source(v) => format!(
                " (build it: ../shared/vendor/build-bochs.sh {v} {})",
                source_root().join(format!("bochs-{v}")).display()
            ),
            Build::Path(_) => String::new(),
        }
    }

    /// How this Bochs is driven: its `--help` says whether it has the debugger
    /// (then `-rc` with `continue`); a term display plugin beside it means a
    /// plugin build without nogui (Debian's), else `nogui`.
    fn driving(&self) -> Result<Driving, String> {
        static CACHE: Mutex<Vec<(PathBuf, Driving)>> = Mutex::new(Vec::new());
        let prog = self.program();
        if let Some((_, d)) = CACHE
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| *p == prog)
            .cloned()
        {
            return Ok(d);
        }
        let out = Command::new(&prog)
            .arg("--help")
            .output()
            .map_err(|e| format!("cannot run {} --help: {e}", prog.display()))?;
        let help = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let debugger = help.contains("-rc filename");
        let plugin_dirs = ["lib/x86_64-linux-gnu/bochs/plugins", "lib/bochs/plugins"];
        let term = self.prefix().is_some_and(|p| {
            plugin_dirs
                .iter()
                .any(|d| p.join(d).join("libbx_term_gui.so").exists())
        });
        let d = Driving {
            debugger,
            display: if term { "term" } else { "nogui" },
        };
        CACHE.lock().unwrap().push((prog, d.clone()));
        Ok(d)
    }

    /// Why this Bochs cannot run here, if it cannot: binary, BIOS, CPU model.
    pub fn missing(&self) -> Option<String> {
        let prog = self.program();
        if !prog.is_file() {
            return Some(format!(
                "Bochs {} is not installed: no {}{}",
                self.version_label(),
                prog.display(),
                self.how_to_get()
            ));
        }
        if let Err(e) = self.bios() {
            return Some(e);
        }
        if self.build == Build::Debian
            && !Path::new("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so").exists()
        {
            return Some("Bochs 2.7's term display is missing (package bochs-term)".into());
        }
        match cpu_models(&prog) {
            Ok(models) if !models.contains(&self.cpu) => Some(format!(
                "{} has no cpu model `{}` (it has: {})",
                prog.display(),
                self.cpu,
                models.join(", ")
            )),
            Ok(_) => None,
            Err(e) => Some(e),
        }
    }

    /// Boots `img` and returns Bochs's stdout.
    pub fn boot(&self, img: &Loaded, limit: Duration) -> Result<String, String> {
        if let Some(m) = self.missing() {
            return Err(m);
        }
        let (bios, vga) = self.bios()?;
        let drv = self.driving()?;
        let dir = scratch_dir("bochs")?;
        let disk = dir.join("disk.img");
        std::fs::write(&disk, img.disk()).map_err(|e| e.to_string())?;
        let rc = format!(
            "megs: 16\n\
             romimage: file={}\n\
             vgaromimage: file={}\n\
             ata0-master: type=disk, path={}, mode=flat, cylinders={}, heads=16, spt=63\n\
             boot: disk\n\
             cpu: model={}, reset_on_triple_fault=0\n\
             clock: sync=none\n\
             display_library: {}\n\
             port_e9_hack: enabled=1\n\
             speaker: enabled=0\n\
             log: {}\n",
            bios.display(),
            vga.display(),
            disk.display(),
            img.cylinders(),
            self.cpu,
            drv.display,
            dir.join("bochs.log").display()
        );
        let rc_path = dir.join("bochsrc");
        std::fs::write(&rc_path, rc).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(self.program());
        cmd.arg("-q").arg("-f").arg(&rc_path);
        if drv.debugger {
            let cmds = dir.join("cmds");
            std::fs::write(&cmds, "continue\nquit\n").map_err(|e| e.to_string())?;
            cmd.arg("-rc").arg(&cmds);
        }
        cmd.env("TERM", "dumb").current_dir(&dir);
        let r = run_with_deadline(cmd, limit);
        let keep = r.is_err() && std::env::var_os("XSAVE_RING0_KEEP").is_some();
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }
}

#[derive(Debug, Clone)]
struct Driving {
    debugger: bool,
    display: &'static str,
}

/// The CPU models a Bochs binary lists in `--help cpu`.
pub fn cpu_models(prog: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(prog)
        .args(["--help", "cpu"])
        .output()
        .map_err(|e| format!("cannot run {} --help cpu: {e}", prog.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| cpu_name_ok(l) && !l.chars().all(|c| c == '='))
        .map(str::to_string)
        .collect();
    if v.is_empty() {
        return Err(format!("{} --help cpu lists no cpu model", prog.display()));
    }
    Ok(v)
}

/// "2.7" from the banner line "Bochs x86 Emulator 2.7".
fn banner_version(prog: &Path) -> Option<String> {
    let out = Command::new(prog).arg("--help").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Bochs x86 Emulator"))?;
    let v = line.split("Bochs x86 Emulator").nth(1)?.trim();
    cpu_name_ok(&v.replace('.', "_")).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_to_builds_and_cpu_models() {
        let t = |s: &str| Target::parse(s).unwrap();
        assert_eq!(t(""), Target::default());
        assert_eq!(t("2.7").build, Build::Debian);
        assert_eq!(t("3.0").build, Build::Source("3.0"));
        assert_eq!(t("head").cpu, "tigerlake");
        assert_eq!(
            t("head:sapphire_rapids"),
            Target {
                build: Build::Source("head"),
                cpu: "sapphire_rapids".into()
            }
        );
        assert_eq!(t("ryzen").build, Build::Debian);
        assert_eq!(t("ryzen").cpu, "ryzen");
        assert_eq!(
            t("/x/bin/bochs:arrow_lake").build,
            Build::Path("/x/bin/bochs".into())
        );
        assert_eq!(
            t("3.0:sapphire_rapids").model_name(),
            "bochs-3.0-sapphire_rapids"
        );
        assert_eq!(t("head:ryzen").spec(), "bochs:head:ryzen");
        for bad in [
            "4.1:tigerlake",
            "head:ryzen:x",
            "head:sapphire rapids",
            "head:",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains("bochs[:VERSION][:CPU]"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_source_build_says_how_to_build_it() {
        let t = Target {
            build: Build::Path("/nonexistent/bin/bochs".into()),
            cpu: "tigerlake".into(),
        };
        let m = t.missing().unwrap();
        assert!(m.contains("no /nonexistent/bin/bochs"), "{m}");
        let s = Target::parse("head").unwrap();
        assert!(s.how_to_get().contains("build-bochs.sh head"));
    }
}
