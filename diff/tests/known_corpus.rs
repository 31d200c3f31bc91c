//! The corpus's known findings: every emulator finding (corpus/regressions,
//! corpus/ring0) names the rules it breaks and its targets; every named silicon case
//! (corpus/silicon) names the rules it shows.
use std::path::Path;
use xsave_diff::known::Known;

fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn case_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn every_finding_names_its_rules_and_targets() {
    let k = Known::load(&corpus()).unwrap_or_else(|e| panic!("{e}"));
    for folder in ["regressions", "ring0"] {
        for f in case_files(&corpus().join(folder)) {
            let kf = k
                .files
                .iter()
                .find(|x| x.path.ends_with(f.rsplit('/').next().unwrap()))
                .unwrap_or_else(|| panic!("{f}: no `rules` line"));
            assert!(!kf.targets().is_empty(), "{f}: no `target` line");
        }
    }
    // The silicon cases name the rules they show (and have no target).
    let mut silicon = case_files(&corpus().join("silicon"));
    silicon.extend(case_files(&corpus().join("silicon/generated")));
    assert!(silicon.len() >= 266, "{}", silicon.len());
    for f in silicon {
        let kf = k.files.iter().find(|x| x.path == f);
        let kf = kf.unwrap_or_else(|| panic!("{f}: no `rules` line"));
        assert!(kf.targets().is_empty(), "{f}: a silicon case with a target");
    }
}

#[test]
fn targets_are_the_programs_backends_run() {
    let k = Known::load(&corpus()).unwrap();
    let programs: std::collections::BTreeSet<&str> = k
        .files
        .iter()
        .flat_map(|f| f.targets().iter().map(|t| t.program.as_str()))
        .collect();
    let v: Vec<&str> = programs.into_iter().collect();
    assert_eq!(v, ["bochs", "qemu-x86_64", "unicorn", "valgrind"]);
    assert_eq!(k.for_program("bochs").count(), 28);
    assert_eq!(k.for_program("valgrind").count(), 7);
    assert_eq!(k.for_program("qemu-x86_64").count(), 11);
}

/// Every generated silicon case names at least the rules the envelope names
/// when its instructions are undone (`known::rules_shown` on xeon-amx-vm).
#[test]
fn generated_silicon_cases_name_the_rules_they_show() {
    let model = xsave_emu::CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut derived = 0;
    for f in case_files(&corpus().join("silicon/generated")) {
        let cf = xsave_diff::casefile::CaseFile::load(Path::new(&f)).unwrap();
        let case = cf.build(&model).unwrap_or_else(|e| panic!("{e}"));
        let Ok(shown) = xsave_diff::known::rules_shown(&model, &case) else {
            continue;
        };
        for r in &shown {
            assert!(
                cf.meta.rules.contains(r),
                "{f}: shows {r}, names {:?}",
                cf.meta.rules
            );
        }
        derived += !shown.is_empty() as usize;
    }
    assert_eq!(derived, 187);
}

/// What the envelope says of each `[record TARGET]` of an emulator finding:
/// it breaks every rule the file names.
#[test]
fn every_record_breaks_the_rules_its_file_names() {
    use xsave_diff::compare::compare;
    use xsave_diff::signature::{judge, Judgement};
    let k = Known::load(&corpus()).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for f in k.files.iter().filter(|f| !f.targets().is_empty()) {
        let model = xsave_diff::models::resolve(&f.file.model).unwrap();
        let case = f.file.build(&model).unwrap_or_else(|e| panic!("{e}"));
        let predicted = xsave_emu::predict(&model, &case).unwrap();
        for (name, sec) in &f.file.records {
            let rec = f.file.expected(sec, &model, &case).unwrap();
            let obs = rec.against(&predicted);
            let cmp = compare(&model, &case, &predicted, &obs);
            let broken = match judge(&model, &case, &cmp, &obs) {
                Judgement::Breaks { rules } => rules.into_iter().map(|b| b.rule).collect(),
                other => vec![format!("{other:?}")],
            };
            for r in f.rules() {
                if !broken.contains(r) {
                    wrong.push(format!(
                        "{} [record {name}]: names {r}, breaks {broken:?}",
                        f.path
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked, 60);
}
