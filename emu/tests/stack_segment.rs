//! Which segment a memory operand uses in 64-bit mode, seen through the fault a
//! non-canonical address raises: #SS(0) for SS, #GP(0) otherwise (SDM2, 64-bit
//! mode exceptions of every instruction here). The ES/CS/SS/DS overrides are
//! ignored in 64-bit mode (SDM1 §3.3.7.1): SS is used exactly when the base is
//! RSP or RBP. Intel host observations: corpus/silicon/non-canonical-*.case.
use xsave_emu::{predict, Case, Control, CpuModel, Fault};

const NON_CANONICAL: u64 = 0x3c00_0020_0000_0150;

fn fault(code: &[u8]) -> Option<Fault> {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.gprs = [NON_CANONICAL; 16];
    c.gprs[0] = 0xFFFF_FFFF;
    c.gprs[2] = 0xFFFF_FFFF;
    c.code = code.to_vec();
    predict(&m, &c).unwrap().fault.map(|f| f.fault)
}

#[test]
fn rbp_base_is_ss_even_with_a_ds_override() {
    assert_eq!(fault(&[0x0f, 0xae, 0x55, 0x00]), Some(Fault::Ss)); // ldmxcsr [rbp]
    assert_eq!(fault(&[0x3e, 0x0f, 0xae, 0x55, 0x00]), Some(Fault::Ss)); // ds: ldmxcsr [rbp]
    let ds_xsave64_rbp = [0x3e, 0x48, 0x0f, 0xae, 0x65, 0x00];
    assert_eq!(fault(&ds_xsave64_rbp), Some(Fault::Ss));
}

#[test]
fn rsp_base_is_ss() {
    assert_eq!(fault(&[0x0f, 0xae, 0x5c, 0x24, 0x08]), Some(Fault::Ss)); // stmxcsr [rsp+8]
    assert_eq!(fault(&[0x48, 0x8b, 0x04, 0x24]), Some(Fault::Ss)); // mov rax, [rsp]
}

#[test]
fn an_ss_override_on_another_base_is_ignored() {
    assert_eq!(fault(&[0x36, 0x0f, 0xae, 0x13]), Some(Fault::gp0())); // ss: ldmxcsr [rbx]
    assert_eq!(fault(&[0x36, 0x48, 0x0f, 0xae, 0x2b]), Some(Fault::gp0())); // ss: xrstor64 [rbx]
    assert_eq!(fault(&[0x36, 0x48, 0x8b, 0x03]), Some(Fault::gp0())); // ss: mov rax, [rbx]
}
