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
// VXORPS is not modelled: the file is not checked, whatever it expects.
const NOT_CHECKED: &str = "xsave-case 1\nmodel zen5\n[code]\nc5 f8 57 c0\n[expect]\nfault = none\n";
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
        out.contains("instruction `vxorps xmm0,xmm0,xmm0` is not modelled"),
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
    // The reason names what the backend's CPU enumerates (CPUID.(0DH,0) and
    // (0DH,1) of qemu-max-7.2: XCR0 support 21FH, no IA32_XSS components).
    assert!(
        out.contains("the case's XCR0 is 0xe7, emu:qemu-max-7.2 enumerates XCR0 support 0x21f (CPUID.(0DH,0):EDX:EAX), without OPMASK|ZMM_Hi256|Hi16_ZMM; the case's IA32_XSS is 0x1800, emu:qemu-max-7.2 supports 0x0, without CET_U|CET_S"),
        "{out}"
    );
}

/// The README's "Reproduce a bug report" section.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let a = readme.find("## Reproduce a bug report").unwrap();
    let b = a + readme[a..].find("\n## ").unwrap();
    readme[a..b].to_string()
}

/// The `$ COMMAND` blocks of a README section with the output each shows.
fn commands(sec: &str) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = Vec::new();
    let mut open = false;
    for l in sec.lines() {
        if let Some(c) = l.strip_prefix("       $ ") {
            v.push((c.to_string(), Vec::new()));
            open = true;
        } else if open && l.starts_with("       ") {
            v.last_mut().unwrap().1.push(l[7..].to_string());
        } else {
            open = false;
        }
    }
    v
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    // README "Reproduce a bug report": the case written there, as written, and
    // every command it shows, with the output it shows (Bochs where installed;
    // the ring-3 runner's line only on the Zen 5 host it was written on).
    let sec = walkthrough();
    let start = sec.find("   ```\n").unwrap() + 7;
    let end = start + sec[start..].find("   ```\n").unwrap();
    let text: String = sec[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("   ").unwrap_or(l)))
        .collect();
    let d = dir("readme");
    write(&d, "bug.case", &text);
    let cmds = commands(&sec);
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    let bin = env!("CARGO_BIN_EXE_xsdiff");
    let mut ran = 0;
    for (cmd, want) in &cmds {
        if cmd.contains("--backends bochs ") && !std::path::Path::new("/usr/bin/bochs").exists() {
            println!("skipped (no Debian bochs): {cmd}");
            continue;
        }
        if cmd.contains("bochs:head") && !std::path::Path::new("/opt/bochs-head/bin/bochs").exists()
        {
            println!("skipped (no /opt/bochs-head): {cmd}");
            continue;
        }
        let o = Command::new("sh")
            .arg("-c")
            .arg(cmd.replace("target/release/xsdiff", bin))
            .current_dir(&d)
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&o.stdout);
        let keep =
            |l: &&str| !l.starts_with("  run on native: ") && !l.starts_with("native did not run");
        let got: Vec<&str> = got.lines().filter(keep).collect();
        let want: Vec<&str> = want.iter().map(String::as_str).filter(keep).collect();
        assert_eq!(got, want, "`{cmd}`");
        ran += 1;
    }
    assert!(ran >= 2, "{ran}");
    // The typo the README shows is an error naming line 32, as printed there.
    let typo = sec
        .lines()
        .find(|l| l.trim_start().starts_with("ERROR bug.case:32:"))
        .unwrap()
        .trim_start();
    let t = write(
        &d,
        "typo.case",
        &text.replace("pl0_ssp = 0x0", "pl0ssp = 0x0"),
    );
    let (code, out) = repro(&[&t]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        out.lines().next(),
        Some(typo.replace("bug.case", &t).as_str())
    );
}

#[test]
fn an_expectation_no_capture_can_hold_is_not_checked() {
    // A ring-3 capture is XSAVE with RFBM = XCR0 (E7H on zen5): XSTATE_BV[12]
    // (CET_S, a supervisor component) is never written by it, so stating it is
    // "cannot be checked", never a pass or a failure for being absent.
    let d = dir("unobservable");
    let f = write(
        &d,
        "bv12.case",
        "xsave-case 1\nmodel zen5\n[code]\nnop\n[expect]\nfault = none\nxstate_bv = 0x1000\n",
    );
    let (code, out) = repro(&[&f]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("XSTATE_BV bit 12 (CET_S) (the final image is an XSAVE with RFBM = XCR0 = 0xe7) cannot be checked on emu:zen5"),
        "{out}"
    );
}

#[test]
fn show_names_cr4_osxsave_0() {
    let d = dir("show");
    let f = write(
        &d,
        "osxsave.case",
        "xsave-case 1\nmodel zen5\n[control]\ncr4.osxsave = 0\n[code]\nxgetbv\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
        .args(["show", &f])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("CPL 3, CR4.OSXSAVE = 0\n"), "{out}");
}

#[test]
fn a_faulting_ring3_case_needs_no_only_line() {
    // mov rax, [rdi] with page 1 absent is #PF (err = 4: user read, not present).
    // Linux delivers it as a signal whose sigreturn XRSTOR sets XINUSE[1:0]: on
    // xeon-amx-vm the capture then holds XSTATE_BV = 3 where the initial image had
    // 0. The default expectation leaves XSTATE_BV[1:0] to the backend; stating
    // `xstate_bv` checks it.
    let d = dir("signal");
    let text = "xsave-case 1\nmodel xeon-amx-vm\n[arena]\npages = 2\npage 1 = none\n[gprs]\nrdi = arena+0x1000\n[code]\nmov rax, [rdi]\n[expect]\nfault = #PF(err=0x4, cr2=arena+0x1000) at 0\n";
    let run = |f: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
            .args(["repro", "--backends", "emu:xeon-amx-vm", f])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = run(&write(&d, "pf.case", text));
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&write(
        &d,
        "pf-bv.case",
        &format!("{text}xstate_bv = 0x0\n"),
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("XSTATE_BV bit 0 (x87): expected 0, got 1"),
        "{out}"
    );
}

#[test]
fn a_changed_xcr0_sizes_the_final_image() {
    // XSETBV at CPL 0 from XCR0 = E7H to 3: the capture is an XSAVE of the new
    // XCR0's standard size, 576 bytes; the default expectation takes that size.
    let d = dir("xcr0");
    let f = write(
        &d,
        "xsetbv.case",
        "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\n[code]\nmov eax, 3\nxor edx, edx\nxor ecx, ecx\nxsetbv\n[expect]\nfault = none\nrax = 0x3\n",
    );
    let (code, out) = repro(&[&f]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_stated_layout_is_checked_against_the_backends_layout() {
    // zen5 (CPUID.(0DH,i) of the Zen 5 host, silicon.md): AVX at 576, 256 bytes
    // in the standard format; the standard size for XCR0 = E7H is 2432 (Hi16_ZMM
    // ends at 1408 + 1024). Compacted for XCOMP_BV = 80000000_000018E7H (SDM1
    // 13.4.3: each component after the previous, no 64-byte alignment on zen5):
    // CET_U at 2432 (16 bytes), CET_S at 2448 (24 bytes), size 2472.
    let d = dir("layout");
    let head = "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\n[init]\nxcomp_bv = 0x80000000000018e7\n[code]\nnop\n[expect]\nfault = none\n";
    let good = format!("{head}standard.avx = 576, 256\nstandard.size = 2432\ncompacted.cet_u = 2432, 16\ncompacted.cet_s = 2448, 24\ncompacted.size = 2472\ncompacted(0x8e7).size = 2448\ncompacted(0x10e7).12 = 2432, 24\n");
    let (code, out) = repro(&[&write(&d, "good.case", &good)]);
    assert_eq!(code, 0, "{out}");
    let bad = format!("{head}compacted.cet_s = 2440, 24\nstandard.cet_s = 0, 24\n");
    let (code, out) = repro(&[&write(&d, "bad.case", &bad)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "layout compacted 0x18e7 CET_S (offset, size): expected 2440, 24, got 2448, 24"
        ),
        "{out}"
    );
    // CET_S is a supervisor component: no place in the standard format.
    assert!(
        out.contains(
            "layout standard CET_S (offset, size): expected 0, 24, got none (not in this format)"
        ),
        "{out}"
    );
    // `only` without `layout` leaves the stated layout unchecked, on purpose.
    let narrowed = format!("{head}compacted.cet_s = 2440, 24\nonly = fault, gprs\n");
    let (code, out) = repro(&[&write(&d, "narrowed.case", &narrowed)]);
    assert_eq!(code, 0, "{out}");
    let typo = format!("{head}compacted.cets = 2448, 24\n");
    let (code, out) = repro(&[&write(&d, "typo.case", &typo)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("typo.case:11: unknown component `cets`"),
        "{out}"
    );
}

#[test]
fn supervisor_differences_are_named_by_field() {
    // XRSTORS64 of an image with XSTATE_BV[12] = 0 and RFBM[12] = 1 initializes
    // CET_S (SDM1 13.12): PL1_SSP, loaded 1000H by the initial restore, becomes 0.
    let d = dir("supnames");
    let f = write(
        &d,
        "pl1.case",
        "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\nxss = 0x1800\n[init]\nxcomp_bv = 0x80000000000018e7\nxstate_bv = 0x1000\npl1_ssp = 0x1000\n[arena]\n0x208 = e718000000000080\n[gprs]\nrdi = arena\n[code]\nmov eax, 0x1000\nxor edx, edx\nxrstors64 [rdi]\n[expect]\nfault = none\nrax = 0x1000\n",
    );
    let (code, out) = repro(&[&f]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("    PL1_SSP: expected 0x1000, got 0x0\n"),
        "{out}"
    );
}
