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

/// An area whose canonical base runs past the canonical boundary: the access
/// that crosses it is #GP(0), not #PF; #SS(0) from an RBP base (Intel host:
/// corpus/silicon/xrstor-area-crosses-canonical-boundary-gp.case and
/// xrstor-rbp-area-crosses-canonical-boundary-ss.case; SDM2 XRSTOR 64-bit mode
/// exceptions).
#[test]
fn an_area_running_past_the_canonical_boundary_is_gp0_or_ss0() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    for (base_reg, want) in [(7usize, Fault::gp0()), (5, Fault::Ss)] {
        let mut c = Case::new(&m, Control::user(&m));
        c.gprs[0] = 0xFFFF_FFFF;
        c.gprs[2] = 0xFFFF_FFFF;
        c.gprs[base_reg] = 0x7FFF_FFFF_FF00;
        // xrstor [rdi] / xrstor [rbp+0]
        c.code = if base_reg == 7 {
            vec![0x0f, 0xae, 0x2f]
        } else {
            vec![0x0f, 0xae, 0x6d, 0x00]
        };
        let f = predict(&m, &c).unwrap().fault.map(|f| f.fault);
        assert_eq!(f, Some(want), "base register {base_reg}");
    }
}
