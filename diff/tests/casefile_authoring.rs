//! What a kernel developer writes from a bug report: assembly in [code],
//! fills, supervisor state by name, and errors that say what is needed.
use xsave_diff::casefile::{write_case, CaseFile};
use xsave_emu::CpuModel;

fn parse(text: &str) -> Result<CaseFile, String> {
    CaseFile::parse(text, "bug.case").map_err(|e| e.to_string())
}

fn build_err(text: &str) -> String {
    let m = CpuModel::builtin("zen5").unwrap();
    parse(text).unwrap().build(&m).unwrap_err().to_string()
}

#[test]
fn assembly_lines_assemble_and_errors_name_file_and_line() {
    let cf = parse(
        "xsave-case 1\nmodel zen5\n[code]\nmov eax, 0x18e7\n48 0f ae 27\nxsaves64 [rbx+0x40]\n",
    )
    .unwrap();
    let code: Vec<&[u8]> = cf.code.iter().map(|c| c.1.as_slice()).collect();
    assert_eq!(
        code,
        [
            &[0xb8, 0xe7, 0x18, 0, 0][..],
            &[0x48, 0x0f, 0xae, 0x27],
            &[0x48, 0x0f, 0xc7, 0x6b, 0x40]
        ]
    );
    let e = parse("xsave-case 1\nmodel zen5\n[code]\nnop\nxsaves64 rbx\n").unwrap_err();
    assert!(e.starts_with("bug.case:5: "), "{e}");
    assert!(e.contains("expected one of XSAVES64 mem"), "{e}");
}

#[test]
fn cet_fields_in_init_need_a_compacted_image() {
    let e = build_err(
        "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\nxss = 0x1800\n[init]\npl1_ssp = 0x1000\n",
    );
    assert!(
        e.contains("bug.case:7: CET_S fields need a compacted image: xcomp_bv with bits 63 and 12"),
        "{e}"
    );
}

#[test]
fn unknown_fields_suggest_the_nearest_names() {
    let e = build_err("xsave-case 1\nmodel zen5\n[init]\nmxscr = 0x1f80\n");
    assert!(
        e.contains("unknown field `mxscr` (did you mean `mxcsr`"),
        "{e}"
    );
    assert!(e.contains("xsdiff fields --cpu zen5"), "{e}");
}

#[test]
fn supervisor_state_by_name_against_the_starting_state() {
    // A guest fpstate (XCOMP_BV = 80000000_000018E7H) holding PL0_SSP: XRSTORS at
    // CPL 0 loads it (XSTATE_BV[12] = 1), so the starting state is the baseline
    // and an [expect] without pl0_ssp expects it unchanged (SDM1 §13.12).
    let m = CpuModel::builtin("zen5").unwrap();
    let text = "xsave-case 1\nmodel zen5\n[control]\ncpl = 0\nxss = 0x1800\n[init]\nxstate_bv = 0x1000\nxcomp_bv = 0x80000000000018e7\npl0_ssp = 0xffff888000001000\n[code]\nnop\n[expect]\nfault = none\npl1_ssp = 0x0\n";
    let cf = parse(text).unwrap();
    let case = cf.build(&m).unwrap();
    let exp = cf.expected(cf.expect.as_ref().unwrap(), &m, &case).unwrap();
    // CET_U's 16 bytes, then PL0_SSP at 16.
    assert_eq!(
        &exp.outcome.supervisor[16..24],
        &0xffff_8880_0000_1000u64.to_le_bytes()
    );
    let o = xsave_emu::predict(&m, &case).unwrap();
    assert_eq!(exp.against(&o), o);
    // pl0_ssp in [expect] without CET_S in IA32_XSS says what is needed.
    let bad = text.replace("xss = 0x1800\n", "xss = 0x0\n").replace(
        "[init]\nxstate_bv = 0x1000\nxcomp_bv = 0x80000000000018e7\npl0_ssp = 0xffff888000001000\n",
        "",
    );
    let cf = parse(&bad).unwrap();
    let case = cf.build(&m).unwrap();
    let e = match cf.expected(cf.expect.as_ref().unwrap(), &m, &case) {
        Ok(_) => panic!("pl1_ssp accepted without CET_S in IA32_XSS"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("`pl1_ssp` is CET_S state (component 12): the case's IA32_XSS needs bit 12"),
        "{e}"
    );
}

#[test]
fn fills_read_and_written() {
    let m = CpuModel::builtin("zen5").unwrap();
    let cf = parse(
        "xsave-case 1\nmodel zen5\n[arena]\npages = 2\n0x10 = 01\nfill = aa\n0x100..0x800 = 55*\n",
    )
    .unwrap();
    let case = cf.build(&m).unwrap();
    let b = &case.memory.bytes;
    assert_eq!(
        (b[0], b[0x10], b[0x100], b[0x7ff], b[0x800]),
        (0xaa, 0x01, 0x55, 0x55, 0xaa)
    );
    let text = write_case(&[], "zen5", &m, &case);
    assert!(
        text.contains("fill = aa\n0x10 = 01\n0x100..0x800 = 55*\n"),
        "{text}"
    );
    assert!(text.len() < 200, "{text}");
    let back = parse(&text).unwrap().build(&m).unwrap();
    assert_eq!(back, case);
    let e = parse("xsave-case 1\nmodel zen5\n[arena]\n0x100 = 55*\n")
        .unwrap()
        .build(&m)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("a fill `55*` needs a range START..END"),
        "{e}"
    );
}

#[test]
fn stating_a_saved_xstate_bv_turns_noise_off() {
    // zen5 has `xinuse-noise` (extra XSTATE_BV bits over init contents are noise):
    // a section stating the saved area's XSTATE_BV bytes (arena+200H..208H for
    // xsave64 [rdi] with RDI = arena) is checked without it; other bytes keep it.
    let m = CpuModel::builtin("zen5").unwrap();
    assert!(m.quirks.xinuse_noise);
    let with = |line: &str| {
        let text = format!(
            "xsave-case 1\nmodel zen5\n[gprs]\nrax = 3\nrdi = arena\n[code]\nxsave64 [rdi]\n[expect]\nfault = none\n{line}\n"
        );
        let cf = parse(&text).unwrap();
        let case = cf.build(&m).unwrap();
        cf.expected(cf.expect.as_ref().unwrap(), &m, &case)
            .unwrap()
            .explicit_noise_fields
    };
    assert!(with("mem[0x200..0x208] = 0000000000000000"));
    assert!(!with("mem[0x0..0x2] = 7f03"));
    assert!(with("mem[0x8..0x10] = 0000000000000000"), "FIP bytes 8..15");
}

#[test]
fn image_fills_written_where_shorter() {
    // zen5 standard format for XCR0 = E7H: AVX at 576 .. Hi16_ZMM ending at
    // 2432. An initial image with all of 576..2432 = 55H is one fill line, not
    // 112 register lines; XSTATE_BV stays a named line (the reader takes the
    // image's format from the header).
    let m = CpuModel::builtin("zen5").unwrap();
    let cf = parse("xsave-case 1\nmodel zen5\n[init]\nxstate_bv = 0xe7\ninit[576..2432] = 55*\nxmm3 = 00112233445566778899aabbccddeeff\n[code]\nnop\n").unwrap();
    let case = cf.build(&m).unwrap();
    assert!(case.init[576..2432].iter().all(|&b| b == 0x55));
    let text = write_case(&[], "zen5", &m, &case);
    assert!(
        text.contains("[init]\nxmm3 = 00112233445566778899aabbccddeeff\nxstate_bv = 0xe7\ninit[576..2432] = 55*\n"),
        "{text}"
    );
    assert_eq!(parse(&text).unwrap().build(&m).unwrap(), case);
    // A final image differing from the baseline by a long run: one `final[..]` fill.
    let mut o = xsave_emu::predict(&m, &case).unwrap();
    o.final_image[576..1408].fill(0xaa);
    let sec = xsave_diff::casefile::write_outcome("expect", &m, &case, &o);
    assert!(sec.contains("\nfinal[576..1408] = aa*\n"), "{sec}");
    let back = parse(&format!("{text}{sec}")).unwrap();
    let exp = back
        .expected(back.expect.as_ref().unwrap(), &m, &case)
        .unwrap();
    assert_eq!(exp.outcome.final_image, o.final_image);
    // A 16-byte run inside one register stays that register's line.
    let cf = parse("xsave-case 1\nmodel zen5\n[init]\nxmm3 = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n")
        .unwrap();
    let text = write_case(&[], "zen5", &m, &cf.build(&m).unwrap());
    assert!(
        text.contains("xmm3 = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"),
        "{text}"
    );
}
