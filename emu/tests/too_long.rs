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
