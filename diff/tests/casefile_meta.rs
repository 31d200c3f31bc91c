//! The `rules` and `target` lines of a case file: read, written back, and
//! every mistake named with its file and line.
use xsave_diff::casefile::{write_case_meta, CaseFile, TargetLine};
use xsave_emu::CpuModel;

const FILE: &str = "# QEMU 10 runs XSAVEC without advertising it.\nxsave-case 1\nmodel zen5\nrules xsavec.ud-not-advertised, save.writes-only-saved\ntarget qemu-x86_64 10.0.2\ntarget qemu-x86_64 7.2\n\n[code]\n48 0f c7 27  # xsavec64 [rdi]\n";

#[test]
fn rules_and_targets_are_read_in_order() {
    let cf = CaseFile::parse(FILE, "t.case").unwrap();
    assert_eq!(
        cf.meta.rules,
        ["xsavec.ud-not-advertised", "save.writes-only-saved"]
    );
    assert_eq!(cf.meta.rules_line, 4);
    let t: Vec<String> = cf.meta.targets.iter().map(TargetLine::to_string).collect();
    assert_eq!(t, ["qemu-x86_64 10.0.2", "qemu-x86_64 7.2"]);
    assert_eq!(cf.meta.targets[1].line, 6);
}

#[test]
fn rules_and_targets_are_written_after_the_model_line() {
    let m = CpuModel::builtin("zen5").unwrap();
    let cf = CaseFile::parse(FILE, "t.case").unwrap();
    let case = cf.build(&m).unwrap();
    let text = write_case_meta(&cf.comments, "zen5", &cf.meta, &m, &case);
    assert!(
        text.starts_with("# QEMU 10 runs XSAVEC without advertising it.\nxsave-case 1\nmodel zen5\nrules xsavec.ud-not-advertised, save.writes-only-saved\ntarget qemu-x86_64 10.0.2\ntarget qemu-x86_64 7.2\n"),
        "{text}"
    );
    let again = CaseFile::parse(&text, "again.case").unwrap();
    assert_eq!(again.meta.rules, cf.meta.rules);
    assert_eq!(again.meta.targets.len(), 2);
}

fn err(text: &str) -> String {
    CaseFile::parse(text, "t.case").unwrap_err().to_string()
}

#[test]
fn a_bad_rule_id_names_its_line() {
    assert_eq!(
        err(&FILE.replace("xsavec.ud-not-advertised", "XSAVEC no UD")),
        "t.case:4: expected rule ids like `xsave.saves-rfbm`, comma-separated, found `XSAVEC no UD` in `rules XSAVEC no UD, save.writes-only-saved`"
    );
}

#[test]
fn a_second_rules_line_is_an_error() {
    let text = FILE.replace("target qemu-x86_64 7.2\n", "rules xsave.saves-rfbm\n");
    assert_eq!(
        err(&text),
        "t.case:6: a second `rules` line (the first is line 4)"
    );
}

#[test]
fn a_target_needs_a_program_and_a_version() {
    assert_eq!(
        err(&FILE.replace("target qemu-x86_64 7.2", "target qemu-x86_64")),
        "t.case:6: expected `target PROGRAM VERSION` (e.g. `target qemu-x86_64 10.0.2`), found `target qemu-x86_64`"
    );
}
