//! The save instructions, one rule per test, bit-exact: XSAVE, XSAVEOPT, XSAVEC,
//! XSAVES (CET in `cet.rs`), FXSAVE, in both operand sizes.
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::Fault;

const XMM0: usize = 160;

/// A case whose initial image has XMM0 = `pat(1)`, MXCSR = `mxcsr`, XSTATE_BV = `bv`.
fn with_sse(model: &str, mxcsr: u32, bv: u64) -> T {
    let mut t = T::user(model);
    t.init(XMM0, &pat(1, 16))
        .init(24, &mxcsr.to_le_bytes())
        .init_bv(bv);
    t
}

#[test]
fn xsave_writes_rfbm_components_and_read_modify_writes_xstate_bv() {
    // SDM2 XSAVE Operation: x87 and SSE (RFBM = 3) written, XSTATE_BV :=
    // (old AND NOT RFBM) OR (XINUSE AND RFBM); XCOMP_BV, header bytes 16..63 and
    // legacy bytes 416..511 not written; bytes past 576 not written.
    let mut t = with_sse("xeon-amx-vm", 0x1F80, 0b10);
    t.fill(0xAA)
        .put_u64(512, 0xF000_0000_0000_0005)
        .rfbm(3)
        .code(|a| a.xsave(ptr(rbx)));
    let o = t.predict();
    assert_eq!(o.fault, None);
    let mut x87 = [0u8; 24];
    x87[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    assert_eq!(mem(&o, 0, 24), &x87[..], "x87 init configuration");
    assert_eq!(u32_at(&o.memory, 24), 0x1F80, "MXCSR");
    assert_eq!(u32_at(&o.memory, 28), 0xFFFF, "MXCSR_MASK");
    assert_eq!(
        mem(&o, 32, 128),
        &[0u8; 128][..],
        "ST0..7 and their padding"
    );
    assert_eq!(mem(&o, XMM0, 16), &pat(1, 16)[..]);
    assert_eq!(mem(&o, XMM0 + 16, 240), &[0u8; 240][..]);
    assert_eq!(
        mem(&o, 416, 96),
        &[0xAA; 96][..],
        "bytes 416..511 untouched"
    );
    assert_eq!(u64_at(&o.memory, 512), 0xF000_0000_0000_0006);
    assert_eq!(
        mem(&o, 520, 56),
        &[0xAA; 56][..],
        "XCOMP_BV and bytes 16..63"
    );
    assert_eq!(mem(&o, 576, 256), &[0xAA; 256][..], "AVX not in RFBM");
}

#[test]
fn xsave_writes_init_components_in_full() {
    // SDM1 §13.7: XSAVE has no init optimization: AVX in its init configuration
    // (XINUSE[2] = 0) is written as zeros and XSTATE_BV[2] := 0.
    let mut t = T::user("zen5");
    t.fill(0xAA)
        .put_u64(512, 0)
        .rfbm(4)
        .code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(mem(&o, 576, 256), &[0u8; 256][..]);
    assert_eq!(u64_at(&o.memory, 512), 0);
}

#[test]
fn xsave_with_rfbm_avx_only_saves_mxcsr() {
    // Reference §3.10 (SDM2 XSAVE): MXCSR and MXCSR_MASK are written when RFBM[1]
    // or RFBM[2] is 1; the XMM registers only with RFBM[1].
    let mut t = with_sse("zen5", 0x1FC0, 0b110);
    t.fill(0xAA).rfbm(4).code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u32_at(&o.memory, 24), 0x1FC0);
    assert_eq!(
        u32_at(&o.memory, 28),
        0x2FFFF,
        "zen5's MXCSR_MASK (bit 17 MM)"
    );
    assert_eq!(mem(&o, XMM0, 16), &[0xAA; 16][..]);
    assert_eq!(mem(&o, 0, 24), &[0xAA; 24][..]);
}

#[test]
fn xsavec_with_rfbm_avx_only_does_not_save_mxcsr() {
    // SDM2 XSAVEC: MXCSR goes with the SSE component only; RFBM[2] does not save it.
    let mut t = with_sse("zen5", 0x1FC0, 0b10);
    t.fill(0xAA).rfbm(4).code(|a| a.xsavec64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(mem(&o, 24, 8), &[0xAA; 8][..]);
    assert_eq!(u64_at(&o.memory, 512), 0, "AVX in init configuration");
    assert_eq!(u64_at(&o.memory, 520), 0x8000_0000_0000_0004);
}

#[test]
fn xsavec_saves_sse_when_mxcsr_is_not_1f80() {
    // SDM2 XSAVEC Operation: TO_BE_SAVED[1] := 1 when RFBM[1] = 1 and MXCSR !=
    // 1F80H, even with XINUSE[1] = 0; XSTATE_BV[1] = 1; XMM, MXCSR, MXCSR_MASK written.
    let mut t = T::user("xeon-amx-vm");
    t.init(24, &0x1F81u32.to_le_bytes())
        .fill(0xAA)
        .rfbm(2)
        .code(|a| a.xsavec(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u32_at(&o.memory, 24), 0x1F81);
    assert_eq!(u32_at(&o.memory, 28), 0xFFFF);
    assert_eq!(mem(&o, XMM0, 256), &[0u8; 256][..]);
    assert_eq!(u64_at(&o.memory, 512), 2);
    assert_eq!(u64_at(&o.memory, 520), 0x8000_0000_0000_0002);
    assert_eq!(o.xinuse, Some(2), "XGETBV(1) bit 1 follows MXCSR != 1F80H");
}

#[test]
fn xsavec_skips_sse_in_init_with_default_mxcsr() {
    // Reference §3.3: RFBM[1] = 1, XINUSE[1] = 0, MXCSR = 1F80H: the whole legacy
    // SSE part, MXCSR included, is left untouched and XSTATE_BV[1] = 0.
    let mut t = T::user("xeon-amx-vm");
    t.fill(0xAA).rfbm(2).code(|a| a.xsavec(ptr(rbx)));
    let o = t.predict();
    assert_eq!(mem(&o, 24, 8), &[0xAA; 8][..]);
    assert_eq!(mem(&o, XMM0, 256), &[0xAA; 256][..]);
    assert_eq!(u64_at(&o.memory, 512), 0);
}

#[test]
fn xsavec_init_optimization_and_compacted_offsets() {
    // SDM1 §13.10: components with XINUSE[i] = 0 are not written but keep their
    // space; XSTATE_BV := RFBM AND XINUSE (bits outside RFBM cleared); XCOMP_BV :=
    // RFBM OR 2^63. zen5's layout without its quirks, RFBM = x87|AVX|opmask: AVX
    // at 576, opmask at 832.
    let mut t = T::user("zen5");
    t.model.quirks = Default::default();
    t.init(832, &pat(5, 64)).init_bv(0b10_0001);
    t.fill(0xAA)
        .put_u64(512, !0)
        .rfbm(0b10_0101)
        .code(|a| a.xsavec64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(
        mem(&o, 576, 256),
        &[0xAA; 256][..],
        "AVX in init: not written"
    );
    assert_eq!(
        mem(&o, 832, 64),
        &pat(5, 64)[..],
        "opmask right after AVX's space"
    );
    assert_eq!(u64_at(&o.memory, 512), 0b10_0001);
    assert_eq!(u64_at(&o.memory, 520), 0x8000_0000_0000_0025);
    assert_eq!(
        mem(&o, 528, 48),
        &[0xAA; 48][..],
        "header bytes 16..63 untouched"
    );
}

#[test]
fn xsaveopt_init_optimization_keeps_mxcsr() {
    // SDM2 XSAVEOPT: an RFBM component with XINUSE[i] = 0 is not written and gets
    // XSTATE_BV[i] = 0; MXCSR/MXCSR_MASK are written whenever RFBM[1] or RFBM[2].
    let mut t = T::user("xeon-amx-vm");
    t.init(24, &0x1FC0u32.to_le_bytes())
        .fill(0xAA)
        .put_u64(512, 0)
        .rfbm(0b110)
        .code(|a| a.xsaveopt64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(mem(&o, XMM0, 256), &[0xAA; 256][..]);
    assert_eq!(mem(&o, 576, 256), &[0xAA; 256][..]);
    assert_eq!(u32_at(&o.memory, 24), 0x1FC0);
    assert_eq!(u64_at(&o.memory, 512), 0);
}

#[test]
fn xsaveopt_modified_optimization_after_standard_xrstor() {
    // SDM1 §13.9: after a standard-form XRSTOR from the same linear address at the
    // same CPL, XSAVEOPT skips components not modified since (XMODIFIED[i] = 0):
    // the AVX bytes overwritten in memory after the XRSTOR stay as they are, while
    // SSE, written by MOVQ after the XRSTOR, is saved.
    let mut t = T::user("zen5");
    t.put(576, &pat(2, 256)).put_u64(512, 0b110).rfbm(0b110);
    t.case.gprs[1] = 0x1111_2222_3333_4444;
    t.code(|a| {
        a.xrstor64(ptr(rbx))?;
        a.mov(qword_ptr(rbx + 576), rcx)?;
        a.movq(xmm0, rcx)?;
        a.xsaveopt64(ptr(rbx))
    });
    let o = t.predict();
    assert_eq!(u64_at(&o.memory, 576), 0x1111_2222_3333_4444, "AVX skipped");
    assert_eq!(mem(&o, 584, 248), &pat(2, 256)[8..]);
    assert_eq!(u64_at(&o.memory, XMM0), 0x1111_2222_3333_4444, "XMM0 saved");
    assert_eq!(u64_at(&o.memory, 512), 0b110);
    // The same with XSAVE: no optimization, AVX written back.
    t.code(|a| {
        a.xrstor64(ptr(rbx))?;
        a.mov(qword_ptr(rbx + 576), rcx)?;
        a.xsave64(ptr(rbx))
    });
    let o = t.predict();
    assert_eq!(mem(&o, 576, 256), &pat(2, 256)[..]);
}

#[test]
fn xsaveopt_modified_optimization_needs_the_same_address() {
    // SDM1 §13.9: XRSTOR_INFO records the linear address; another address saves all.
    let mut t = T::user("zen5");
    t.put(576, &pat(2, 256)).put_u64(512, 0b100).rfbm(0b100);
    t.code(|a| {
        a.xrstor64(ptr(rbx))?;
        a.xsaveopt64(ptr(rbx + 0x1000))
    });
    let o = t.predict();
    assert_eq!(mem(&o, 0x1000 + 576, 256), &pat(2, 256)[..]);
    assert_eq!(u64_at(&o.memory, 0x1000 + 512), 0b100);
}

#[test]
fn xsave_writes_the_init_configuration_of_an_xfd_armed_component() {
    // SDM1 §13.14 (reference §7): XSAVE with RFBM[18] = 1 and TILEDATA armed writes
    // its initial configuration (8 KiB of zeros) and XSTATE_BV[18] = 0 (silicon.md).
    let mut t = T::user("xeon-amx-vm");
    t.ctl().xfd = 1 << 18;
    t.fill(0xAA)
        .put_u64(512, 1 << 18)
        .rfbm(1 << 18)
        .code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert!(mem(&o, 2816, 8192).iter().all(|&b| b == 0));
    assert_eq!(u64_at(&o.memory, 512), 0);
    assert_eq!(mem(&o, 0, 512), &[0xAA; 512][..]);
}

#[test]
fn xsaveopt_and_xsavec_skip_an_xfd_armed_component() {
    // SDM1 §13.14: XSAVEOPT/XSAVEC behave as if XINUSE[18] = 0 for an armed TILEDATA:
    // nothing written there, XSTATE_BV[18] = 0; XSAVEC still lays it out (XCOMP_BV[18]).
    for xsavec in [false, true] {
        let mut t = T::user("xeon-amx-vm");
        t.ctl().xfd = 1 << 18;
        t.fill(0xAA).rfbm(0x60000);
        if xsavec {
            t.code(|a| a.xsavec64(ptr(rbx)));
        } else {
            t.code(|a| a.xsaveopt64(ptr(rbx)));
        }
        let o = t.predict();
        let (off, len) = if xsavec { (640, 8192) } else { (2816, 8192) };
        assert!(mem(&o, off, len).iter().all(|&b| b == 0xAA));
        assert_eq!(u64_at(&o.memory, 512) & (1 << 18), 0);
        if xsavec {
            assert_eq!(u64_at(&o.memory, 520), 0x8000_0000_0006_0000);
        }
    }
}

/// An initial image whose x87 part holds FCW, FSW, FOP, FIP, FDP (64-bit form).
fn with_x87(model: &str, fcw: u16, fsw: u16, fip: u64, fdp: u64) -> T {
    let mut t = T::user(model);
    t.init(0, &fcw.to_le_bytes())
        .init(2, &fsw.to_le_bytes())
        .init(4, &[0x01])
        .init(6, &0x0123u16.to_le_bytes())
        .init_u64(8, fip)
        .init_u64(16, fdp)
        .init(32, &pat(3, 10))
        .init_bv(1);
    t
}

#[test]
fn x87_32bit_form_writes_fcs_fds_as_zero_when_deprecated() {
    // SDM2 FXSAVE/XSAVE (table 3-43): CPUID.(7,0):EBX[13] = 1 on xeon-amx-vm: the
    // 32-bit form writes FIP[31:0] and FDP[31:0] with FCS = FDS = 0000H; bytes 14..15
    // and 22..23 are reserved (0).
    let mut t = with_x87("xeon-amx-vm", 0x037F, 0, 0x7777_1234_5678, 0x6666_9ABC_DEF0);
    t.fill(0xAA).rfbm(1).code(|a| a.xsave(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u32_at(&o.memory, 8), 0x1234_5678);
    assert_eq!(u32_at(&o.memory, 12), 0);
    assert_eq!(u32_at(&o.memory, 16), 0x9ABC_DEF0);
    assert_eq!(u32_at(&o.memory, 20), 0);
    assert_eq!(u16_at(&o.memory, 6), 0x0123, "FOP");
    assert_eq!(o.memory[5], 0, "reserved byte 5");
}

#[test]
fn x87_64bit_form_writes_full_fip_fdp() {
    // SDM2 FXSAVE table 3-46: REX.W form, FIP and FDP are 64 bits (zen5's CPUID
    // without its quirks: the values come back as loaded; the Zen 5 host
    // canonicalizes both, corpus/silicon/x87-pointers-canonical-57.case).
    let mut t = with_x87(
        "zen5",
        0x037F,
        0,
        0x0123_4567_89AB_CDEF,
        0xFEDC_BA98_7654_3210,
    );
    t.model.quirks = Default::default();
    t.rfbm(1).code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u64_at(&o.memory, 8), 0x0123_4567_89AB_CDEF);
    assert_eq!(u64_at(&o.memory, 16), 0xFEDC_BA98_7654_3210);
}

#[test]
fn intel_fip_is_canonicalized_to_57_bits() {
    // Quirk fip-canonical-57 (silicon.md, Intel recording): XSAVE64 writes FIP with
    // bits 63..57 copying bit 56; FDP as loaded.
    let mut t = with_x87(
        "xeon-amx-vm",
        0x037F,
        0,
        0x0123_4567_89AB_CDEF,
        0x0123_0000_0000_0010,
    );
    t.rfbm(1).code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u64_at(&o.memory, 8), 0xFF23_4567_89AB_CDEF);
    assert_eq!(u64_at(&o.memory, 16), 0x0123_0000_0000_0010);
}

#[test]
fn intel_restores_recompute_fsw_es_and_b() {
    // Quirk fsw-es-recompute (silicon.md: 0x4ead in, 0xcead out): ES (bit 7) and B
    // (bit 15) := (FSW[5:0] AND NOT FCW[5:0]) != 0; a model without the quirk keeps
    // the FSW as loaded (the Zen 5 host recomputes too: generated/gen-2026-00106).
    let t = with_x87("xeon-amx-vm", 0x0340, 0x4EAD, 0, 0);
    assert_eq!(u16_at(&t.predict().final_image, 2), 0xCEAD);
    let t = with_x87("xeon-amx-vm", 0x037F, 0xDBF3, 0, 0);
    assert_eq!(u16_at(&t.predict().final_image, 2), 0x5B73);
    let mut t = with_x87("zen5", 0x0340, 0x4EAD, 0, 0);
    assert_eq!(u16_at(&t.predict().final_image, 2), 0xCEAD);
    t.model.quirks = Default::default();
    assert_eq!(u16_at(&t.predict().final_image, 2), 0x4EAD);
}

#[test]
fn saves_write_reserved_x87_bytes_as_zero() {
    // silicon.md (both): with RFBM[0], byte 5 and the six padding bytes of each ST
    // slot are written 0; the ST registers are in stack order at 32 + 16i.
    let mut t = with_x87("xeon-amx-vm", 0x037F, 0, 0, 0);
    t.fill(0xAA).rfbm(1).code(|a| a.xsavec64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(o.memory[4], 0x01, "abridged FTW");
    assert_eq!(o.memory[5], 0);
    assert_eq!(mem(&o, 32, 10), &pat(3, 10)[..]);
    assert_eq!(mem(&o, 42, 6), &[0u8; 6][..]);
    assert_eq!(mem(&o, 48, 112), &[0u8; 112][..]);
}

#[test]
fn fxsave_writes_bytes_0_to_415_only() {
    // SDM2 FXSAVE: the legacy region with MXCSR and MXCSR_MASK (always, CR4.OSFXSR =
    // 1), XMM0..15 in 64-bit mode; bytes 416..511 are not written. 16-byte alignment.
    let mut t = with_sse("zen5", 0x1F80, 2);
    t.fill(0xAA).code(|a| a.fxsave64(ptr(rbx + 16)));
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u16_at(&o.memory, 16), 0x037F);
    assert_eq!(u32_at(&o.memory, 16 + 24), 0x1F80);
    assert_eq!(u32_at(&o.memory, 16 + 28), 0x2FFFF);
    assert_eq!(mem(&o, 16 + XMM0, 16), &pat(1, 16)[..]);
    assert_eq!(mem(&o, 16 + 416, 96), &[0xAA; 96][..]);
    assert_eq!(mem(&o, 0, 16), &[0xAA; 16][..]);
}

#[test]
fn fxsave_needs_16_byte_alignment_only() {
    // SDM2 FXSAVE: #GP(0) if not 16-byte aligned (an XSAVE area needs 64).
    let mut t = T::user("zen5");
    t.code(|a| a.fxsave(ptr(rbx + 8)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    t.code(|a| a.xsave(ptr(rbx + 16)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xsave_leaves_xstate_bv_bits_outside_rfbm() {
    // silicon.md (both): standard-form saves leave XSTATE_BV bits outside RFBM as
    // they were in memory, bit 63 included.
    let mut t = T::user("xeon-amx-vm");
    t.put_u64(512, 0x8000_0000_0000_00F0)
        .rfbm(0x3)
        .code(|a| a.xsaveopt(ptr(rbx)));
    assert_eq!(u64_at(&t.predict().memory, 512), 0x8000_0000_0000_00F0);
}

#[test]
fn every_instruction_in_both_operand_sizes() {
    // SDM2 FXSAVE tables 3-43/3-46 (the x87 part of every XSAVE-family image): the
    // REX.W form saves FIP/FDP as 64 bits, the other form FIP[31:0] with FCS (zen5:
    // not deprecated; 0 after a 64-bit load) and FDP[31:0] with FDS; restores read
    // them the same way. FIP = 1122334455667788H, FDP = 99AABBCCDDEEFF00H.
    let (fip, fdp) = (0x1122_3344_5566_7788u64, 0x99AA_BBCC_DDEE_FF00u64);
    for insn in 0..10 {
        let wide = insn % 2 == 1;
        let kernel = matches!(insn / 2, 3);
        let mut t = if kernel {
            T::kernel("zen5")
        } else {
            T::user("zen5")
        };
        // zen5's layout without its quirks (the FIP/FDP it loads are kept whole).
        t.model.quirks = Default::default();
        t.init(0, &0x037Fu16.to_le_bytes())
            .init(4, &[0x80])
            .init_u64(8, fip)
            .init_u64(16, fdp)
            .init_bv(1)
            .rfbm(1);
        t.code(|a| match (insn / 2, wide) {
            (0, false) => a.xsave(ptr(rbx)),
            (0, true) => a.xsave64(ptr(rbx)),
            (1, false) => a.xsaveopt(ptr(rbx)),
            (1, true) => a.xsaveopt64(ptr(rbx)),
            (2, false) => a.xsavec(ptr(rbx)),
            (2, true) => a.xsavec64(ptr(rbx)),
            (3, false) => a.xsaves(ptr(rbx)),
            (3, true) => a.xsaves64(ptr(rbx)),
            (_, false) => a.fxsave(ptr(rbx)),
            (_, true) => a.fxsave64(ptr(rbx)),
        });
        let o = t.predict();
        assert_eq!(o.fault, None, "insn {insn}");
        if wide {
            assert_eq!(u64_at(&o.memory, 8), fip, "insn {insn}");
            assert_eq!(u64_at(&o.memory, 16), fdp, "insn {insn}");
        } else {
            assert_eq!(u64_at(&o.memory, 8), fip & 0xFFFF_FFFF, "insn {insn}");
            assert_eq!(u64_at(&o.memory, 16), fdp & 0xFFFF_FFFF, "insn {insn}");
        }
    }
    for insn in 0..6 {
        let wide = insn % 2 == 1;
        let kernel = insn / 2 == 1;
        let mut t = if kernel {
            T::kernel("zen5")
        } else {
            T::user("zen5")
        };
        // Without zen5's x87-pointers-need-es (FSW = 0 here would clear them).
        t.model.quirks = Default::default();
        t.put(0, &0x037Fu16.to_le_bytes())
            .put(4, &[0x80])
            .put_u64(8, fip)
            .put_u64(16, fdp)
            .put(24, &0x1F80u32.to_le_bytes())
            .put_u64(512, 1)
            .put_u64(520, if kernel { 1 << 63 | 1 } else { 0 })
            .rfbm(1);
        t.code(|a| match (insn / 2, wide) {
            (0, false) => a.xrstor(ptr(rbx)),
            (0, true) => a.xrstor64(ptr(rbx)),
            (1, false) => a.xrstors(ptr(rbx)),
            (1, true) => a.xrstors64(ptr(rbx)),
            (_, false) => a.fxrstor(ptr(rbx)),
            (_, true) => a.fxrstor64(ptr(rbx)),
        });
        let o = t.predict();
        assert_eq!(o.fault, None, "restore {insn}");
        let (want_fip, want_fdp) = if wide {
            (fip, fdp)
        } else {
            (fip & 0xFFFF_FFFF, fdp & 0xFFFF_FFFF)
        };
        assert_eq!(u64_at(&o.final_image, 8), want_fip, "restore {insn}");
        assert_eq!(u64_at(&o.final_image, 16), want_fdp, "restore {insn}");
    }
}

#[test]
fn xsaves_saves_sse_when_mxcsr_is_not_1f80() {
    // SDM2 XSAVES Operation: like XSAVEC, TO_BE_SAVED[1] := 1 when RFBM[1] = 1 and
    // MXCSR != 1F80H (XINUSE[1] = 0 here); XSTATE_BV[1] = 1.
    let mut t = T::kernel("zen5");
    t.init(24, &0x1FA0u32.to_le_bytes())
        .fill(0xAA)
        .rfbm(2)
        .code(|a| a.xsaves64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u32_at(&o.memory, 24), 0x1FA0);
    assert_eq!(mem(&o, 160, 256), &[0u8; 256][..]);
    assert_eq!(u64_at(&o.memory, 512), 2);
    assert_eq!(u64_at(&o.memory, 520), 0x8000_0000_0000_0002);
}
