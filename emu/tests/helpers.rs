//! The helper instructions a bug report's prelude uses: register-only GPR
//! arithmetic, LEA, the x87 control instructions, FWAIT (SDM2, each
//! instruction's Operation and exception table).
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{predict, Case, Control, CpuModel, Fault};

fn case(model: &str, code: &[u8], gprs: &[(usize, u64)]) -> (CpuModel, Case) {
    let m = CpuModel::builtin(model).unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = code.to_vec();
    for &(r, v) in gprs {
        c.gprs[r] = v;
    }
    (m, c)
}

#[test]
fn gpr_arithmetic_and_32_bit_zero_extension() {
    // xor eax, eax; add rax, 7; mov ecx, 0xffffffff; sub rcx, 1; and rdx, rcx; or rbx, 0x10
    let code = [
        0x31, 0xc0, 0x48, 0x83, 0xc0, 0x07, 0xb9, 0xff, 0xff, 0xff, 0xff, 0x48, 0x83, 0xe9, 0x01,
        0x48, 0x21, 0xca, 0x48, 0x83, 0xcb, 0x10,
    ];
    let (m, c) = case(
        "zen5",
        &code,
        &[(0, u64::MAX), (2, 0x1234_5678_9abc_def0), (3, 1)],
    );
    let o = predict(&m, &c).unwrap();
    assert_eq!(o.fault, None);
    // SDM1 §3.4.1.1: a 32-bit destination is zero-extended (xor eax, eax clears RAX).
    assert_eq!(o.gprs[0], 7);
    assert_eq!(o.gprs[1], 0xffff_fffe);
    assert_eq!(o.gprs[2], 0x9abc_def0 & 0xffff_fffe);
    assert_eq!(o.gprs[3], 0x11);
}

#[test]
fn lea_computes_without_access() {
    // lea rbx, [rdi+rsi*4+0x40]; lea ecx, [rdi-1]: no memory access, no canonical check.
    let code = [0x48, 0x8d, 0x5c, 0xb7, 0x40, 0x8d, 0x4f, 0xff];
    let (m, c) = case("zen5", &code, &[(7, 0x8000_0000_0000_0000), (6, 2)]);
    let o = predict(&m, &c).unwrap();
    assert_eq!(o.fault, None);
    assert_eq!(o.gprs[3], 0x8000_0000_0000_0048);
    assert_eq!(o.gprs[1], 0xffff_ffff);
}

#[test]
fn fldcw_fnstcw_fnstsw() {
    // fldcw [rdi]; fnstcw [rdi+2]; fnstsw ax: FCW 037FH -> 027FH, FSW 0.
    let code = [0xd9, 0x2f, 0xd9, 0x7f, 0x02, 0xdf, 0xe0];
    let (m, mut c) = case("xeon-amx-vm", &code, &[(7, ARENA_BASE), (0, u64::MAX)]);
    c.memory.bytes[0..2].copy_from_slice(&0x27fu16.to_le_bytes());
    let o = predict(&m, &c).unwrap();
    assert_eq!(o.fault, None);
    assert_eq!(&o.final_image[0..2], &0x27fu16.to_le_bytes());
    assert_eq!(&o.memory[2..4], &0x27fu16.to_le_bytes());
    // FNSTSW AX writes AX only.
    assert_eq!(o.gprs[0], 0xffff_ffff_ffff_0000);
    // FLDCW writes x87 state: XINUSE[0] (SDM1 §13.6), XSTATE_BV[0] in the capture.
    assert_eq!(o.final_image[512] & 1, 1);
    // The control instructions leave FOP, FIP and FDP alone (SDM1 §8.1.8).
    assert!(o.final_image[6..24].iter().all(|&b| b == 0));
}

#[test]
fn x87_control_with_cr0_ts_is_nm() {
    let (m, mut c) = case("zen5", &[0xd9, 0x7f, 0x02], &[(7, ARENA_BASE)]);
    c.control.cr0_ts = true;
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert_eq!((f.fault, f.insn), (Fault::Nm, Some(0)));
}

#[test]
fn fwait_runs_without_a_pending_exception_and_declines_one() {
    let (m, c) = case("zen5", &[0x9b], &[]);
    assert_eq!(predict(&m, &c).unwrap().fault, None);
    // FSW.ES = 1 (bit 7) in the initial image: #MF is not modelled, and says so.
    let (m, mut c) = case("zen5", &[0x9b], &[]);
    c.init[0] = 0x7e; // FCW 037EH: IE unmasked, so ES stays 1 whatever the model recomputes
    c.init[2] = 0x81;
    c.init[512] = 1;
    let e = predict(&m, &c).unwrap_err();
    assert!(e.0.contains("fwait") && e.0.contains("FSW.ES"), "{}", e.0);
}

#[test]
fn fwait_puts_x87_in_use_on_intel_and_follows_contents_on_amd() {
    // Intel Xeon with AMX host: FWAIT from the init state reads XGETBV(1) bit 0 = 1
    // (corpus/silicon/fwait-puts-x87-in-use.case); XINUSE[i] = 1 over init contents
    // is allowed (SDM1 §13.6). zen5's xinuse-by-contents keeps it 0 (x87 is init).
    let (m, c) = case("xeon-amx-vm", &[0x9b], &[]);
    assert_eq!(predict(&m, &c).unwrap().xinuse.map(|x| x & 1), Some(1));
    let (m, c) = case("zen5", &[0x9b], &[]);
    assert_eq!(predict(&m, &c).unwrap().xinuse.map(|x| x & 1), Some(0));
    // FNSTSW AX, the no-wait form, leaves it 0 on both.
    for model in ["xeon-amx-vm", "zen5"] {
        let (m, c) = case(model, &[0xdf, 0xe0], &[]);
        assert_eq!(
            predict(&m, &c).unwrap().xinuse.map(|x| x & 1),
            Some(0),
            "{model}"
        );
    }
}

#[test]
fn unmodelled_instructions_are_declined_by_name() {
    // vxorps xmm0, xmm0, xmm0 (VZEROALL and the AMX configuration instructions
    // are modelled: tests/tile_config.rs)
    let (m, c) = case("zen5", &[0xc5, 0xf8, 0x57, 0xc0], &[]);
    let e = predict(&m, &c).unwrap_err();
    assert!(e.0.contains("vxorps"), "{}", e.0);
}

/// The #PF of `code` predicted on xeon-amx-vm with `gprs`.
fn pf_of(code: &[u8], gprs: &[(usize, u64)]) -> (u32, u64) {
    let (m, c) = case("xeon-amx-vm", code, gprs);
    match predict(&m, &c).expect("modelled").fault.map(|f| f.fault) {
        Some(Fault::Pf { err, addr }) => (err, addr),
        f => panic!("{f:?}"),
    }
}

#[test]
fn a_32_bit_address_wraps_at_4_gib() {
    // SDM1 §3.3.7: with a 67H prefix each byte's address is computed in 32 bits.
    // Intel host (corpus/silicon/*-a32-*-wraps-at-4gib-pf.case), every byte on an
    // absent page: xsavec [esp-80h], ESP = 0, reports cr2 = 1BFH (the 576-byte
    // area's last byte, wrapped), xsave [esp-80h] with RFBM = 7 2BFH, fxsave
    // [eax-10h] 1EFH, xrstor [esp-80h] 188H (its XCOMP_BV byte, read),
    // ldmxcsr [eax-2] FFFF_FFFEH (its first byte, below 4 GiB).
    assert_eq!(
        pf_of(&[0x67, 0x0f, 0xc7, 0x64, 0x24, 0x80], &[(0, 3)]),
        (6, 0x1BF)
    );
    assert_eq!(
        pf_of(&[0x67, 0x0f, 0xae, 0x64, 0x24, 0x80], &[(0, 7)]),
        (6, 0x2BF)
    );
    assert_eq!(pf_of(&[0x67, 0x0f, 0xae, 0x40, 0xf0], &[]), (6, 0x1EF));
    assert_eq!(
        pf_of(&[0x67, 0x0f, 0xae, 0x6c, 0x24, 0x80], &[(0, 3)]),
        (4, 0x188)
    );
    assert_eq!(
        pf_of(&[0x67, 0x0f, 0xae, 0x50, 0xfe], &[]),
        (4, 0xFFFF_FFFE)
    );
    // Far from 4 GiB nothing wraps: xsavec [esp] at the arena's low 32 bits.
    let (_, addr) = pf_of(&[0x67, 0x0f, 0xc7, 0x24, 0x24], &[(4, 0x1000), (0, 3)]);
    assert!((0x1000..0x1000 + 576).contains(&addr), "{addr:#x}");
}

#[test]
fn a_32_bit_address_that_may_wrap_onto_the_arena_is_declined() {
    // With the arena below 4 GiB + 64 KiB the wrapped bytes may land on present
    // pages, which the model's flat ranges do not follow: declined.
    let (m, mut c) = case(
        "xeon-amx-vm",
        &[0x67, 0x0f, 0xc7, 0x64, 0x24, 0x80],
        &[(0, 3)],
    );
    c.memory.base = 0x1000;
    let e = predict(&m, &c).unwrap_err();
    assert!(e.0.contains("4 GiB"), "{}", e.0);
}

#[test]
fn the_envelope_follows_a_wrapped_32_bit_area() {
    // SDM1 §13.13: a save may fault on any byte of its area, here FFFF_FF80H..
    // 1_0000_01BFH seen as the CPU computes it (wrapped at 4 GiB): a #PF at the
    // area's first byte or at its wrapped last byte is inside the envelope, one
    // at 1C0H (past the area) breaks mem.pf-within-region.
    let (m, c) = case(
        "xeon-amx-vm",
        &[0x67, 0x0f, 0xc7, 0x64, 0x24, 0x80],
        &[(0, 3)],
    );
    let p = predict(&m, &c).unwrap();
    let at = |addr: u64| {
        let mut o = p.clone();
        o.fault.as_mut().unwrap().fault = Fault::Pf { err: 6, addr };
        xsave_emu::check(&m, &c, &o).unwrap()
    };
    assert!(at(0x1BF).inside());
    assert!(at(0xFFFF_FF80).inside());
    assert!(at(0x100).inside());
    assert_eq!(at(0x1C0).rule_ids(), ["mem.pf-within-region"]);
}
