//! Freedom through the state (issue 14, `Freedoms::state_alt`): a restore that
//! loads register bytes from arena bytes the SDM lets hold other values gives
//! the registers those values; a later load or write of the register ends them;
//! a save of the register passes them on to the arena. Each test judges an
//! outcome with `xsave_emu::check` and asserts the verdict and the rule or
//! latitude it names.
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::provenance::Site;
use xsave_emu::{check, Outcome};

/// Final-image offset of XMM10 byte 2 (XMMn at 160 + 16n).
const XMM10_2: usize = 160 + 16 * 10 + 2;
/// XSAVEC at B writes XSTATE_BV at B + 512; XSTATE_BV[18] (TILEDATA) is bit 2
/// of byte B + 514. FXRSTOR at B + C0H loads XMM10 byte 2 from B + C0H + 142H
/// = B + 514 (the Bochs head finding on sapphire_rapids, issue 14).
const HDR_BYTE_18: usize = 512 + 2;

/// XSAVEC [RBX] with RFBM = 40000H (TILEDATA, in its initial configuration
/// and not in use after the initial load: XSTATE_BV = 0), then FXRSTOR64
/// [RBX + C0H], then `more`.
fn xsavec_then_fxrstor(model: &str, more: impl FnOnce(&mut CodeAssembler)) -> T {
    let mut t = T::user(model);
    t.rfbm(1 << 18).code(|a| {
        a.xsavec(ptr(rbx))?;
        a.fxrstor64(ptr(rbx + 0xC0))?;
        more(a);
        Ok(())
    });
    t
}

/// The predicted outcome with the XSAVEC's XSTATE_BV[18] = 1 (XINUSE[18] = 1
/// over init contents: the TILEDATA bytes it then writes are zero, as the arena
/// held) and XMM10 byte 2 = `xmm10_2`.
fn bit_18_taken(t: &T, xmm10_2: u8) -> Outcome {
    let p = t.predict();
    assert_eq!(p.memory[HDR_BYTE_18], 0, "predicted XSTATE_BV[18] = 0");
    assert_eq!(p.final_image[XMM10_2], 0, "predicted XMM10 byte 2");
    let mut o = p.clone();
    o.memory[HDR_BYTE_18] = 0x04;
    o.final_image[XMM10_2] = xmm10_2;
    o
}

#[test]
fn fxrstor_of_a_free_xstate_bv_bit_loads_either_value() {
    // SDM1 §13.6, §13.10: XSAVEC writes XSTATE_BV[18] = XINUSE[18], which may be
    // 1 over init contents; FXRSTOR loads XMM10 from that byte (SDM2 FXRSTOR), so
    // XMM10 byte 2 may be 04H as well as 00H.
    for model in ["sapphire-rapids", "bochs-head-sapphire_rapids"] {
        let t = xsavec_then_fxrstor(model, |_| {});
        let j = check(&t.model, &t.case, &bit_18_taken(&t, 0x04)).unwrap();
        assert!(j.inside(), "{model}: {j}");
        assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"], "{model}");
    }
}

#[test]
fn fxrstor_of_a_free_xstate_bv_bit_loads_no_other_value() {
    // The byte holds 00H or 04H: 08H in XMM10 byte 2 breaks FXRSTOR's load.
    let t = xsavec_then_fxrstor("sapphire-rapids", |_| {});
    for v in [0x08, 0x05, 0xFF] {
        let j = check(&t.model, &t.case, &bit_18_taken(&t, v)).unwrap();
        assert_eq!(j.rule_ids(), ["fxrstor.loads-legacy-region"], "{v:#x}: {j}");
        assert_eq!(j.broken[0].site, Some(Site::Insn(1)));
        assert_eq!(j.first().unwrap().field, "final[322..323] (SSE)");
    }
}

#[test]
fn a_later_load_of_the_register_ends_its_alternatives() {
    // FXRSTOR64 [RBX + 1000H] reloads XMM10 from zero bytes: 04H is no longer
    // allowed (SDM2 FXRSTOR: the register holds what the second area holds).
    let t = xsavec_then_fxrstor("sapphire-rapids", |a| {
        a.fxrstor64(ptr(rbx + 0x1000)).unwrap();
    });
    let j = check(&t.model, &t.case, &bit_18_taken(&t, 0x04)).unwrap();
    assert_eq!(j.rule_ids(), ["fxrstor.loads-legacy-region"], "{j}");
    assert_eq!(j.broken[0].site, Some(Site::Insn(2)));
}

#[test]
fn a_write_to_another_register_keeps_them_one_to_the_register_ends_them() {
    // MOVQ XMM3, RAX writes XMM3 only (SDM2 MOVQ): XMM10 keeps its
    // alternatives. MOVQ XMM10, RAX writes XMM10: byte 2 is RAX's byte 2.
    let t = xsavec_then_fxrstor("sapphire-rapids", |a| {
        a.movq(xmm3, rax).unwrap();
    });
    let j = check(&t.model, &t.case, &bit_18_taken(&t, 0x04)).unwrap();
    assert!(j.inside(), "{j}");
    let t = xsavec_then_fxrstor("sapphire-rapids", |a| {
        a.movq(xmm10, rax).unwrap();
    });
    // RAX = 40000H: XMM10 byte 2 = 04H is predicted; any other value is not.
    let mut o = t.predict();
    assert_eq!(o.final_image[XMM10_2], 0x04);
    o.memory[HDR_BYTE_18] = 0x04;
    o.final_image[XMM10_2] = 0x00;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["insn.other-semantics"], "{j}");
}

#[test]
fn a_save_of_the_register_passes_them_on_to_the_arena() {
    // FXSAVE64 [RBX + 1000H] saves XMM10 (SDM2 FXSAVE): its byte 2, at
    // B + 1000H + 142H, may hold 04H too, and no third value.
    let t = xsavec_then_fxrstor("sapphire-rapids", |a| {
        a.fxsave64(ptr(rbx + 0x1000)).unwrap();
    });
    let saved = 0x1000 + XMM10_2;
    let mut o = bit_18_taken(&t, 0x04);
    assert_eq!(o.memory[saved], 0);
    o.memory[saved] = 0x04;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"]);
    o.memory[saved] = 0x08;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["fxsave.saves-legacy-region"], "{j}");
    assert_eq!(j.broken[0].site, Some(Site::Insn(2)));
}

#[test]
fn fxrstor_of_a_coupled_byte_loads_it_written_or_left() {
    // XSAVEC with TILEDATA in init may write its bytes (zero) with
    // XSTATE_BV[18] = 1 or leave them (SDM1 §13.10): FXRSTOR's XMM14 comes from
    // TILEDATA's first bytes (B + 576 = B + C0H + 160 + 16 * 14), so it may
    // hold the arena's old bytes or zero.
    let mut t = xsavec_then_fxrstor("sapphire-rapids", |_| {});
    t.put(576, &pat(7, 32));
    let p = t.predict();
    let x14 = 160 + 16 * 14;
    assert_eq!(&p.final_image[x14..x14 + 16], &pat(7, 32)[..16]);
    let mut o = p.clone();
    o.memory[HDR_BYTE_18] = 0x04;
    o.memory[576..576 + 8192].fill(0);
    o.final_image[x14..x14 + 16].fill(0);
    let j = check(&t.model, &t.case, &o).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"]);
    // A value neither written nor left.
    o.final_image[x14 + 5] = 0x11;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["fxrstor.loads-legacy-region"], "{j}");
}

#[test]
fn xrstor_of_a_free_xsave_bit_loads_either_value_into_an_extended_component() {
    // XSAVE64 [RBX + 40H] with RFBM = AVX over init AVX writes XSTATE_BV[2] =
    // XINUSE[2], free over init (SDM1 §13.6, §13.7), at B + 40H + 512 = B + 576;
    // XRSTOR64 [RBX] (standard form, header at B + 512 in the XSAVE area's
    // legacy bytes 448.., which it does not write) loads YMM0_H byte 0 from
    // B + 576: 00H or 04H.
    let mut t = T::user("sapphire-rapids");
    t.put_u64(512, 1 << 2).rfbm(1 << 2).code(|a| {
        a.xsave64(ptr(rbx + 0x40))?;
        a.xrstor64(ptr(rbx))
    });
    let p = t.predict();
    assert_eq!(p.memory[576], 0);
    assert_eq!(p.final_image[576], 0);
    let mut o = p.clone();
    o.memory[576] = 0x04;
    o.final_image[576] = 0x04;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"]);
    o.final_image[576] = 0x02;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["xrstor.loads-rfbm-by-xstate-bv"], "{j}");
}

#[test]
fn pxor_combines_the_alternatives_of_its_operands() {
    // PXOR XMM3, XMM10: each byte of XMM3 is XMM3 XOR XMM10 (SDM2 PXOR), so
    // XMM3 byte 2 (00H XOR 00H or 04H) may be 04H as well, and not 08H.
    let t = xsavec_then_fxrstor("sapphire-rapids", |a| {
        a.pxor(xmm3, xmm10).unwrap();
    });
    let xmm3_2 = 160 + 16 * 3 + 2;
    let mut o = bit_18_taken(&t, 0x04);
    o.final_image[xmm3_2] = 0x04;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert!(j.inside(), "{j}");
    o.final_image[xmm3_2] = 0x08;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["insn.other-semantics"], "{j}");
}

#[test]
fn fninit_moves_the_alternatives_with_the_st_registers() {
    // FXRSTOR64 [RBX + 170H] loads ST7's byte 2 (area offset 32 + 16 * 7 + 2)
    // from B + 514, XSTATE_BV[18] of the XSAVEC: 00H or 04H. FSW's TOP = 3
    // (B + 170H + 2 = 1800H); FNINIT sets TOP = 0 and the physical registers
    // keep their contents (Intel host: ST7 with TOP = 4 comes back as ST3), so
    // the byte is ST2's byte 2 afterwards, at final-image offset 32 + 32 + 2.
    let mut t = T::user("sapphire-rapids");
    t.put(0x170 + 2, &0x1800u16.to_le_bytes())
        .rfbm(1 << 18)
        .code(|a| {
            a.xsavec(ptr(rbx))?;
            a.fxrstor64(ptr(rbx + 0x170))?;
            a.fninit()
        });
    let p = t.predict();
    let (st2_2, st7_2) = (32 + 16 * 2 + 2, 32 + 16 * 7 + 2);
    assert_eq!((p.final_image[st2_2], p.final_image[st7_2]), (0, 0));
    let mut o = p.clone();
    o.memory[HDR_BYTE_18] = 0x04;
    o.final_image[st2_2] = 0x04;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["xinuse-1-over-init"]);
    o.final_image[st2_2] = 0;
    o.final_image[st7_2] = 0x04;
    let j = check(&t.model, &t.case, &o).unwrap();
    assert_eq!(j.rule_ids(), ["insn.other-semantics"], "{j}");
}
