//! The envelope of XGETBV(1) (SDM2 XGETBV; SDM1 §13.6): XINUSE[i] may read 1 for
//! a component in its init configuration, never 0 for one that is not. QEMU TCG
//! reads 0x217 in the all-init state (corpus/regressions), which the SDM allows.
use xsave_emu::{check, predict, Case, Control, CpuModel};

fn xgetbv1_case(model: &CpuModel) -> Case {
    let mut c = Case::new(model, Control::user(model));
    c.code = vec![0x0f, 0x01, 0xd0]; // xgetbv
    c.gprs[1] = 1;
    c
}

#[test]
fn xgetbv1_may_report_init_components_in_use() {
    let m = CpuModel::builtin("qemu-max-7.2").unwrap();
    let c = xgetbv1_case(&m);
    let mut obs = predict(&m, &c).unwrap();
    assert_eq!(obs.gprs[0], 0, "all-init state: predicted XINUSE is 0");
    obs.gprs[0] = 0x217;
    let j = check(&m, &c, &obs).unwrap();
    assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"], "{j}");
    assert!(j.inside());
}

#[test]
fn xgetbv1_may_not_report_a_used_component_as_init() {
    let m = CpuModel::builtin("qemu-max-7.2").unwrap();
    let mut c = xgetbv1_case(&m);
    // XMM0 = 1 with XSTATE_BV[1] = 1: SSE is in use, so RAX[1] must read 1.
    c.init[160] = 1;
    c.set_init_xstate_bv(2);
    let mut obs = predict(&m, &c).unwrap();
    assert_eq!(obs.gprs[0] & 2, 2);
    obs.gprs[0] &= !2;
    let v = check(&m, &c, &obs).unwrap();
    assert_eq!(v.rule_ids(), ["xgetbv.returns-xcr"], "{v}");
    let v = v.first().unwrap();
    assert_eq!(v.field, "gprs.rax");
}

#[test]
fn a_later_write_to_rax_ends_the_latitude() {
    let m = CpuModel::builtin("qemu-max-7.2").unwrap();
    let mut c = xgetbv1_case(&m);
    c.code.extend_from_slice(&[0xb8, 0x00, 0x00, 0x00, 0x00]); // mov eax, 0
    let mut obs = predict(&m, &c).unwrap();
    obs.gprs[0] = 4;
    // MOV EAX, 0 wrote it last (SDM2 MOV).
    assert_eq!(
        check(&m, &c, &obs).unwrap().rule_ids(),
        ["insn.other-semantics"]
    );
}
