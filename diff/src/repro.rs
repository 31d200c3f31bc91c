//! `xsdiff repro`: runs case files and checks them: the `[expect]` section
//! against every backend's outcome, each `[record MODEL]` against every real
//! backend presenting that model (this CPU's own record against the hardware,
//! an emulator's record against that emulator under `exec:`), a silicon's
//! record also against the emulator's prediction for its model, and, in a
//! file with neither, every backend against the first.
//!
//! A file has one of four outcomes, each with its exit status: pass (0: at
//! least one check ran and every check that ran passed), mismatch (1), error
//! (2: the file cannot be read or built) and not checked (3: no check ran,
//! each reason naming the instruction or the control state a backend declined).

use crate::backend::{self, Backend};
use crate::casefile::{CaseFile, Expected};
use crate::compare::{compare, verdict, Diff};
use serde::Serialize;
use std::path::Path;
use xsave_emu::{Case, CpuModel, Outcome};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// "expect vs native", "record zen5 vs emu:zen5".
    pub what: String,
    /// pass, mismatch, skipped (the backend did not run the case) or
    /// not-checked (it ran, but cannot observe what the section states).
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<Diff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    /// pass, mismatch, not-checked or error.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checks: Vec<Check>,
}

/// Built-in models of real silicon (the others describe emulators).
pub const SILICON: [&str; 3] = ["zen5", "xeon-amx-vm", "sapphire-rapids"];

/// Whether `m` is a silicon's model: a built-in silicon, or this CPU.
pub fn is_silicon(m: &CpuModel) -> bool {
    SILICON.contains(&m.name.as_str()) || host().is_ok_and(|h| h.name == m.name)
}

fn host() -> Result<CpuModel, String> {
    crate::models::resolve("host")
}

/// The model a case file names (`host` resolved).
pub fn file_model(cf: &CaseFile) -> Result<CpuModel, String> {
    crate::models::resolve(&cf.model).map_err(|e| format!("{}: {e}", cf.file))
}

/// The backends a file runs on: the given specs, or the emulator with the
/// file's model plus this CPU when the file's model is this CPU's.
pub fn backends_for(
    model: &CpuModel,
    file_model: &str,
    specs: Option<&[String]>,
) -> Result<Vec<Box<dyn Backend + Send>>, String> {
    if let Some(specs) = specs {
        return specs
            .iter()
            .map(|s| backend::open(s, Some(model)))
            .collect();
    }
    let mut v: Vec<Box<dyn Backend + Send>> =
        vec![Box::new(backend::emu::EmuBackend::new(model.clone()))];
    let h = host().ok();
    let on_host = file_model == "host" || h.as_ref().is_some_and(|h| h.name == model.name);
    if on_host {
        if let Ok(n) = backend::native::NativeBackend::new() {
            v.push(Box::new(n));
        }
    }
    Ok(v)
}

fn check(
    what: String,
    model: &CpuModel,
    case: &Case,
    exp: &Expected,
    obs: &Outcome,
    real: bool,
) -> Check {
    let e = exp.against(obs);
    // Noise quirks never weaken what the section states explicitly.
    let strict;
    let model = if exp.explicit_noise_fields {
        let mut m = model.clone();
        m.quirks.xinuse_noise = false;
        m.quirks.x87_pointers_uncontrolled = false;
        strict = m;
        &strict
    } else {
        model
    };
    let cmp = compare(model, case, &e, obs);
    if cmp.is_match() {
        if let Some(why) = exp.unobservable(obs) {
            let backend = what.rsplit(" vs ").next().unwrap_or("").to_string();
            return Check {
                what,
                result: "not-checked".into(),
                verdict: None,
                diffs: Vec::new(),
                reason: Some(format!("{why} cannot be checked on {backend}")),
            };
        }
        return Check {
            what,
            result: "pass".into(),
            verdict: None,
            diffs: Vec::new(),
            reason: None,
        };
    }
    let v = if real {
        Some(verdict(model, case, &cmp, obs).short().to_string())
    } else {
        None
    };
    Check {
        what,
        result: "mismatch".into(),
        verdict: v,
        diffs: cmp.diffs,
        reason: None,
    }
}

fn skipped(what: String, reason: String) -> Check {
    Check {
        what,
        result: "skipped".into(),
        verdict: None,
        diffs: Vec::new(),
        reason: Some(reason),
    }
}

/// Checks one file.
pub fn repro_file(path: &Path, specs: Option<&[String]>) -> FileReport {
    let file = path.display().to_string();
    match repro_inner(path, specs) {
        Ok(checks) => {
            let status = if checks.iter().any(|c| c.result == "mismatch") {
                "mismatch"
            } else if checks.iter().any(|c| c.result == "pass") {
                "pass"
            } else {
                "not-checked"
            };
            FileReport {
                file,
                status: status.into(),
                error: None,
                checks,
            }
        }
        Err(e) => FileReport {
            file,
            status: "error".into(),
            error: Some(e),
            checks: Vec::new(),
        },
    }
}

fn repro_inner(path: &Path, specs: Option<&[String]>) -> Result<Vec<Check>, String> {
    let cf = CaseFile::load(path).map_err(|e| e.to_string())?;
    let model = file_model(&cf)?;
    let case = cf.build(&model).map_err(|e| e.to_string())?;
    let mut backends = backends_for(&model, &cf.model, specs)?;
    let mut checks = Vec::new();
    // (backend, real, its model's name, the case as built for it, outcome)
    let mut outs: Vec<(String, bool, String, Case, Option<Outcome>)> = Vec::new();
    for b in backends.iter_mut() {
        let name = b.name();
        // A `host` case runs on each backend as built for the model it presents.
        let bcase = if cf.model == "host" && b.model().name != model.name {
            cf.build(b.model()).map_err(|e| e.to_string())?
        } else {
            case.clone()
        };
        let bmodel = b.model().clone();
        match b.run(&bcase) {
            Ok(o) => outs.push((name, b.is_real(), bmodel.name.clone(), bcase, Some(o))),
            Err(s) => {
                // The emulator's reason in full (the backend's short form drops
                // the instruction's text, which a user needs).
                let reason = match xsave_emu::predict(&bmodel, &bcase) {
                    Err(u) if !b.is_real() && name.starts_with("emu:") => format!("emu: {}", u.0),
                    _ => s.0,
                };
                checks.push(skipped(format!("run on {name}"), reason));
                outs.push((name, b.is_real(), bmodel.name.clone(), bcase, None));
            }
        }
    }
    if let Some(sec) = &cf.expect {
        for (k, (name, real, _, bcase, o)) in outs.iter().enumerate() {
            if let Some(o) = o {
                let bmodel = backends[k].model();
                let exp = cf.expected(sec, bmodel, bcase).map_err(|e| e.to_string())?;
                checks.push(check(
                    format!("expect vs {name}"),
                    bmodel,
                    bcase,
                    &exp,
                    o,
                    *real,
                ));
            }
        }
    }
    for (rname, sec) in &cf.records {
        let rmodel = CpuModel::builtin(rname)
            .or_else(|| host().ok().filter(|h| &h.name == rname))
            .ok_or_else(|| {
                format!(
                    "{}:{}: record for unknown model `{rname}` (expected a built-in model name)",
                    cf.file, sec.line
                )
            })?;
        let rcase = if cf.model == "host" {
            cf.build(&rmodel).map_err(|e| e.to_string())?
        } else {
            case.clone()
        };
        let exp = cf
            .expected(sec, &rmodel, &rcase)
            .map_err(|e| e.to_string())?;
        // A silicon's record against the emulator's prediction for its model (an
        // emulator target's record is what that emulator did, a finding: it is
        // checked only against a backend that presents that model).
        if is_silicon(&rmodel) {
            match xsave_emu::predict(&rmodel, &rcase) {
                Ok(p) => checks.push(check(
                    format!("record {rname} vs emu:{rname}"),
                    &rmodel,
                    &rcase,
                    &exp,
                    &p,
                    false,
                )),
                Err(u) => checks.push(skipped(
                    format!("record {rname} vs emu:{rname}"),
                    format!("emu: {}", u.0),
                )),
            }
        }
        // ... and against every real backend presenting that model.
        for (name, real, bmodel, _, o) in &outs {
            if *real && bmodel == rname {
                if let Some(o) = o {
                    checks.push(check(
                        format!("record {rname} vs {name}"),
                        &rmodel,
                        &rcase,
                        &exp,
                        o,
                        true,
                    ));
                }
            }
        }
    }
    if cf.expect.is_none() && cf.records.is_empty() {
        if let Some((n0, _, _, _, Some(o0))) = outs.first() {
            for (name, real, _, _, o) in outs.iter().skip(1) {
                if let Some(o) = o {
                    let cmp = compare(&model, &case, o0, o);
                    let c = if cmp.is_match() {
                        Check {
                            what: format!("{name} vs {n0}"),
                            result: "pass".into(),
                            verdict: None,
                            diffs: vec![],
                            reason: None,
                        }
                    } else {
                        let v = real.then(|| verdict(&model, &case, &cmp, o).short().to_string());
                        Check {
                            what: format!("{name} vs {n0}"),
                            result: "mismatch".into(),
                            verdict: v,
                            diffs: cmp.diffs,
                            reason: None,
                        }
                    };
                    checks.push(c);
                }
            }
        }
    }
    Ok(checks)
}

impl FileReport {
    pub fn text(&self) -> String {
        let mut s = String::new();
        match self.status.as_str() {
            "error" => s.push_str(&format!("ERROR {}\n", self.error.as_deref().unwrap_or(""))),
            "not-checked" => {
                s.push_str(&format!("NOT CHECKED {}: no check ran\n", self.file));
                for c in &self.checks {
                    s.push_str(&format!(
                        "  {}: {} ({})\n",
                        c.what,
                        c.result,
                        c.reason.as_deref().unwrap_or("")
                    ));
                }
            }
            st => {
                let passed: Vec<&str> = self
                    .checks
                    .iter()
                    .filter(|c| c.result == "pass")
                    .map(|c| c.what.as_str())
                    .collect();
                if passed.is_empty() {
                    s.push_str(&format!(
                        "{} {} (no check passed)\n",
                        st.to_uppercase(),
                        self.file
                    ));
                } else {
                    s.push_str(&format!(
                        "{} {} ({} checks passed: {})\n",
                        st.to_uppercase(),
                        self.file,
                        passed.len(),
                        passed.join(", ")
                    ));
                }
                for c in &self.checks {
                    match c.result.as_str() {
                        "mismatch" => {
                            s.push_str(&format!("  {}: mismatch", c.what));
                            if let Some(v) = &c.verdict {
                                s.push_str(&format!(" ({v})"));
                            }
                            s.push('\n');
                            for d in &c.diffs {
                                s.push_str(&format!(
                                    "    {}: expected {}, got {}\n",
                                    d.field, d.left, d.right
                                ));
                            }
                        }
                        "skipped" | "not-checked" => s.push_str(&format!(
                            "  {}: {} ({})\n",
                            c.what,
                            c.result,
                            c.reason.as_deref().unwrap_or("")
                        )),
                        _ => {}
                    }
                }
            }
        }
        s
    }
}

/// The count of files by outcome, and the exit status of a run: error (2)
/// before mismatch (1) before not checked (3) before pass (0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub mismatch: usize,
    pub not_checked: usize,
    pub error: usize,
}

impl Summary {
    pub fn of(reports: &[FileReport]) -> Summary {
        let n = |s: &str| reports.iter().filter(|r| r.status == s).count();
        Summary {
            pass: n("pass"),
            mismatch: n("mismatch"),
            not_checked: n("not-checked"),
            error: n("error"),
        }
    }

    pub fn exit_status(&self) -> u8 {
        if self.error > 0 {
            2
        } else if self.mismatch > 0 {
            1
        } else if self.not_checked > 0 {
            3
        } else {
            0
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{} files: {} pass, {} mismatch, {} not checked, {} error\n",
            self.pass + self.mismatch + self.not_checked + self.error,
            self.pass,
            self.mismatch,
            self.not_checked,
            self.error
        )
    }
}
