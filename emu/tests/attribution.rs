//! Where a verdict charges a rule: the step of the case that set the differing
//! value (`Broken::site`: the runner's initial load of the case's image, or an
//! instruction). A save that copied a state set by a compacted restore as each
//! side held it did its part (SDM2 XSAVE Operation: it writes the state as it
//! is), so the difference is charged once, to the step that set the state. A
//! state set by a standard XRSTOR is observed through the same standard XSAVE
//! as the save's: both rules are named.
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::provenance::Site;

/// XMM0 in the initial image (XSTATE_BV = SSE), compacted (loaded by the
/// runner's XRSTORS at CPL 0) or standard (its XRSTOR), then XSAVE64 of x87
/// and SSE.
fn xmm0_then_xsave(compacted: bool) -> T {
    let mut t = if compacted {
        T::kernel("xeon-amx-vm")
    } else {
        T::user("xeon-amx-vm")
    };
    t.init(160, &pat(1, 16)).init_bv(0b10);
    if compacted {
        t.init_u64(520, 1 << 63 | 0b10);
    }
    t.rfbm(0b11).code(|a| a.xsave64(ptr(rbx)));
    t
}

#[test]
fn a_wrong_initial_load_saved_as_held_is_the_initial_loads() {
    // SDM1 §13.8.2: the runner's XRSTORS loads XMM0 from the image. An
    // implementation that loaded other bytes and saved them as it held them
    // breaks the compacted load's rule at the initial load, and nothing else.
    let t = xmm0_then_xsave(true);
    let o = t.predict();
    assert_eq!(mem(&o, 160, 16), &pat(1, 16)[..]);
    let mut obs = o.clone();
    obs.final_image[160..176].copy_from_slice(&pat(4, 16));
    obs.memory[160..176].copy_from_slice(&pat(4, 16));
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(
        v.rule_ids(),
        ["xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"],
        "{v}"
    );
    assert_eq!(v.broken[0].site, Some(Site::Initial));
    // Saved as neither side holds it: the save breaks its own rule too, at
    // its instruction.
    obs.memory[160..176].copy_from_slice(&pat(5, 16));
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(
        v.rule_ids(),
        [
            "xsave.saves-rfbm",
            "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"
        ],
        "{v}"
    );
    assert_eq!(v.broken[0].site, Some(Site::Insn(0)));
    assert_eq!(v.broken[1].site, Some(Site::Initial));
}

#[test]
fn a_standard_load_and_a_save_both_named_where_either_explains() {
    // A standard image is loaded by XRSTOR and observed through XSAVE: a
    // wrong XRSTOR, or one wrong save routine shared by the case's XSAVE and
    // the capture, give the same bytes. Both rules, each at its step.
    let t = xmm0_then_xsave(false);
    let o = t.predict();
    let mut obs = o.clone();
    obs.final_image[160..176].copy_from_slice(&pat(4, 16));
    obs.memory[160..176].copy_from_slice(&pat(4, 16));
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(
        v.rule_ids(),
        ["xsave.saves-rfbm", "xrstor.loads-rfbm-by-xstate-bv"],
        "{v}"
    );
    assert_eq!(v.broken[0].site, Some(Site::Insn(0)));
    assert_eq!(v.broken[1].site, Some(Site::Initial));
}

#[test]
fn an_xstate_bv_bit_saved_from_a_wrongly_initialized_component_follows_it() {
    // K7 (opmask, component 5) in the image; an implementation whose initial
    // load initialized opmask holds K7 = 0 with XINUSE[5] = 0, and XSAVE
    // writes XSTATE_BV[5] = XINUSE[5] = 0 (SDM2 XSAVE Operation) and opmask's
    // initial bytes: only the load's rule is broken.
    // Compacted image: opmask first after the header (offset 576).
    let k7_off = 1088 + 56;
    let mut t = T::kernel("xeon-amx-vm");
    t.init(576 + 56, &pat(7, 8)).init_bv(1 << 5);
    t.init_u64(520, 1 << 63 | 1 << 5);
    t.rfbm(1 << 5).code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(o.memory[512] >> 5 & 1, 1);
    assert_eq!(mem(&o, k7_off, 8), &pat(7, 8)[..]);
    let mut obs = o.clone();
    obs.final_image[k7_off..k7_off + 8].fill(0);
    obs.final_image[512] &= !(1 << 5);
    obs.xinuse = obs.xinuse.map(|x| x & !(1 << 5));
    obs.memory[k7_off..k7_off + 8].fill(0);
    obs.memory[512] &= !(1 << 5);
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(
        v.rule_ids(),
        ["xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"],
        "{v}"
    );
    assert_eq!(v.broken[0].site, Some(Site::Initial));
}

#[test]
fn a_fault_at_an_instruction_is_charged_there() {
    // SDM2 XRSTOR: #GP(0) for a reserved MXCSR bit; a run without the fault
    // breaks the fault's rule at the XRSTOR (instruction 1, after a NOP).
    let mut t = T::user("xeon-amx-vm");
    t.put(24, &0x1_1F80u32.to_le_bytes()).rfbm(0b10);
    t.code(|a| {
        a.nop()?;
        a.xrstor64(ptr(rbx))
    });
    let o = t.predict();
    assert!(o.fault.is_some());
    let mut obs = o.clone();
    obs.fault = None;
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(v.rule_ids()[0], "xrstor.gp-mxcsr-reserved", "{v}");
    assert_eq!(v.broken[0].site, Some(Site::Insn(1)));
}

#[test]
fn an_earlier_saves_alternatives_end_where_a_later_write_covers_them() {
    // After the initial load (an x87 load), XSAVE's FSW bytes may show ES
    // (bit 7) recomputed (latitude fsw-es-b-recomputed, SDM1 §8.1.3). A MOV
    // over them writes its own value (SDM2 MOV): the old alternative no
    // longer holds there, and a byte showing it breaks the MOV's rule.
    let mut t = T::user("xeon-amx-vm");
    t.init_bv(1).rfbm(1);
    t.case.gprs[1] = 0x1111_1111_1111_1111;
    t.code(|a| {
        a.xsave64(ptr(rbx))?;
        a.mov(qword_ptr(rbx), rcx)
    });
    let o = t.predict();
    assert_eq!(o.memory[2], 0x11);
    let mut obs = o.clone();
    obs.memory[2] = 0x80;
    let v = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
    assert_eq!(v.rule_ids(), ["insn.other-semantics"], "{v}");
    assert_eq!(v.broken[0].site, Some(Site::Insn(1)));
    // Without the MOV the same byte is the save's allowed alternative.
    let mut t2 = T::user("xeon-amx-vm");
    t2.init_bv(1).rfbm(1).code(|a| a.xsave64(ptr(rbx)));
    let mut obs = t2.predict();
    assert_eq!(obs.memory[2], 0x00);
    obs.memory[2] = 0x80;
    let v = xsave_emu::check(&t2.model, &t2.case, &obs).unwrap();
    assert!(v.inside(), "{v}");
    assert_eq!(v.latitude_ids(), ["fsw-es-b-recomputed"]);
}
