//! The emulator findings in `corpus/regressions/`: every case file there is a
//! difference between a shipped emulator (QEMU user mode, Valgrind, Unicorn) and
//! the SDM, minimized. For each file this test checks three things:
//!
//! 1. the model (`xsave_emu::predict` for the file's CPU model) gives exactly the
//!    `[expect]` section: the SDM's outcome;
//! 2. where this CPU can run the case (built for this CPU's model), the silicon
//!    stays inside the SDM's envelope, and on the Intel Xeon the corpus was
//!    recorded on it gives exactly what the model predicts (skipped with a
//!    reason where the ring-3 runner refuses the case);
//! 3. for every `[record TARGET]` section, where that target is installed, the
//!    target still gives exactly the recorded outcome, which differs from
//!    `[expect]`: the finding is still there. When upstream fixes it, this test
//!    fails and the file's record (or the file) must be updated.
//!
//! Targets are found by their record's model name: `qemu-max-10.0` is
//! `qemu-x86_64` (QEMU 10.0.x; its default CPU is `max` in user mode),
//! `qemu-max-7.2` is `/opt/qemu-7.2/bin/qemu-x86_64`, `valgrind-3.19` is
//! `valgrind --tool=none` (3.19.x), `unicorn-*` is the in-process `unicorn`
//! backend (cargo feature `unicorn`).

use std::path::{Path, PathBuf};
use std::process::Command;
use xsave_diff::backend;
use xsave_diff::casefile::{CaseFile, Expected};
use xsave_diff::compare::{compare, render};
use xsave_emu::{Case, CpuModel, Outcome};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions")
}

fn files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus/regressions exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    v.sort();
    v
}

/// The first line a command prints on stdout, if it runs at all.
fn version_line(cmd: &str, arg: &str) -> Option<String> {
    let out = Command::new(cmd).arg(arg).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.lines().next().map(str::to_string)
}

/// The backend spec that runs the target a record is named after, or why not here.
fn target_spec(record: &str) -> Result<String, String> {
    match record {
        "qemu-max-10.0" => match version_line("qemu-x86_64", "--version") {
            Some(v) if v.contains("version 10.0.") => Ok("exec:qemu-x86_64".into()),
            Some(v) => Err(format!("qemu-x86_64 is not QEMU 10.0.x ({v})")),
            None => Err("qemu-x86_64 is not installed".into()),
        },
        "qemu-max-7.2" => {
            let q = "/opt/qemu-7.2/bin/qemu-x86_64";
            match version_line(q, "--version") {
                Some(v) if v.contains("version 7.2.") => Ok(format!("exec:{q}")),
                Some(v) => Err(format!("{q} is not QEMU 7.2.x ({v})")),
                None => Err(format!("{q} is not installed")),
            }
        }
        "valgrind-3.19" => match version_line("valgrind", "--version") {
            Some(v) if v.starts_with("valgrind-3.19.") => Ok("exec:valgrind --tool=none".into()),
            Some(v) => Err(format!("valgrind is not 3.19.x ({v})")),
            None => Err("valgrind is not installed".into()),
        },
        r if r.starts_with("unicorn-") => {
            if cfg!(feature = "unicorn") {
                Ok("unicorn".into())
            } else {
                Err("built without the `unicorn` feature".into())
            }
        }
        _ => Err(format!("no known target for record `{record}`")),
    }
}

/// `exp` with XINUSE taken from `obs` where the section does not give it.
fn expected_for(exp: &Expected, obs: &Outcome) -> Outcome {
    let mut e = exp.outcome.clone();
    if !exp.check_xinuse {
        e.xinuse = obs.xinuse;
    }
    e
}

fn load(path: &Path) -> (CaseFile, CpuModel, Case) {
    let cf = CaseFile::load(path).unwrap_or_else(|e| panic!("{e}"));
    let model =
        xsave_diff::models::resolve(&cf.model).unwrap_or_else(|e| panic!("{}: {e}", cf.file));
    let case = cf.build(&model).unwrap_or_else(|e| panic!("{e}"));
    (cf, model, case)
}

#[test]
fn every_regression_file_has_an_explained_expectation_and_a_target_record() {
    let files = files();
    assert!(
        files.len() >= 8,
        "corpus/regressions holds {} case files",
        files.len()
    );
    for p in &files {
        let (cf, _, _) = load(p);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = name.split('-').next().unwrap();
        assert!(
            ["qemu", "qemu10", "qemu72", "valgrind", "unicorn"].contains(&prefix),
            "{name}: the file name starts with its target"
        );
        let header = cf.comments.join(" ");
        assert!(
            header.len() >= 120,
            "{name}: the header explains the finding in two or three sentences"
        );
        assert!(
            header.contains("SDM"),
            "{name}: the header names the SDM rule"
        );
        assert!(cf.expect.is_some(), "{name}: no [expect] section");
        assert!(!cf.records.is_empty(), "{name}: no [record TARGET] section");
    }
}

/// Rule 1: the model gives the SDM outcome recorded in `[expect]`, and every
/// record differs from it (each file is a finding, not an agreement).
#[test]
fn the_model_predicts_every_expect_section_and_every_record_differs() {
    for p in files() {
        let (cf, model, case) = load(&p);
        let sec = cf.expect.as_ref().unwrap();
        let exp = cf
            .expected(sec, &model, &case)
            .unwrap_or_else(|e| panic!("{e}"));
        let pred = xsave_emu::predict(&model, &case)
            .unwrap_or_else(|u| panic!("{}: emu does not model it: {}", cf.file, u.0));
        let cmp = compare(&model, &case, &expected_for(&exp, &pred), &pred);
        assert!(
            cmp.is_match(),
            "{}: [expect] vs emu:{}\n{}",
            cf.file,
            model.name,
            render(&cmp, "expect", "emu")
        );
        for (rname, rsec) in &cf.records {
            let rec = cf
                .expected(rsec, &model, &case)
                .unwrap_or_else(|e| panic!("{e}"));
            let cmp = compare(
                &model,
                &case,
                &expected_for(&exp, &rec.outcome),
                &rec.outcome,
            );
            assert!(
                !cmp.is_match(),
                "{}: [record {rname}] equals [expect]: not a finding",
                cf.file
            );
        }
    }
}

/// The CPU model of the machine the records and expectations were made on.
const RECORDED_ON: &str = "xeon-amx-vm";

/// Rule 2: on this CPU the case (built for this CPU's model) stays inside the
/// SDM's envelope, and on the recording CPU it gives exactly what the model predicts.
#[test]
fn this_cpu_agrees_with_the_model_on_every_regression_case() {
    let host = match xsave_diff::models::resolve("host") {
        Ok(h) => h,
        Err(e) => {
            println!("skipped: no host model: {e}");
            return;
        }
    };
    let mut native = match backend::open("native", Some(&host)) {
        Ok(b) => b,
        Err(e) => {
            println!("skipped: the native backend cannot start here: {e}");
            return;
        }
    };
    let mut ran = 0;
    for p in files() {
        let cf = CaseFile::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let case = cf.build(&host).unwrap_or_else(|e| panic!("{e}"));
        let obs = match native.run(&case) {
            Ok(o) => o,
            Err(s) => {
                println!("{}: native skipped: {s}", cf.file);
                continue;
            }
        };
        // Inside what the SDM allows, on any CPU.
        match xsave_emu::check(&host, &case, &obs) {
            Ok(j) if j.inside() => {}
            Ok(j) => panic!("{}: native is outside the SDM's envelope: {j}", cf.file),
            Err(u) => panic!("{}: emu does not model it: {}", cf.file, u.0),
        }
        // Exactly the model's prediction on the CPU the corpus was recorded on.
        if host.name == RECORDED_ON {
            let pred = xsave_emu::predict(&host, &case)
                .unwrap_or_else(|u| panic!("{}: emu does not model it: {}", cf.file, u.0));
            let cmp = compare(&host, &case, &pred, &obs);
            assert!(
                cmp.is_match(),
                "{}: emu:{} vs native\n{}",
                cf.file,
                host.name,
                render(&cmp, "emu", "native")
            );
        }
        ran += 1;
    }
    println!("{ran} regression cases checked on this CPU ({})", host.name);
}

/// Rule 3: every installed target still shows its recorded finding.
#[test]
fn every_installed_target_still_shows_its_finding() {
    let mut checked = 0;
    for p in files() {
        let (cf, model, case) = load(&p);
        for (rname, rsec) in &cf.records {
            let spec = match target_spec(rname) {
                Ok(s) => s,
                Err(why) => {
                    println!("{}: [record {rname}] skipped: {why}", cf.file);
                    continue;
                }
            };
            let mut b = match backend::open(&spec, Some(&model)) {
                Ok(b) => b,
                Err(e) => {
                    println!(
                        "{}: [record {rname}] skipped: {spec} cannot start: {e}",
                        cf.file
                    );
                    continue;
                }
            };
            let obs = b
                .run(&case)
                .unwrap_or_else(|s| panic!("{}: {spec} refused the case: {s}", cf.file));
            let rec = cf
                .expected(rsec, &model, &case)
                .unwrap_or_else(|e| panic!("{e}"));
            let cmp = compare(&model, &case, &expected_for(&rec, &obs), &obs);
            assert!(
                cmp.is_match(),
                "{}: {spec} no longer gives [record {rname}] (fixed upstream? then update the file)\n{}",
                cf.file,
                render(&cmp, "record", &spec)
            );
            checked += 1;
        }
    }
    println!("{checked} target records reproduced");
}
