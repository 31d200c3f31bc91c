//! The corpus's known findings: every emulator finding (corpus/regressions)
//! names the rules it breaks and its targets; every named silicon case
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
    for folder in ["regressions"] {
        for f in case_files(&corpus().join(folder)) {
            let kf = k
                .files
                .iter()
                .find(|x| x.path.ends_with(f.rsplit('/').next().unwrap()))
                .unwrap_or_else(|| panic!("{f}: no `rules` line"));
            assert!(!kf.targets().is_empty(), "{f}: no `target` line");
        }
    }
    // The named silicon cases name the rules they show (and have no target).
    for f in case_files(&corpus().join("silicon")) {
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
    assert_eq!(v, ["qemu-x86_64", "unicorn", "valgrind"]);
    assert_eq!(k.for_program("valgrind").count(), 7);
    assert_eq!(k.for_program("qemu-x86_64").count(), 11);
}
