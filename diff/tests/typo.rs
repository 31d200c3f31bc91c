//! A case file with a typo fails with a one-line error naming its file and line.
use xsave_diff::casefile::CaseFile;
use xsave_emu::CpuModel;

const GOOD: &str = "# comment\nxsave-case 1\nmodel zen5\n\n[init]\nxmm3 = 0x1\n\n[code]\n48 0f ae 27  # xsave64 [rdi]\n";

fn err(text: &str) -> String {
    let m = CpuModel::builtin("zen5").unwrap();
    match CaseFile::parse(text, "t.case") {
        Err(e) => e.to_string(),
        Ok(cf) => cf.build(&m).map(|_| ()).expect_err("must fail").to_string(),
    }
}

#[test]
fn good_file_builds() {
    let m = CpuModel::builtin("zen5").unwrap();
    let c = CaseFile::parse(GOOD, "t.case").unwrap().build(&m).unwrap();
    assert_eq!(c.init[160 + 48], 1);
    assert_eq!(c.code, vec![0x48, 0x0f, 0xae, 0x27]);
}

#[test]
fn misspelled_register_names_its_line() {
    let e = err(&GOOD.replace("xmm3", "xmn3"));
    assert!(e.starts_with("t.case:6: unknown field `xmn3`"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn misspelled_section_names_its_line() {
    let e = err(&GOOD.replace("[code]", "[cod]"));
    assert!(e.starts_with("t.case:8: unknown section `[cod]`"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn bad_hex_and_missing_equals_name_their_lines() {
    let e = err(&GOOD.replace("48 0f ae 27", "48 0g ae 27"));
    assert!(
        e.starts_with("t.case:9: expected instruction bytes in hex"),
        "{e}"
    );
    let e = err(&GOOD.replace("xmm3 = 0x1", "xmm3 0x1"));
    assert!(e.starts_with("t.case:6: expected `name = value`"), "{e}");
    let e = err(&GOOD.replace("xmm3 = 0x1", "xmm3 = 0x1ffffffffffffffffffffffffffffffff"));
    assert!(
        e.starts_with("t.case:6: expected a `0x` number or 16 hex bytes for `xmm3`"),
        "{e}"
    );
}

#[test]
fn wrong_version_and_unknown_model_are_errors() {
    let e = err(&GOOD.replace("xsave-case 1", "xsave-case 7"));
    assert!(
        e.starts_with("t.case:2: unsupported case-file version `7`"),
        "{e}"
    );
    let e = xsave_diff::models::resolve("zen6").unwrap_err();
    assert!(e.starts_with("unknown CPU model `zen6`"), "{e}");
}
