//! Known findings: the case files of the corpus (`corpus/regressions`,
//! `corpus/ring0`, `corpus/silicon`) with the rules they show (`rules` line)
//! and the emulators that break them (`target PROGRAM VERSION` lines). A
//! campaign reports each of its signatures as known (naming the file) or new,
//! and checks each file of a target it runs on: a file whose named rules no
//! longer break there is reported as "fixed upstream?".

use crate::casefile::{CaseFile, TargetLine};
use crate::report::{CheckVerdict, KnownCheck};
use crate::signature::Signature;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The corpus folders whose files are known findings.
pub const FOLDERS: [&str; 3] = ["regressions", "ring0", "silicon"];

/// One case file of the corpus that names its rules.
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub path: String,
    pub file: CaseFile,
    /// The instruction its case is charged to (see [`crate::signature::instruction`]),
    /// filled in when the file is checked on a target.
    pub instruction: Option<String>,
    /// Backends on which its rules no longer break ("fixed upstream?"): it
    /// explains none of their signatures.
    pub fixed_on: Vec<String>,
    /// Backends on which it was run again and its rules still break: it
    /// explains their signatures whatever version its target lines name.
    pub confirmed_on: Vec<String>,
}

impl KnownFile {
    pub fn rules(&self) -> &[String] {
        &self.file.meta.rules
    }
    pub fn targets(&self) -> &[TargetLine] {
        &self.file.meta.targets
    }
}

/// The known findings of a corpus.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub files: Vec<KnownFile>,
    /// The folders read.
    pub folders: Vec<String>,
}

/// The implementation a backend runs: the program and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendTarget {
    pub program: String,
    /// As the program prints it (`10.0.2`), when it says.
    pub version: Option<String>,
}

impl std::fmt::Display for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} {v}", self.program),
            None => write!(f, "{}", self.program),
        }
    }
}

/// The first dotted number in `s` (`qemu-x86_64 version 10.0.2 (Debian...)`
/// -> `10.0.2`, `valgrind-3.19.0` -> `3.19.0`).
pub fn dotted_version(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-')
        {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            let v = s[i..j].trim_end_matches('.');
            if v.contains('.') {
                return Some(v.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let o = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .ok()?;
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    Some(s)
}

/// The program a backend runs and its version: `exec:qemu-x86_64 -cpu max` ->
/// `qemu-x86_64` (`qemu-x86_64 --version`), `bochs:head:ryzen` -> `bochs` `head`,
/// `qemu-system` -> `qemu-system-x86_64`, `unicorn` -> `unicorn`. None for the
/// emulator, this CPU and KVM (silicon has no target line).
pub fn backend_target(backend: &str) -> Option<BackendTarget> {
    let (kind, arg) = backend.split_once(':').unwrap_or((backend, ""));
    match kind {
        "exec" => {
            let prog = arg.split_whitespace().next()?;
            let program = Path::new(prog).file_name()?.to_string_lossy().into_owned();
            let version = output_of(Command::new(prog).arg("--version"))
                .and_then(|o| o.lines().next().and_then(dotted_version));
            Some(BackendTarget { program, version })
        }
        "bochs" => {
            // The build the spec names (bochs[:VERSION][:CPU]): 2.7, 3.0, head,
            // or the banner's version of a binary given by path.
            let t = xsave_native::ring0::bochs::Target::parse(arg).ok()?;
            Some(BackendTarget {
                program: "bochs".into(),
                version: Some(t.version_label()),
            })
        }
        "qemu-system" => Some(BackendTarget {
            program: "qemu-system-x86_64".into(),
            version: output_of(Command::new("qemu-system-x86_64").arg("--version"))
                .and_then(|o| o.lines().next().and_then(dotted_version)),
        }),
        "unicorn" => Some(BackendTarget {
            program: "unicorn".into(),
            version: None,
        }),
        _ => None,
    }
}

/// Whether a target line's version covers `version` (`7.2` covers `7.2.22`).
pub fn version_covers(line: &str, version: &str) -> bool {
    version == line
        || version
            .strip_prefix(line)
            .is_some_and(|rest| rest.starts_with('.'))
}

impl Known {
    /// Reads every `.case` file under `corpus/FOLDER` for each of [`FOLDERS`]
    /// that exists. A file that does not parse is an error (file and line).
    pub fn load(corpus: &Path) -> Result<Known, String> {
        let mut k = Known::default();
        for f in FOLDERS {
            let dir = corpus.join(f);
            if !dir.is_dir() {
                continue;
            }
            let mut paths: Vec<PathBuf> = Vec::new();
            collect(&dir, &mut paths)?;
            paths.sort();
            for p in paths {
                let file = CaseFile::load(&p).map_err(|e| e.to_string())?;
                if file.meta.rules.is_empty() {
                    continue;
                }
                k.files.push(KnownFile {
                    path: p.display().to_string(),
                    file,
                    instruction: None,
                    fixed_on: Vec::new(),
                    confirmed_on: Vec::new(),
                });
            }
            k.folders.push(dir.display().to_string());
        }
        Ok(k)
    }

    /// The files that name `program` as a target (any version).
    pub fn for_program<'a>(&'a self, program: &'a str) -> impl Iterator<Item = &'a KnownFile> {
        self.files
            .iter()
            .filter(move |f| f.targets().iter().any(|t| t.program == program))
    }

    /// The known files of a signature on `target`: files naming the target's
    /// program and the signature's rule, not fixed on the signature's backend,
    /// and either naming the target's version (or the target says none) or
    /// shown to break there when run again ([`check`]): a Bochs 3.0 finding
    /// that Bochs 2.7 cannot run explains nothing on 2.7. Those naming the
    /// version first, then those charged to the same instruction.
    pub fn explaining<'a>(
        &'a self,
        target: &'a BackendTarget,
        sig: &Signature,
    ) -> Vec<&'a KnownFile> {
        let names_version = |f: &KnownFile| match &target.version {
            None => true,
            Some(v) => f
                .targets()
                .iter()
                .any(|t| t.program == target.program && version_covers(&t.version, v)),
        };
        let mut v: Vec<&KnownFile> = self
            .for_program(&target.program)
            .filter(|f| {
                f.rules().contains(&sig.rule)
                    && !f.fixed_on.contains(&sig.backend)
                    && (names_version(f) || f.confirmed_on.contains(&sig.backend))
            })
            .collect();
        v.sort_by_key(|f| {
            (
                !names_version(f),
                f.instruction.as_deref() != Some(sig.instruction.as_str()),
            )
        });
        v
    }

    /// The first of [`Known::explaining`].
    pub fn lookup<'a>(
        &'a self,
        target: &'a BackendTarget,
        sig: &Signature,
    ) -> Option<&'a KnownFile> {
        self.explaining(target, sig).into_iter().next()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "case") {
            out.push(p);
        }
    }
    Ok(())
}

/// Where the corpus is when none is named: `./corpus`, else the one beside
/// this crate's sources (a binary built from a clone).
pub fn default_corpus() -> Option<PathBuf> {
    let here = PathBuf::from("corpus");
    if here.is_dir() {
        return Some(here);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    built.is_dir().then_some(built)
}

/// Runs the known files of `target` on `backend` (one batch) and says of each
/// whether the rules it names still break there. Sets each file's instruction.
pub fn check(
    known: &mut Known,
    target: &BackendTarget,
    backend: &mut dyn crate::backend::Backend,
) -> Vec<KnownCheck> {
    let backend_name = backend.name();
    use crate::compare::compare;
    use crate::signature::{instruction, judge, Judgement};
    let idx: Vec<usize> = (0..known.files.len())
        .filter(|&i| {
            known.files[i]
                .targets()
                .iter()
                .any(|t| t.program == target.program)
        })
        .collect();
    let mut out: Vec<Option<KnownCheck>> = vec![None; idx.len()];
    let mut built = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        let f = &known.files[i];
        let not_checked = |reason: String| KnownCheck {
            file: f.path.clone(),
            rules: f.rules().to_vec(),
            targets: f.targets().iter().map(|t| t.to_string()).collect(),
            verdict: CheckVerdict::NotChecked { reason },
        };
        let model = match crate::models::resolve(&f.file.model) {
            Ok(m) => m,
            Err(e) => {
                out[k] = Some(not_checked(e));
                continue;
            }
        };
        let case = match f.file.build(&model) {
            Ok(c) => c,
            Err(e) => {
                out[k] = Some(not_checked(e.to_string()));
                continue;
            }
        };
        match xsave_emu::predict(&model, &case) {
            Ok(p) => built.push((k, model, case, p)),
            Err(u) => out[k] = Some(not_checked(format!("the model does not run it: {}", u.0))),
        }
    }
    let cases: Vec<xsave_emu::Case> = built.iter().map(|b| b.2.clone()).collect();
    let obs = backend.run_batch(&cases);
    for ((k, model, case, predicted), o) in built.into_iter().zip(obs) {
        let f = &mut known.files[idx[k]];
        let verdict = match o {
            Err(s) => CheckVerdict::NotChecked { reason: s.0 },
            Ok(o) => {
                let cmp = compare(&model, &case, &predicted, &o);
                let judged = if cmp.is_match() {
                    Vec::new()
                } else {
                    match judge(&model, &case, &cmp, &o) {
                        Judgement::Breaks { rules } => rules,
                        _ => Vec::new(),
                    }
                };
                f.instruction = Some(file_instruction(
                    f.rules(),
                    &case,
                    &judged,
                    &instruction(&case, &predicted, &o),
                ));
                let broken: Vec<String> = judged.into_iter().map(|b| b.rule).collect();
                let missing: Vec<String> = f
                    .rules()
                    .iter()
                    .filter(|r| !broken.contains(r))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    f.confirmed_on.push(backend_name.clone());
                    CheckVerdict::StillBreaks
                } else if missing.len() == f.rules().len() {
                    f.fixed_on.push(backend_name.clone());
                    CheckVerdict::FixedUpstream {
                        now: if cmp.is_match() {
                            "matches the model".into()
                        } else if broken.is_empty() {
                            "inside the envelope".into()
                        } else {
                            format!("breaks {}", broken.join(", "))
                        },
                    }
                } else {
                    CheckVerdict::Partly {
                        not_broken: missing,
                    }
                }
            }
        };
        out[k] = Some(KnownCheck {
            file: f.path.clone(),
            rules: f.rules().to_vec(),
            targets: f.targets().iter().map(|t| t.to_string()).collect(),
            verdict,
        });
    }
    out.into_iter().flatten().collect()
}

/// A known file's instruction: where its first rule breaks in `judged` (the
/// file's case judged on an implementation), else where the rule's name and
/// the case's code put it (`default`: [`crate::signature::instruction`]).
pub fn file_instruction(
    rules: &[String],
    case: &xsave_emu::Case,
    judged: &[crate::signature::Broken],
    default: &str,
) -> String {
    use crate::signature::{charge, charge_broken};
    match rules.first() {
        Some(r) => match judged.iter().find(|b| &b.rule == r) {
            Some(b) => charge_broken(b, case, default),
            None => charge(r, case, default),
        },
        None => default.to_string(),
    }
}

/// The rules a silicon case shows: those the envelope names when the case's
/// instructions are undone (its outcome replaced by the one of the same case
/// with no code: no fault, nothing saved, loaded or returned). A case that
/// faults shows the fault's rule; one that saves shows the save's rules.
pub fn rules_shown(
    model: &xsave_emu::CpuModel,
    case: &xsave_emu::Case,
) -> Result<Vec<String>, String> {
    use crate::compare::compare;
    use crate::signature::{judge, Judgement};
    let predicted = xsave_emu::predict(model, case).map_err(|u| u.0)?;
    let mut idle = case.clone();
    idle.code.clear();
    let undone = xsave_emu::predict(model, &idle).map_err(|u| u.0)?;
    let cmp = compare(model, case, &predicted, &undone);
    if cmp.is_match() {
        return Ok(Vec::new());
    }
    Ok(match judge(model, case, &cmp, &undone) {
        Judgement::Breaks { rules } => rules.into_iter().map(|b| b.rule).collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_banners() {
        assert_eq!(
            dotted_version("qemu-x86_64 version 10.0.2 (Debian 1:10.0.2+ds-2)").as_deref(),
            Some("10.0.2")
        );
        assert_eq!(dotted_version("valgrind-3.19.0").as_deref(), Some("3.19.0"));
        assert_eq!(
            dotted_version("                        Bochs x86 Emulator 2.7").as_deref(),
            Some("2.7")
        );
        assert_eq!(dotted_version("qemu-x86_64 version 10"), None);
        assert_eq!(dotted_version("x86_64"), None);
    }

    #[test]
    fn a_version_prefix_covers_its_releases() {
        assert!(version_covers("7.2", "7.2.22"));
        assert!(version_covers("10.0.2", "10.0.2"));
        assert!(!version_covers("7.2", "7.20.1"));
        assert!(!version_covers("10.0.2", "10.0"));
    }

    fn known_file(path: &str, text: &str, instruction: &str) -> KnownFile {
        KnownFile {
            path: path.into(),
            file: CaseFile::parse(text, path).unwrap(),
            instruction: Some(instruction.into()),
            fixed_on: Vec::new(),
            confirmed_on: Vec::new(),
        }
    }

    #[test]
    fn a_signature_is_known_by_program_and_rule_the_same_instruction_first() {
        let head = "xsave-case 1\nmodel zen5\n";
        let k = Known {
            files: vec![
                known_file(
                    "a.case",
                    &format!("{head}rules xrstor.gp-mxcsr-reserved\ntarget valgrind 3.19.0\n"),
                    "xrstor",
                ),
                known_file(
                    "b.case",
                    &format!("{head}rules fxrstor.gp-mxcsr-reserved, xrstor.gp-mxcsr-reserved\ntarget valgrind 3.19.0\n"),
                    "fxrstor",
                ),
                known_file(
                    "c.case",
                    &format!("{head}rules xrstor.gp-mxcsr-reserved\ntarget qemu-x86_64 10.0.2\n"),
                    "xrstor",
                ),
            ],
            folders: Vec::new(),
        };
        let vg = BackendTarget {
            program: "valgrind".into(),
            version: Some("3.19.0".into()),
        };
        let sig = |rule: &str, insn: &str| Signature {
            backend: "exec:valgrind --tool=none".into(),
            rule: rule.into(),
            instruction: insn.into(),
        };
        let path = |s: Signature| k.lookup(&vg, &s).map(|f| f.path.clone());
        assert_eq!(
            path(sig("xrstor.gp-mxcsr-reserved", "xrstor")).as_deref(),
            Some("a.case")
        );
        assert_eq!(
            path(sig("xrstor.gp-mxcsr-reserved", "fxrstor")).as_deref(),
            Some("b.case")
        );
        assert_eq!(
            path(sig("xrstor.gp-mxcsr-reserved", "xsave")).as_deref(),
            Some("a.case")
        );
        assert_eq!(path(sig("xsave.saves-rfbm", "xsave")), None);
        let bochs = BackendTarget {
            program: "bochs".into(),
            version: None,
        };
        assert!(k
            .lookup(&bochs, &sig("xrstor.gp-mxcsr-reserved", "xrstor"))
            .is_none());
        // Another version: a file explains it only once run there again and
        // still breaking.
        let vg22 = BackendTarget {
            program: "valgrind".into(),
            version: Some("3.22.0".into()),
        };
        assert!(k
            .lookup(&vg22, &sig("xrstor.gp-mxcsr-reserved", "xrstor"))
            .is_none());
        let mut k22 = k.clone();
        k22.files[1]
            .confirmed_on
            .push("exec:valgrind --tool=none".into());
        assert_eq!(
            k22.lookup(&vg22, &sig("xrstor.gp-mxcsr-reserved", "xrstor"))
                .map(|f| f.path.as_str()),
            Some("b.case")
        );
        // A file whose rules no longer break on this backend explains nothing there.
        let mut k = k.clone();
        k.files[0].fixed_on.push("exec:valgrind --tool=none".into());
        let found = k.lookup(&vg, &sig("xrstor.gp-mxcsr-reserved", "xrstor"));
        assert_eq!(found.map(|f| f.path.as_str()), Some("b.case"));
    }
}
