//! SDM Vol.2 §2.3.11: an instruction longer than 15 bytes raises #GP(0)
//! (found by the diff_native fuzz target on the Intel host: fifteen REX
//! prefixes and no opcode; fuzz/artifacts-found/diff_native-insn-longer-than-15-bytes-gp.case).
use xsave_emu::{predict, Case, Control, CpuModel, Fault};

fn run(code: &[u8]) -> Option<(Fault, Option<usize>)> {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = code.to_vec();
    predict(&m, &c).unwrap().fault.map(|f| (f.fault, f.insn))
}

#[test]
fn fifteen_prefixes_without_an_opcode_is_gp0() {
    assert_eq!(run(&[0x45; 15]), Some((Fault::Gp(0), Some(0))));
}

#[test]
fn fifteen_prefixes_then_an_opcode_is_gp0() {
    let mut code = vec![0x66; 15];
    code.push(0x90);
    assert_eq!(run(&code), Some((Fault::Gp(0), Some(0))));
}

#[test]
fn a_fifteen_byte_instruction_is_legal() {
    let mut code = vec![0x66; 14];
    code.push(0x90);
    assert_eq!(run(&code), None);
}

/// diff_native fuzz finding on the Intel host (fuzz/artifacts-found/
/// diff_native-imul-18-bytes-gp.case): thirteen 66H prefixes, then IMUL r16,
/// r/m16, imm16 with a disp8 (69 66 xx ii ii): 18 bytes, #GP(0) on silicon; iced
/// calls it invalid, which had made the model predict #UD.
#[test]
fn thirteen_prefixes_and_a_five_byte_imul_is_gp0() {
    let mut code = vec![0x66; 13];
    code.extend_from_slice(&[0x69, 0x66, 0x66, 0x66, 0x66]);
    assert_eq!(run(&code), Some((Fault::Gp(0), Some(0))));
}

/// The same IMUL after ten prefixes is 15 bytes: legal, so no #GP; the model
/// does not run IMUL (not an XSAVE-family or helper instruction) and says so.
#[test]
fn ten_prefixes_and_a_five_byte_imul_is_not_too_long() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = vec![0x66; 10];
    c.code.extend_from_slice(&[0x69, 0x66, 0x66, 0x66, 0x66]);
    assert!(predict(&m, &c).is_err(), "a legal IMUL is not modelled");
}

/// A REX prefix counts as one of the bytes too (REX.W IMUL r64 takes imm32):
/// 10 x 66H, REX.W, 69 /r disp8 imm32 = 10 + 1 + 7 = 18 bytes.
#[test]
fn rex_w_imul_with_imm32_after_ten_prefixes_is_gp0() {
    let mut code = vec![0x66; 10];
    code.extend_from_slice(&[0x48, 0x69, 0x46, 0x10, 1, 2, 3, 4]);
    assert_eq!(run(&code), Some((Fault::Gp(0), Some(0))));
}

/// diff_native fuzz finding on the Intel host: twelve 66H prefixes, then 0F 78
/// with ModRM 73H and a disp8: 66H 0F 78 /6 is no instruction on Intel (EXTRQ is
/// AMD's /0 form), but the length decoder sizes it first: 12 + 4 = 16 bytes, so
/// #GP(0), not #UD (corpus/silicon/insn-16-bytes-undefined-opcode-gp.case).
#[test]
fn an_undefined_opcode_sized_past_15_bytes_is_gp0() {
    let mut code = vec![0x66; 12];
    code.extend_from_slice(&[0x0f, 0x78, 0x73, 0xec]);
    assert_eq!(run(&code), Some((Fault::Gp(0), Some(0))));
}

/// The same undefined form within 15 bytes is #UD (nothing to size past).
#[test]
fn an_undefined_opcode_within_15_bytes_is_ud() {
    let mut code = vec![0x66; 2];
    code.extend_from_slice(&[0x0f, 0x78, 0x73, 0xec]);
    assert_eq!(run(&code), Some((Fault::Ud, Some(0))));
}

/// An opcode neither iced-x86 nor the collapsed-prefix sizing can decode (0F 0A
/// is unassigned) after five prefixes: 5 + 2 bytes could, with a ModRM form, pass
/// 15, and only the hardware's length decoder knows, so the model declines it
/// instead of guessing #UD or #GP(0).
#[test]
fn an_unsizable_opcode_after_prefixes_is_declined() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = vec![0x66, 0x66, 0x66, 0x66, 0x66, 0x0f, 0x0a, 0x90];
    assert!(predict(&m, &c).is_err());
    c.code = vec![0x66, 0x66, 0x0f, 0x0a, 0x90];
    assert_eq!(
        predict(&m, &c).unwrap().fault.map(|f| (f.fault, f.insn)),
        Some((Fault::Ud, Some(0)))
    );
}

/// diff_native fuzz finding on the Intel host: 13 REX prefixes, then 0F 0F 0F
/// 1C: a 3DNow! instruction (ModRM, suffix byte) would be 17 bytes, but the
/// Intel host gives #UD: a CPU without 3DNow! sizes 0F 0F otherwise. The model
/// cannot tell the length such a CPU gives, so it declines the case.
#[test]
fn a_retired_amd_opcode_after_prefixes_is_declined() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = vec![0x4d; 13];
    c.code.extend_from_slice(&[0x0f, 0x0f, 0x0f, 0x1c, 0x90]);
    assert!(predict(&m, &c).is_err());
}

/// diff_native fuzz finding on the Intel host: 7 x 67H, then 8F 2A 08 12 C7
/// imm32: XOP map 0AH opcode 12H (AMD's LWPINS, CPUID feature LWP), 16 bytes
/// as XOP, is #UD there, not #GP(0)
/// (corpus/silicon/insn-xop-lwp-16-bytes-ud.case): declined, as 3DNow!.
#[test]
fn an_lwp_opcode_after_prefixes_is_declined() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = vec![0x67; 7];
    c.code
        .extend_from_slice(&[0x8f, 0x2a, 0x08, 0x12, 0xc7, 0x3a, 0xc7, 0xa7, 0x00, 0x00]);
    assert!(predict(&m, &c).is_err());
}
