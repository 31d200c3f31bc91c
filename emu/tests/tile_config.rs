//! VZEROALL and the AMX LDTILECFG, STTILECFG, TILERELEASE: state and XINUSE
//! effects as the Intel Xeon with AMX host shows them (corpus/silicon/amx-*.case,
//! xinuse-vzeroall-*.case), and their exceptions (SDM2 each instruction's
//! Operation and exception class).
use xsave_emu::case::ARENA_BASE;
use xsave_emu::tile_config::{ldtilecfg_accepts, sttilecfg_image};
use xsave_emu::{predict, Case, Control, CpuModel, Fault};

const LDTILECFG_RDI: [u8; 5] = [0xc4, 0xe2, 0x78, 0x49, 0x07];
const STTILECFG_RSI: [u8; 5] = [0xc4, 0xe2, 0x79, 0x49, 0x06];
const TILERELEASE: [u8; 5] = [0xc4, 0xe2, 0x78, 0x49, 0xc0];
const VZEROALL: [u8; 3] = [0xc5, 0xfc, 0x77];
const XGETBV1: [u8; 8] = [0xb9, 0x01, 0, 0, 0, 0x0f, 0x01, 0xd0];

fn case(model: &str, code: &[&[u8]]) -> (CpuModel, Case) {
    let m = CpuModel::builtin(model).unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = code.concat();
    c.gprs[7] = ARENA_BASE;
    c.gprs[6] = ARENA_BASE + 0x100;
    (m, c)
}

/// Palette 1, tile 0 of 16 rows of 64 bytes.
fn config() -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0] = 1;
    b[16] = 64;
    b[48] = 16;
    b
}

#[test]
fn ldtilecfg_gp_classes() {
    // SDM2 LDTILECFG Operation, palette 1 (max_names 8, bytes_per_row 64,
    // max_rows 16); each class #GP(0) on the Intel host
    // (corpus/silicon/amx-ldtilecfg-gp-*.case).
    let bad: [(usize, u8); 9] = [
        (0, 2),   // palette_id > max_palette
        (2, 1),   // reserved byte 2
        (32, 1),  // colsb of tile 8 (reserved)
        (56, 1),  // rows of tile 8 (reserved)
        (16, 65), // colsb 65 > bytes_per_row
        (17, 1),  // colsb 0x140
        (48, 17), // rows 17 > max_rows
        (48, 0),  // colsb without rows
        (16, 0),  // rows without colsb
    ];
    assert!(ldtilecfg_accepts(&config()));
    for (at, v) in bad {
        let mut b = config();
        b[at] = v;
        assert!(!ldtilecfg_accepts(&b), "byte {at} = {v}");
    }
    // Palette 0 ignores the other 63 bytes (checked only for palette_id ≠ 0).
    let mut b = config();
    b[0] = 0;
    b[2] = 0xff;
    assert!(ldtilecfg_accepts(&b));
    // start_row 0xff and colsb 3 are accepted.
    let mut b = config();
    b[1] = 0xff;
    b[16] = 3;
    assert!(ldtilecfg_accepts(&b));
}

#[test]
fn ldtilecfg_then_sttilecfg_and_xgetbv1() {
    let (m, mut c) = case("xeon-amx-vm", &[&LDTILECFG_RDI, &STTILECFG_RSI, &XGETBV1]);
    let mut cfg = config();
    cfg[1] = 0xff;
    c.memory.bytes[..64].copy_from_slice(&cfg);
    c.memory.bytes[0x100..0x140].fill(0xff);
    let o = predict(&m, &c).unwrap();
    assert_eq!(o.fault, None);
    // TILECFG in use, TILEDATA zeroed (init): XGETBV(1) = 20000H with XFD[18]
    // armed and no #NM (SDM1 §13.14: LDTILECFG does not cause #NM).
    assert_eq!(o.gprs[0], 0x20000);
    // STTILECFG stores the configuration, start_row included.
    assert_eq!(&o.memory[0x100..0x140], &cfg[..]);
    // Invalid: #GP(0) at LDTILECFG.
    c.memory.bytes[2] = 1;
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert_eq!((f.fault, f.insn), (Fault::Gp(0), Some(0)));
    // Palette 0 with junk: init, STTILECFG stores 64 zero bytes.
    c.memory.bytes[0] = 0;
    let o = predict(&m, &c).unwrap();
    assert_eq!((o.fault, o.gprs[0]), (None, 0));
    assert_eq!(&o.memory[0x100..0x140], &[0u8; 64][..]);
}

#[test]
fn no_alignment_check() {
    // Intel host, CR0.AM = EFLAGS.AC = 1: LDTILECFG from +101H loads, the MOV
    // from +201H after it is #AC(0) (corpus/silicon/amx-*-misaligned-no-ac.case).
    let mov_rax_rsi = [0x48, 0x8b, 0x06];
    let (m, mut c) = case("xeon-amx-vm", &[&LDTILECFG_RDI, &XGETBV1, &mov_rax_rsi]);
    c.control.cr0_am = true;
    c.control.eflags_ac = true;
    c.gprs[7] = ARENA_BASE + 0x101;
    c.gprs[6] = ARENA_BASE + 0x201;
    c.memory.bytes[0x101..0x141].copy_from_slice(&config());
    let o = predict(&m, &c).unwrap();
    let f = o.fault.unwrap();
    assert_eq!((f.fault, f.insn), (Fault::Ac, Some(3)));
    assert_eq!(o.gprs[0], 0x20000);
}

#[test]
fn tilerelease_puts_tilecfg_in_init() {
    let (m, mut c) = case("xeon-amx-vm", &[&TILERELEASE, &XGETBV1]);
    let cfg = config();
    let off = 2752; // TILECFG's standard offset on xeon-amx-vm
    c.init[off..off + 64].copy_from_slice(&cfg);
    c.set_init_xstate_bv(1 << 17);
    // Without it TILECFG reads in use (XGETBV(1) bit 17).
    let (_, mut d) = case("xeon-amx-vm", &[&XGETBV1]);
    d.init = c.init.clone();
    assert_eq!(predict(&m, &d).unwrap().gprs[0], 0x20000);
    let o = predict(&m, &c).unwrap();
    assert_eq!((o.fault, o.gprs[0]), (None, 0));
    assert_eq!(&o.final_image[off..off + 64], &[0u8; 64][..]);
    assert_eq!(sttilecfg_image(&[0u8; 64]), [0u8; 64]);
    assert_eq!(sttilecfg_image(&cfg), cfg);
}

#[test]
fn amx_without_amx_in_xcr0_is_ud_and_cr0_ts_declined() {
    for code in [&LDTILECFG_RDI[..], &STTILECFG_RSI, &TILERELEASE] {
        // zen5: XCR0[18:17] = 00b.
        let (m, c) = case("zen5", &[code]);
        let f = predict(&m, &c).unwrap().fault.unwrap();
        assert_eq!((f.fault, f.insn), (Fault::Ud, Some(0)));
        let (m, mut c) = case("xeon-amx-vm", &[code]);
        c.control.cr0_ts = true;
        assert!(predict(&m, &c).unwrap_err().0.contains("CR0.TS"));
    }
}

#[test]
fn vzeroall_xinuse() {
    // Intel host: with SSE, AVX, opmask, ZMM_Hi256 and Hi16_ZMM in use, VZEROALL
    // leaves XGETBV(1) = A0H: opmask and Hi16_ZMM (ZMM16..31 are not zeroed in
    // 64-bit mode, SDM2 VZEROALL) (corpus/silicon/xinuse-vzeroall-*.case).
    let (m, mut c) = case("xeon-amx-vm", &[&VZEROALL, &XGETBV1]);
    c.init[160 + 48] = 1; // XMM3
    c.init[576 + 48] = 1; // YMM3_H
    c.init[1088 + 8] = 1; // K1
    c.init[1152 + 96] = 1; // ZMM3_H
    c.init[1664 + 64] = 1; // ZMM17
    c.set_init_xstate_bv(0xe6);
    let o = predict(&m, &c).unwrap();
    assert_eq!((o.fault, o.gprs[0]), (None, 0xa0));
    assert_eq!(o.final_image[160 + 48], 0);
    assert_eq!(o.final_image[1664 + 64], 1);
    // MXCSR is kept: XGETBV(1) bit 1 reads 1 for MXCSR ≠ 1F80H (SDM1 §13.6).
    c.init[24..28].copy_from_slice(&0x1f00u32.to_le_bytes());
    assert_eq!(predict(&m, &c).unwrap().gprs[0], 0xa2);
    // Type 8 exceptions: #NM with CR0.TS = 1, #UD without AVX in XCR0 first.
    c.control.cr0_ts = true;
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert_eq!((f.fault, f.insn), (Fault::Nm, Some(0)));
    c.control.xcr0 = 3;
    c.init.truncate(576);
    c.set_init_xstate_bv(0);
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert_eq!((f.fault, f.insn), (Fault::Ud, Some(0)));
}

#[test]
fn vzeroall_on_zen5_follows_the_contents() {
    // xinuse-by-contents: the zeroed components read not in use (as on Intel);
    // not recorded on AMD.
    let (m, mut c) = case("zen5", &[&VZEROALL, &XGETBV1]);
    c.init[160] = 1;
    c.set_init_xstate_bv(0x6);
    let o = predict(&m, &c).unwrap();
    assert_eq!((o.fault, o.gprs[0]), (None, 0));
}

#[test]
fn an_operand_past_the_canonical_boundary_is_gp() {
    // Intel host (diff_native finding): STTILECFG at 7FFF_FFFF_FFFFH and
    // LDTILECFG at 7FFF_FFFF_FFC1H are #GP(0), not #PF; at 7FFF_FFFF_FFC0H #PF
    // (corpus/silicon/amx-*-crosses-canonical-boundary-gp.case).
    for (code, a) in [
        (&STTILECFG_RSI, 0x7fff_ffff_ffffu64),
        (&LDTILECFG_RDI, 0x7fff_ffff_ffc1),
    ] {
        let (m, mut c) = case("xeon-amx-vm", &[code]);
        c.gprs[6] = a;
        c.gprs[7] = a;
        let f = predict(&m, &c).unwrap().fault.unwrap();
        assert_eq!((f.fault, f.insn), (Fault::Gp(0), Some(0)), "{a:#x}");
        c.gprs[6] = 0x7fff_ffff_ffc0;
        c.gprs[7] = 0x7fff_ffff_ffc0;
        let f = predict(&m, &c).unwrap().fault.unwrap();
        assert!(matches!(f.fault, Fault::Pf { .. }), "{:?}", f.fault);
    }
    // Wrapping past FFFF_FFFF_FFFF_FFFFH to 0 stays canonical: #PF
    // (corpus/silicon/amx-ldtilecfg-wraps-to-0-pf.case).
    let (m, mut c) = case("xeon-amx-vm", &[&LDTILECFG_RDI]);
    c.gprs[7] = u64::MAX;
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert!(
        matches!(f.fault, Fault::Pf { addr: u64::MAX, .. }),
        "{:?}",
        f.fault
    );
}
