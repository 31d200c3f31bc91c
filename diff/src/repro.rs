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
use crate::casefile::{fmt_layout_value, CaseFile, Expected};
use crate::compare::{compare, verdict, Diff, Verdict};
use serde::Serialize;
use std::path::Path;
use xsave_emu::{Case, CpuModel, Outcome};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// "expect vs native", "record zen5 vs emu:zen5".
    pub what: String,
    /// pass, mismatch or skipped (the backend did not run the case); what a
    /// check that ran cannot observe is listed in `unchecked`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<Diff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the section states that this backend cannot observe ("supervisor
    /// state ... cannot be checked on native"): not part of a pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<String>,
    /// The keys of `unchecked` (`supervisor`, `xstate_bv:12`, `layout`).
    #[serde(skip)]
    pub unchecked_keys: Vec<String>,
}

impl Check {
    fn new(what: String, result: &str) -> Check {
        Check {
            what,
            result: result.into(),
            verdict: None,
            diffs: Vec::new(),
            reason: None,
            unchecked: Vec::new(),
            unchecked_keys: Vec::new(),
        }
    }
}

/// What a backend observes beyond a ring-3 outcome ([`Backend::observes_supervisor`],
/// [`Backend::enumerates_layout`]).
#[derive(Debug, Clone, Copy)]
pub struct Observes {
    pub supervisor: bool,
    pub layout: bool,
}

impl Observes {
    /// The emulator's prediction: its model is everything.
    pub const EMU: Observes = Observes {
        supervisor: true,
        layout: true,
    };
    pub fn of(b: &dyn Backend) -> Observes {
        Observes {
            supervisor: b.observes_supervisor(),
            layout: b.enumerates_layout(),
        }
    }
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
    observes: Observes,
) -> Check {
    let mut e = exp.against(obs);
    // A backend that does not read supervisor state is not judged on it.
    if !observes.supervisor {
        e.supervisor = obs.supervisor.clone();
    }
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
    let mut diffs = cmp.diffs.clone();
    if observes.layout {
        for l in exp.checked_layout() {
            let got = l.observed(model, case.control.xcr0);
            if got != Some(l.value) {
                diffs.push(Diff {
                    field: l.what(),
                    class: "layout".into(),
                    left: fmt_layout_value(Some(l.value)),
                    right: fmt_layout_value(got),
                });
            }
        }
    }
    let backend = what.rsplit(" vs ").next().unwrap_or("").to_string();
    let (unchecked_keys, unchecked): (Vec<String>, Vec<String>) = exp
        .unobservable(observes.supervisor, observes.layout)
        .into_iter()
        .map(|(k, w)| (k, format!("{w} cannot be checked on {backend}")))
        .unzip();
    let v = (!diffs.is_empty() && real && !cmp.is_match()).then(|| verdict(model, case, &cmp, obs));
    // `accept = sdm`: what differs is a choice the SDM leaves open.
    let accepted = exp.accept_sdm && matches!(v, Some(Verdict::InsideEnvelope { .. }));
    let result = if diffs.is_empty() || accepted {
        "pass"
    } else {
        "mismatch"
    };
    let mut c = Check::new(what, result);
    c.verdict = v.map(|v| v.short().to_string());
    c.diffs = diffs;
    c.unchecked = unchecked;
    c.unchecked_keys = unchecked_keys;
    c
}

fn skipped(what: String, reason: String) -> Check {
    let mut c = Check::new(what, "skipped");
    c.reason = Some(reason);
    c
}

/// Checks one file.
pub fn repro_file(path: &Path, specs: Option<&[String]>) -> FileReport {
    let file = path.display().to_string();
    match repro_inner(path, specs) {
        Ok(checks) => {
            let status = if checks.iter().any(|c| c.result == "mismatch") {
                "mismatch"
            } else if checks.iter().any(|c| c.result == "pass") && unverified(&checks).is_empty() {
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

/// What a section states that no passing check observed: (section, key)
/// pairs that every passing check of that section left unchecked. A file
/// with any is not checked, whatever else passed.
fn unverified(checks: &[Check]) -> Vec<(String, String)> {
    let section = |c: &Check| c.what.split(" vs ").next().unwrap_or("").to_string();
    let mut v: Vec<(String, String)> = Vec::new();
    for c in checks {
        for k in &c.unchecked_keys {
            let s = section(c);
            let seen = checks
                .iter()
                .any(|p| p.result == "pass" && section(p) == s && !p.unchecked_keys.contains(k));
            if !seen && !v.contains(&(s.clone(), k.clone())) {
                v.push((s, k.clone()));
            }
        }
    }
    v
}

fn repro_inner(path: &Path, specs: Option<&[String]>) -> Result<Vec<Check>, String> {
    let cf = CaseFile::load(path).map_err(|e| e.to_string())?;
    let model = file_model(&cf)?;
    let case = cf.build(&model).map_err(|e| e.to_string())?;
    let mut backends = backends_for(&model, &cf.model, specs)?;
    let mut checks = Vec::new();
    // (backend, real, its model's name, the case as built for it, outcome, what it observes)
    let mut outs: Vec<(String, bool, String, Case, Option<Outcome>, Observes)> = Vec::new();
    for b in backends.iter_mut() {
        let name = b.name();
        // A `host` case runs on each backend as built for the model it presents.
        let bcase = if cf.model == "host" && b.model().name != model.name {
            cf.build(b.model()).map_err(|e| e.to_string())?
        } else {
            case.clone()
        };
        let bmodel = b.model().clone();
        let observes = Observes::of(b.as_ref());
        match b.run(&bcase) {
            Ok(o) => outs.push((
                name,
                b.is_real(),
                bmodel.name.clone(),
                bcase,
                Some(o),
                observes,
            )),
            Err(s) => {
                // The emulator's reason in full (the backend's short form drops
                // the instruction's text, which a user needs).
                let mut reason = match xsave_emu::predict(&bmodel, &bcase) {
                    Err(u) if !b.is_real() && name.starts_with("emu:") => format!("emu: {}", u.0),
                    _ => s.0,
                };
                // A control state the backend's CPU lacks, named with what it has.
                let xcr0 = bcase.control.xcr0;
                if xcr0 & !bmodel.xcr0_supported != 0 {
                    reason += &format!(
                        "; the case's XCR0 is {xcr0:#x}, {name} enumerates XCR0 support {:#x} (CPUID.(0DH,0):EDX:EAX), without {}",
                        bmodel.xcr0_supported,
                        xsave_emu::Xfeatures::from_bits_retain(xcr0 & !bmodel.xcr0_supported).names()
                    );
                }
                let xss = bcase.control.xss;
                if b.observes_supervisor() && xss & !bmodel.xss_supported != 0 {
                    reason += &format!(
                        "; the case's IA32_XSS is {xss:#x}, {name} supports {:#x}, without {}",
                        bmodel.xss_supported,
                        xsave_emu::Xfeatures::from_bits_retain(xss & !bmodel.xss_supported).names()
                    );
                }
                checks.push(skipped(format!("run on {name}"), reason));
                outs.push((
                    name,
                    b.is_real(),
                    bmodel.name.clone(),
                    bcase,
                    None,
                    observes,
                ));
            }
        }
    }
    if let Some(sec) = &cf.expect {
        for (k, (name, real, _, bcase, o, observes)) in outs.iter().enumerate() {
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
                    *observes,
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
                    Observes::EMU,
                )),
                Err(u) => checks.push(skipped(
                    format!("record {rname} vs emu:{rname}"),
                    format!("emu: {}", u.0),
                )),
            }
        }
        // ... and against every real backend presenting that model.
        for (name, real, bmodel, _, o, observes) in &outs {
            if *real && bmodel == rname {
                if let Some(o) = o {
                    checks.push(check(
                        format!("record {rname} vs {name}"),
                        &rmodel,
                        &rcase,
                        &exp,
                        o,
                        true,
                        *observes,
                    ));
                }
            }
        }
    }
    if cf.expect.is_none() && cf.records.is_empty() {
        if let Some((n0, _, _, _, Some(o0), obs0)) = outs.first() {
            for (name, real, _, _, o, obs) in outs.iter().skip(1) {
                if let Some(o) = o {
                    // Supervisor state is compared where both backends read it.
                    let mut o = o.clone();
                    if !(obs0.supervisor && obs.supervisor) {
                        o.supervisor = o0.supervisor.clone();
                    }
                    let cmp = compare(&model, &case, o0, &o);
                    let c = if cmp.is_match() {
                        Check::new(format!("{name} vs {n0}"), "pass")
                    } else {
                        let mut c = Check::new(format!("{name} vs {n0}"), "mismatch");
                        c.verdict =
                            real.then(|| verdict(&model, &case, &cmp, &o).short().to_string());
                        c.diffs = cmp.diffs;
                        c
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
        if self.status == "error" {
            s.push_str(&format!("ERROR {}\n", self.error.as_deref().unwrap_or("")));
            return s;
        }
        let passed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.result == "pass")
            .map(|c| c.what.as_str())
            .collect();
        let head = match (self.status.as_str(), passed.len()) {
            ("not-checked", 0) => "no check ran".to_string(),
            ("not-checked", _) => format!(
                "{} passed: {}; but no backend observed some of what it states",
                plural(passed.len(), "check"),
                passed.join(", ")
            ),
            (_, 0) => "no check passed".to_string(),
            (_, n) => format!("{} passed: {}", plural(n, "check"), passed.join(", ")),
        };
        let st = self.status.replace('-', " ").to_uppercase();
        s.push_str(&format!("{st} {} ({head})\n", self.file));
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
                "pass" if c.verdict.is_some() => {
                    s.push_str(&format!(
                        "  {}: pass by `accept = sdm` ({}):\n",
                        c.what,
                        c.verdict.as_deref().unwrap_or("")
                    ));
                    for d in &c.diffs {
                        s.push_str(&format!(
                            "    {}: stated {}, got {}\n",
                            d.field, d.left, d.right
                        ));
                    }
                }
                "skipped" => s.push_str(&format!(
                    "  {}: {} ({})\n",
                    c.what,
                    c.result,
                    c.reason.as_deref().unwrap_or("")
                )),
                _ => {}
            }
            for u in &c.unchecked {
                s.push_str(&format!("  {}: not checked: {u}\n", c.what));
            }
        }
        s
    }
}

/// `1 check`, `2 checks`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
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
    /// Per backend asked for, the files it did not run (each file's report says
    /// why): a file can pass on the others while a backend ran none of them.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped_by: std::collections::BTreeMap<String, usize>,
}

impl Summary {
    pub fn of(reports: &[FileReport]) -> Summary {
        let n = |s: &str| reports.iter().filter(|r| r.status == s).count();
        let mut skipped_by = std::collections::BTreeMap::new();
        for r in reports {
            let mut once = std::collections::BTreeSet::new();
            for c in r.checks.iter().filter(|c| c.result == "skipped") {
                // "run on BACKEND", or "record M vs emu:M" for a record's model.
                let backend = c
                    .what
                    .strip_prefix("run on ")
                    .or_else(|| c.what.rsplit(" vs ").next())
                    .unwrap_or(&c.what);
                if once.insert(backend) {
                    *skipped_by.entry(backend.to_string()).or_insert(0) += 1;
                }
            }
        }
        Summary {
            pass: n("pass"),
            mismatch: n("mismatch"),
            not_checked: n("not-checked"),
            error: n("error"),
            skipped_by,
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
        let mut s = format!(
            "{} files: {} pass, {} mismatch, {} not checked, {} error\n",
            self.pass + self.mismatch + self.not_checked + self.error,
            self.pass,
            self.mismatch,
            self.not_checked,
            self.error
        );
        for (backend, n) in &self.skipped_by {
            s.push_str(&format!(
                "{backend} did not run {n} of them (the reason is under each file)\n"
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(what: &str, keys: &[&str]) -> Check {
        let mut c = Check::new(what.into(), "pass");
        c.unchecked_keys = keys.iter().map(|k| k.to_string()).collect();
        c.unchecked = keys
            .iter()
            .map(|k| format!("{k} cannot be checked"))
            .collect();
        c
    }

    #[test]
    fn a_stated_part_no_passing_check_observed_is_unverified() {
        // Supervisor state observed on emu, not on native: verified.
        let v = unverified(&[
            pass("expect vs emu:zen5", &[]),
            pass("expect vs native", &["supervisor"]),
        ]);
        assert!(v.is_empty(), "{v:?}");
        // XSTATE_BV[12] observed nowhere: unverified, and the file is not a pass.
        let v = unverified(&[
            pass("expect vs emu:zen5", &["xstate_bv:12"]),
            pass("expect vs native", &["supervisor", "xstate_bv:12"]),
        ]);
        assert_eq!(v, [("expect".to_string(), "xstate_bv:12".to_string())]);
        // A record's check does not verify what [expect] states.
        let v = unverified(&[
            pass("expect vs native", &["supervisor"]),
            pass("record zen5 vs emu:zen5", &[]),
        ]);
        assert_eq!(v, [("expect".to_string(), "supervisor".to_string())]);
    }

    #[test]
    fn noise_never_weakens_a_stated_xstate_bv() {
        // zen5 has `xinuse-noise`: an XSTATE_BV bit set over a component in its
        // init configuration is noise when the file does not state it (SDM1
        // 13.6 lets XINUSE[i] = 1 with component i in its init configuration).
        // XSAVE64 with RFBM = 3 from the init state writes XSTATE_BV = 0 on the
        // model; an observation with XSTATE_BV[0] = 1 there passes a section
        // that states other bytes and fails one that states XSTATE_BV = 0.
        let m = CpuModel::builtin("zen5").unwrap();
        assert!(m.quirks.xinuse_noise);
        let text =
            "xsave-case 1\nmodel zen5\n[gprs]\nrax = 3\nrdi = arena\n[code]\nxsave64 [rdi]\n";
        let case = CaseFile::parse(text, "t.case").unwrap().build(&m).unwrap();
        let pred = xsave_emu::predict(&m, &case).unwrap();
        assert_eq!(pred.memory[0x200..0x208], [0; 8]);
        // The model's own outcome as [expect]: it names no byte of 200H..207H
        // (they stay 0).
        let sec = crate::casefile::write_outcome("expect", &m, &case, &pred);
        assert!(!sec.contains("mem[0x200"), "{sec}");
        let mut obs = pred.clone();
        obs.memory[0x200] = 1;
        let run = |extra: &str| {
            let cf = CaseFile::parse(&format!("{text}{sec}{extra}"), "t.case").unwrap();
            let exp = cf.expected(cf.expect.as_ref().unwrap(), &m, &case).unwrap();
            check(
                "expect vs native".into(),
                &m,
                &case,
                &exp,
                &obs,
                true,
                Observes::EMU,
            )
        };
        let c = run("");
        assert_eq!(c.result, "pass", "{:?}", c.diffs);
        let c = run("mem[0x200..0x208] = 0000000000000000\n");
        assert_eq!(c.result, "mismatch");
        assert!(
            c.diffs.iter().any(|d| d.field.contains("arena+0x200")),
            "{:?}",
            c.diffs
        );
    }

    #[test]
    fn the_text_lists_what_could_not_be_checked() {
        let r = FileReport {
            file: "f.case".into(),
            status: "not-checked".into(),
            error: None,
            checks: vec![pass("expect vs native", &["supervisor"])],
        };
        assert_eq!(
            r.text(),
            "NOT CHECKED f.case (1 check passed: expect vs native; but no backend observed some of what it states)\n  expect vs native: not checked: supervisor cannot be checked\n"
        );
    }

    /// Issue 15: a run where a backend refused every file says so in its
    /// summary, not only under each file, though the files pass on the others.
    #[test]
    fn the_summary_names_a_backend_that_ran_no_file() {
        let refused = |f: &str| FileReport {
            file: f.into(),
            status: "pass".into(),
            error: None,
            checks: vec![
                pass("expect vs emu:sapphire-rapids", &[]),
                skipped(
                    "run on bochs:head:sapphire_rapids".into(),
                    "the host refuses the case's XCR0".into(),
                ),
                skipped(
                    "record x vs bochs:head:sapphire_rapids".into(),
                    "the host refuses the case's XCR0".into(),
                ),
            ],
        };
        let s = Summary::of(&[refused("a.case"), refused("b.case")]);
        assert_eq!(
            s.text(),
            "2 files: 2 pass, 0 mismatch, 0 not checked, 0 error\n\
             bochs:head:sapphire_rapids did not run 2 of them (the reason is under each file)\n"
        );
        assert_eq!(s.exit_status(), 0);
    }

    /// `accept = sdm` (issue 15): Bochs main writes the bytes of a component
    /// the zen5 scenario's XSAVES skips by the modified optimization, which
    /// SDM1 §13.11 leaves to the CPU. With the line, such an outcome passes on
    /// a backend other than the emulator and is listed; without it, or outside
    /// the envelope, or on the emulator, it is a mismatch.
    #[test]
    fn accept_sdm_passes_a_difference_the_sdm_allows_and_only_that() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../corpus/scenarios/linux-cet-s/zen5-xsaves-modified-optimization.case"
        ));
        let cf = CaseFile::load(path).unwrap();
        let model = file_model(&cf).unwrap();
        let case = cf.build(&model).unwrap();
        let sec = cf.expect.as_ref().unwrap();
        let exp = cf.expected(sec, &model, &case).unwrap();
        assert!(exp.accept_sdm);
        let predicted = xsave_emu::predict(&model, &case).unwrap();
        // What Bochs main wrote at arena+0x991..0x998: CET_S's PL0_SSP, saved anyway.
        let mut bochs = predicted.clone();
        bochs.memory[0x991..0x998].copy_from_slice(&[0x10, 0x40, 0x00, 0x80, 0x88, 0xff, 0xff]);
        let run = |e: &Expected, o: &Outcome, real: bool| {
            check(
                "expect vs b".into(),
                &model,
                &case,
                e,
                o,
                real,
                Observes::EMU,
            )
        };
        let c = run(&exp, &bochs, true);
        assert_eq!(c.result, "pass");
        assert_eq!(
            c.verdict.as_deref(),
            Some("inside the envelope but off the model")
        );
        assert_eq!(c.diffs.len(), 1);
        assert_eq!(
            run(&exp, &bochs, false).result,
            "mismatch",
            "the emulator is held to every value"
        );
        let strict = Expected {
            accept_sdm: false,
            ..exp.clone()
        };
        assert_eq!(run(&strict, &bochs, true).result, "mismatch");
        // A fault the SDM does not allow stays a mismatch with the line.
        let mut wrong = predicted.clone();
        wrong.fault = Some(xsave_emu::FaultAt {
            fault: xsave_emu::Fault::gp0(),
            insn: Some(0),
        });
        let c = run(&exp, &wrong, true);
        assert_eq!(c.result, "mismatch");
        assert_eq!(c.verdict.as_deref(), Some("outside the envelope"));
    }
}
