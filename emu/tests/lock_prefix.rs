//! The LOCK prefix (SDM2 LOCK; the #UD rows of each instruction's exception
//! table): #UD on an instruction that does not take it, legal on one that does.
use xsave_emu::{predict, Case, Control, CpuModel, Fault};

fn case(code: &[u8]) -> (CpuModel, Case) {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.code = code.to_vec();
    (m, c)
}

#[test]
fn lock_on_xsave_family_and_helpers_is_ud() {
    for code in [
        &[0xf0, 0x48, 0x0f, 0xae, 0x27][..], // lock xsave64 [rdi]
        &[0xf0, 0x0f, 0xae, 0x17],           // lock ldmxcsr [rdi]
        &[0xf0, 0x48, 0x8b, 0x07],           // lock mov rax, [rdi]
    ] {
        let (m, c) = case(code);
        let f = predict(&m, &c).unwrap().fault.map(|f| f.fault);
        assert_eq!(f, Some(Fault::Ud), "{code:02x?}");
    }
}

/// diff_native fuzz finding on the Intel host: `lock inc dword ptr [rcx]` with
/// RCX = 0 is a legal locked instruction (#PF at 0 on silicon), not #UD; the
/// model does not run INC and must say so rather than predict #UD.
#[test]
fn lock_on_a_lockable_memory_instruction_is_not_ud() {
    let (m, c) = case(&[0xf0, 0xff, 0x01]);
    assert!(predict(&m, &c).is_err(), "lock inc [rcx] is not modelled");
}
