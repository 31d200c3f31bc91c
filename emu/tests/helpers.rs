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

#[test]
fn a_32_bit_address_that_may_wrap_at_4_gib_is_declined() {
    // xsavec [esp-80h] with ESP = 0: the area starts at FFFF_FF80H and its bytes
    // wrap at 4 GiB (Intel host: #PF at cr2 = 1BFH, the last byte of the 576-byte
    // area); the model's flat ranges would say 1_0000_01BFH, so it declines.
    let (m, c) = case(
        "xeon-amx-vm",
        &[0x67, 0x0f, 0xc7, 0x64, 0x24, 0x80],
        &[(0, 3)],
    );
    let e = predict(&m, &c).unwrap_err();
    assert!(e.0.contains("4 GiB"), "{}", e.0);
    // ldmxcsr [eax+0FFFFFFFEh]: 4 bytes from FFFF_FFFEH wrap; at FFFF_FFFCH they do not.
    let (m, c) = case("xeon-amx-vm", &[0x67, 0x0f, 0xae, 0x50, 0xfe], &[]);
    assert!(predict(&m, &c).unwrap_err().0.contains("4 GiB"));
    let (m, c) = case("xeon-amx-vm", &[0x67, 0x0f, 0xae, 0x50, 0xfc], &[]);
    let f = predict(&m, &c).unwrap().fault.unwrap();
    assert!(
        matches!(
            f.fault,
            Fault::Pf {
                addr: 0xFFFF_FFFC,
                ..
            }
        ),
        "{f:?}"
    );
    // Far from 4 GiB a 32-bit address is modelled: xsavec [esp] at the arena's
    // low 32 bits is a #PF at that address's last byte or first, never declined.
    let (m, c) = case(
        "xeon-amx-vm",
        &[0x67, 0x0f, 0xc7, 0x24, 0x24],
        &[(4, 0x1000), (0, 3)],
    );
    assert!(predict(&m, &c).is_ok());
}
