//! The format's field documentation (diff/CASE-FIELDS.md) is what
//! `xsdiff fields --cpu sapphire-rapids --markdown` prints, and every name
//! `xsdiff fields` lists is one the case-file reader accepts in its sections.
use std::path::Path;
use std::process::Command;

fn xsdiff(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn case_fields_md_is_the_command_output() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CASE-FIELDS.md"))
        .unwrap();
    let out = xsdiff(&["fields", "--cpu", "sapphire-rapids", "--markdown"]);
    assert!(
        doc == out,
        "diff/CASE-FIELDS.md is stale: regenerate it with `xsdiff fields --cpu sapphire-rapids --markdown > diff/CASE-FIELDS.md`"
    );
    // Both list the CET supervisor fields with their MSRs (SDM4 table 2-2).
    assert!(doc.contains("| `pl0_ssp` | IA32_PL0_SSP (MSR 6A4H); compacted image +"));
    let text = xsdiff(&["fields", "--cpu", "sapphire-rapids"]);
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let name = line[3..].split('`').next().unwrap();
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next()
                    == Some(name.split_whitespace().next().unwrap())),
            "{name}"
        );
    }
}

#[test]
fn every_listed_image_and_supervisor_field_is_read() {
    // Each named field of sapphire-rapids, written in [init] of a compacted image
    // holding every component and in [expect] of a CPL 0 case enabling every
    // supervisor component the model has (IA32_XSS = DD00H: PT, PASID, CET_U,
    // CET_S, UINTR, LBR).
    let m = xsave_emu::CpuModel::builtin("sapphire-rapids").unwrap();
    let all = m.xcr0_supported | m.xss_supported | 1 << 63;
    for r in xsave_diff::fields::rows(&m) {
        if !r.sections.starts_with("[init]") || r.name.contains('[') || r.name == "size" {
            continue;
        }
        let text = format!(
            "xsave-case 1\nmodel sapphire-rapids\n[control]\ncpl = 0\nxcr0 = {:#x}\nxss = {:#x}\n[init]\nxcomp_bv = {all:#x}\n{n} = 0x0\n[code]\nnop\n[expect]\n{n} = 0x0\n",
            m.xcr0_supported,
            m.xss_supported,
            n = r.name
        );
        let cf = xsave_diff::casefile::CaseFile::parse(&text, "t.case").unwrap();
        let case = cf.build(&m).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        cf.expected(cf.expect.as_ref().unwrap(), &m, &case)
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
    }
}
