//! `xsdiff repro` has four outcomes with four exit statuses (pass 0, mismatch
//! 1, error 2, not checked 3) and a summary line counting each; a file whose
//! checks did not run is never a pass, and the reason names the instruction.
use std::process::Command;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn repro(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
        .arg("repro")
        .args(["--backends", "emu:zen5"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xsdiff-repro-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PASS: &str =
    "xsave-case 1\nmodel zen5\n[gprs]\nrax = 5\n[code]\n31 c0\n[expect]\nfault = none\nrax = 0\n";
const MISMATCH: &str = "xsave-case 1\nmodel zen5\n[code]\n31 c0\n[expect]\nfault = none\nrax = 1\n";
// VZEROALL is not modelled: the file is not checked, whatever it expects.
const NOT_CHECKED: &str = "xsave-case 1\nmodel zen5\n[code]\nc5 fc 77\n[expect]\nfault = none\n";
const ERROR: &str = "xsave-case 1\nmodel zen5\n[code]\nzz\n";

#[test]
fn four_outcomes_four_exit_statuses() {
    let d = dir("four");
    let p = write(&d, "pass.case", PASS);
    let m = write(&d, "mismatch.case", MISMATCH);
    let n = write(&d, "not-checked.case", NOT_CHECKED);
    let e = write(&d, "error.case", ERROR);
    let (code, out) = repro(&[&p]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 files: 1 pass, 0 mismatch, 0 not checked, 0 error"),
        "{out}"
    );
    let (code, out) = repro(&[&n]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("NOT CHECKED"), "{out}");
    assert!(
        out.contains("instruction `vzeroall` is not modelled"),
        "{out}"
    );
    let (code, _) = repro(&[&p, &n, &m]);
    assert_eq!(code, 1);
    let (code, out) = repro(&[&p, &n, &m, &e]);
    assert_eq!(code, 2);
    assert!(
        out.contains("4 files: 1 pass, 1 mismatch, 1 not checked, 1 error"),
        "{out}"
    );
}

#[test]
fn a_backend_refusing_every_case_is_not_a_pass() {
    // The case is built for zen5 (XCR0 = E7H); the qemu-max-7.2 model refuses it by its control state.
    let d = dir("refuse");
    let f = write(
        &d,
        "xss.case",
        "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\nxss = 0x1800\n[code]\n90\n[expect]\nfault = none\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
        .args(["repro", "--backends", "emu:qemu-max-7.2", &f])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("XCR0 0xe7 is not a valid XCR0 for model qemu-max-7.2"),
        "{out}"
    );
}

#[test]
fn the_readme_walkthrough_case_passes_on_emu() {
    // README "Reproduce a bug report": the case written there, as written.
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let sec = &readme[readme.find("## Reproduce a bug report").unwrap()..];
    let start = sec.find("   ```\n").unwrap() + 7;
    let end = start + sec[start..].find("   ```\n").unwrap();
    let text: String = sec[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("   ").unwrap_or(l)))
        .collect();
    let d = dir("readme");
    let f = write(&d, "bug.case", &text);
    let (code, out) = repro(&[&f]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 files: 1 pass, 0 mismatch, 0 not checked, 0 error"),
        "{out}"
    );
    // The typo the README shows is an error naming line 32.
    let t = write(
        &d,
        "typo.case",
        &text.replace("pl0_ssp = 0x0", "pl0ssp = 0x0"),
    );
    let (code, out) = repro(&[&t]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("typo.case:32: unknown field `pl0ssp` (did you mean `pl0_ssp`"),
        "{out}"
    );
}
