//! XRSTOR (standard and compacted), XRSTORS and FXRSTOR, one rule per test,
//! bit-exact. Every #GP condition of XRSTOR and XRSTORS has its own test (SDM2
//! XRSTOR / XRSTORS "Protected Mode Exceptions" and SDM1 §13.8, §13.12).
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::provenance::Site;
use xsave_emu::Fault;

const CMP: u64 = 1 << 63;

/// XRSTOR64 of the arena image at B with EDX:EAX = `rfbm` (user, xeon-amx-vm).
fn xrstor(model: &str, rfbm: u64, xstate_bv: u64, xcomp_bv: u64) -> T {
    let mut t = T::user(model);
    t.put(24, &0x1F80u32.to_le_bytes())
        .put_u64(512, xstate_bv)
        .put_u64(520, xcomp_bv)
        .rfbm(rfbm)
        .code(|a| a.xrstor64(ptr(rbx)));
    t
}

/// XRSTORS64 at CPL 0.
fn xrstors(model: &str, rfbm: u64, xstate_bv: u64, xcomp_bv: u64) -> T {
    let mut t = T::kernel(model);
    t.put(24, &0x1F80u32.to_le_bytes())
        .put_u64(512, xstate_bv)
        .put_u64(520, xcomp_bv)
        .rfbm(rfbm)
        .code(|a| a.xrstors64(ptr(rbx)));
    t
}

// ---- XRSTOR, standard form: #GP(0) conditions ----

#[test]
fn xrstor_standard_gp_xstate_bv_bit_not_in_xcr0() {
    // SDM2 XRSTOR: standard form, #GP(0) if a bit of XSTATE_BV is 0 in XCR0 (PKRU, 9).
    assert_eq!(
        xrstor("xeon-amx-vm", !0, 1 << 9, 0).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstor_standard_gp_xstate_bv_bit_63() {
    // SDM2 XRSTOR: bit 63 is never in XCR0, so XSTATE_BV[63] = 1 is #GP(0) in the
    // standard form (reference §11 item 4).
    assert_eq!(
        xrstor("xeon-amx-vm", !0, 1 << 63, 0).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstor_standard_gp_xcomp_bv_nonzero() {
    // SDM2 XRSTOR: standard form, #GP(0) if bytes 15:8 of the header (XCOMP_BV) are
    // not 0.
    assert_eq!(xrstor("xeon-amx-vm", !0, 3, 1).fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstor_standard_gp_header_bytes_16_to_23() {
    // SDM2 XRSTOR: standard form, #GP(0) if bytes 23:16 of the header are not 0.
    let mut t = xrstor("xeon-amx-vm", !0, 3, 0);
    t.put(528 + 7, &[0x80]);
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstor_standard_ignores_header_bytes_24_to_63() {
    // SDM1 §13.8.1 footnote: the standard form does not check bytes 63:24.
    let mut t = xrstor("xeon-amx-vm", !0, 3, 0);
    t.put(536, &[0xFF; 40]);
    assert_eq!(t.fault(), None);
}

#[test]
fn xrstor_standard_gp_mxcsr_reserved_bit() {
    // SDM2 XRSTOR: #GP(0) on an attempt to load MXCSR with a bit set that
    // MXCSR_MASK says is reserved (bit 16 on xeon-amx-vm, mask FFFFH); the standard
    // form loads MXCSR when RFBM[1] or RFBM[2], whatever XSTATE_BV says; nothing changes.
    for rfbm in [0b10, 0b100] {
        let mut t = xrstor("xeon-amx-vm", rfbm, 0, 0);
        t.put(24, &0x1_1F80u32.to_le_bytes());
        let o = t.predict();
        assert_eq!(
            o.fault.map(|f| f.fault),
            Some(Fault::Gp(0)),
            "rfbm {rfbm:#x}"
        );
        assert_eq!(u32_at(&o.final_image, 24), 0x1F80);
    }
    let mut t = xrstor("xeon-amx-vm", 0b1, 0, 0);
    t.put(24, &0x1_1F80u32.to_le_bytes());
    assert_eq!(
        t.fault(),
        None,
        "MXCSR not loaded without RFBM[1] or RFBM[2]"
    );
    // zen5's MXCSR_MASK has bit 17 (MM): loadable there.
    let mut t = xrstor("zen5", 0b10, 0, 0);
    t.put(24, &0x2_1F80u32.to_le_bytes());
    assert_eq!(t.fault(), None);
    assert_eq!(u32_at(&t.predict().final_image, 24), 0x2_1F80);
}

#[test]
fn a_partial_restore_before_the_mxcsr_gp_is_whole_components() {
    // The SDM is silent on user state before XRSTOR's MXCSR #GP (reference S2):
    // the envelope admits x87 and the XMM registers as loaded (latitude
    // partial-restore-before-fault), each component as a whole: XMM0 loaded with
    // XMM1 left as it was is outside, naming the fault's rule (SDM3 §6.5: what the
    // faulting XRSTOR would have loaded stays as it was, or else is one of the
    // partial restores the latitude admits).
    let mut t = xrstor("xeon-amx-vm", 0b11, 0b11, 0);
    t.init(160, &pat(1, 32)).init_bv(0b10);
    t.put(24, &0x1_1F80u32.to_le_bytes()).put(160, &pat(2, 32));
    let o = t.predict();
    assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)));
    assert_eq!(&o.final_image[160..192], &pat(1, 32)[..], "nothing loaded");
    let j = |obs: &xsave_emu::Outcome| xsave_emu::check(&t.model, &t.case, obs).unwrap();
    let mut loaded = o.clone();
    loaded.final_image[160..192].copy_from_slice(&pat(2, 32));
    let v = j(&loaded);
    assert!(v.inside(), "{v}");
    assert_eq!(v.latitude_ids(), ["partial-restore-before-fault"]);
    let mut half = o.clone();
    half.final_image[160..176].copy_from_slice(&pat(2, 16));
    let v = j(&half);
    assert_eq!(v.rule_ids(), ["fault.leaves-state"], "{v}");
    assert_eq!(v.broken[0].site, Some(Site::Insn(0)));
    assert_eq!(v.first().unwrap().field, "final[160..176] (SSE)");
}

#[test]
fn a_partial_restore_keeps_fsw_es_b_latitude() {
    // A partial restore before the MXCSR #GP that loaded x87 may show FSW.ES and
    // FSW.B recomputed from the loaded FSW and FCW (SDM1 §8.1.3), as a completed
    // load may: qemu-max-7.2 keeps FSW as loaded (no fsw-es-recompute), the
    // observed x87 is the image's with ES and B set (IE unmasked in FCW 037EH).
    let mut t = xrstor("qemu-max-7.2", 0b11, 0b11, 0);
    t.put(0, &0x037Eu16.to_le_bytes())
        .put(2, &0x0001u16.to_le_bytes())
        .put(24, &0xFFFF_FFFFu32.to_le_bytes());
    let o = t.predict();
    assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)));
    let mut loaded = o.clone();
    loaded.final_image[0..2].copy_from_slice(&0x037Eu16.to_le_bytes());
    loaded.final_image[2..4].copy_from_slice(&0x8081u16.to_le_bytes());
    loaded.final_image[4] = 0; // FTW as loaded (all empty, abridged)
    let v = xsave_emu::check(&t.model, &t.case, &loaded).unwrap();
    assert!(v.inside(), "{v}");
    // FSW bit 1 (DE) set is neither the image's value nor a recomputed ES/B.
    loaded.final_image[2..4].copy_from_slice(&0x8083u16.to_le_bytes());
    let v = xsave_emu::check(&t.model, &t.case, &loaded).unwrap();
    assert_eq!(v.rule_ids(), ["fault.leaves-state"], "{v}");
}

#[test]
fn a_partial_restore_before_the_supervisor_value_gp_is_element_by_element() {
    // SDM1 §13.12: after an XRSTORS fault each element of a supervisor component
    // may hold its old value, the value loaded from the area or its initial value.
    // CET_S with PL0_SSP = 1000H, PL1_SSP = 2001H (bits 1:0 set: #GP(0)), PL2_SSP =
    // 3000H, and SSE to be loaded: the prediction changes nothing; PL0_SSP loaded
    // (Bochs main does so), PL1_SSP loaded too, and XMM0 loaded (user state before
    // the #GP: SDM silent, reference S2) are inside; PL0_SSP = 5000H (none of the
    // three) breaks the fault's rule.
    let mut t = xrstors("zen5", !0, 0b10 | 1 << 12, CMP | 0b10 | 1 << 12);
    t.put(160, &pat(2, 16))
        .put_u64(576, 0x1000)
        .put_u64(584, 0x2001)
        .put_u64(592, 0x3000);
    let o = t.predict();
    assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)));
    // zen5's IA32_XSS: CET_U (16 bytes) then CET_S (24).
    assert_eq!(t.case.control.xss, 0x1800);
    assert_eq!(o.supervisor, vec![0u8; 40], "nothing loaded");
    let j = |obs: &xsave_emu::Outcome| xsave_emu::check(&t.model, &t.case, obs).unwrap();
    let mut pl0 = o.clone();
    pl0.supervisor[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
    let v = j(&pl0);
    assert!(v.inside(), "{v}");
    assert_eq!(v.latitude_ids(), ["partial-restore-before-fault"]);
    let mut pl01 = pl0.clone();
    pl01.supervisor[24..32].copy_from_slice(&0x2001u64.to_le_bytes());
    pl01.final_image[160..176].copy_from_slice(&pat(2, 16));
    let v = j(&pl01);
    assert!(v.inside(), "{v}");
    let mut other = o.clone();
    other.supervisor[16..24].copy_from_slice(&0x5000u64.to_le_bytes());
    let v = j(&other);
    assert_eq!(v.rule_ids(), ["fault.leaves-state"], "{v}");
    assert_eq!(v.first().unwrap().field, "supervisor CET_S");
}

// ---- XRSTOR, compacted form: #GP(0) conditions ----

#[test]
fn xrstor_compacted_gp_without_xsavec() {
    // SDM2 XRSTOR: #GP(0) if XCOMP_BV[63] = 1 and CPUID.(0DH,1):EAX[1] = 0
    // (qemu-max-7.2 has no XSAVEC).
    assert_eq!(
        xrstor("qemu-max-7.2", !0, 0, CMP | 3).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstor_compacted_gp_xcomp_bv_not_in_xcr0() {
    // SDM2 XRSTOR: compacted form, #GP(0) if XCOMP_BV[62:0] has a bit not in XCR0.
    assert_eq!(
        xrstor("xeon-amx-vm", !0, 0, CMP | 1 << 9).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstor_compacted_gp_xstate_bv_not_in_xcomp_bv() {
    // SDM2 XRSTOR: compacted form, #GP(0) if XSTATE_BV has a bit not in XCOMP_BV.
    assert_eq!(
        xrstor("xeon-amx-vm", !0, 0b101, CMP | 0b1).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstor_compacted_xstate_bv_bit_63() {
    // Reference §5.1 (SDM2 XRSTOR's list): XSTATE_BV[63] = 1 is a subset of XCOMP_BV
    // (bit 63 = 1): no #GP for a model without the quirk. Intel and Zen 5 silicon
    // #GP (quirk xrstor-compacted-xstate-bv-63-gp; `xsdiff record` on both hosts:
    // #GP(0) with XSTATE_BV = XCOMP_BV = 8000000000000001H, none with 1H,
    // corpus/silicon/xrstor-compacted-xstate-bv-bit63.case).
    let mut plain = xrstor("zen5", !0, CMP | 1, CMP | 1);
    plain.model.quirks.xrstor_compacted_xstate_bv_63_gp = false;
    assert_eq!(plain.fault(), None);
    assert_eq!(
        xrstor("zen5", !0, CMP | 1, CMP | 1).fault(),
        Some(Fault::Gp(0))
    );
    assert_eq!(
        xrstor("xeon-amx-vm", !0, CMP | 1, CMP | 1).fault(),
        Some(Fault::Gp(0))
    );
    assert_eq!(xrstor("xeon-amx-vm", !0, 1, CMP | 1).fault(), None);
}

#[test]
fn xrstor_compacted_gp_header_bytes_16_to_63() {
    // SDM2 XRSTOR: compacted form, #GP(0) if bytes 63:16 of the header are not 0.
    let mut t = xrstor("xeon-amx-vm", !0, 1, CMP | 1);
    t.put(575, &[1]);
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstor_compacted_gp_mxcsr_only_when_sse_is_loaded() {
    // Reference §3.10: compacted XRSTOR loads MXCSR only with SSE (XSTATE_BV[1] = 1):
    // a reserved bit is #GP(0) then, and ignored (MXCSR := 1F80H) when SSE is
    // initialized instead.
    let mut t = xrstor("zen5", 0b10, 0b10, CMP | 0b10);
    t.put(24, &0x8_0000u32.to_le_bytes());
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    let mut t = xrstor("zen5", 0b10, 0, CMP | 0b10);
    t.init(24, &0x1FC0u32.to_le_bytes())
        .put(24, &0x8_0000u32.to_le_bytes());
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u32_at(&o.final_image, 24), 0x1F80);
}

#[test]
fn intel_compacted_xrstor_initializes_before_the_mxcsr_gp() {
    // Quirk xrstor-compacted-mxcsr-late (xsdiff run on the Intel host): components
    // to be initialized (AVX outside XCOMP_BV here) are initialized, XINUSE[2] := 0,
    // before the MXCSR #GP; zen5 (no quirk) leaves AVX as it was.
    for (model, cleared) in [("xeon-amx-vm", true), ("zen5", false)] {
        let mut t = xrstor(model, 0b110, 0b10, CMP | 0b10);
        t.init(576, &pat(2, 256)).init_bv(0b100);
        t.put(24, &0x8000_1F80u32.to_le_bytes());
        let o = t.predict();
        assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)), "{model}");
        let avx = &o.final_image[576..832];
        assert_eq!(avx.iter().all(|&b| b == 0), cleared, "{model}");
        assert_eq!(o.xinuse.unwrap() & 0b100 == 0, cleared, "{model}");
    }
}

#[test]
fn intel_compacted_xrstor_loads_x87_and_xmm_before_the_mxcsr_gp() {
    // Quirk xrstor-compacted-mxcsr-late (Intel recording, record 680): x87 is
    // initialized (outside XCOMP_BV) and XMM loaded before the #GP; MXCSR and
    // opmask keep their old values. zen5 (no quirk) changes nothing.
    for (model, changed) in [("xeon-amx-vm", true), ("zen5", false)] {
        let mut t = xrstor(model, !0, 0b10_0010, CMP | 0b10_0010);
        t.init(0, &0x0340u16.to_le_bytes()).init_bv(1);
        t.put(24, &0xEB25_B010u32.to_le_bytes())
            .put(160, &pat(4, 16))
            .put(576, &pat(5, 64));
        let o = t.predict();
        assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)), "{model}");
        let fcw = u16_at(&o.final_image, 0);
        assert_eq!(fcw, if changed { 0x037F } else { 0x0340 }, "{model}");
        let x0 = &o.final_image[160..176];
        assert_eq!(x0 == &pat(4, 16)[..], changed, "{model}");
        assert_eq!(u32_at(&o.final_image, 24), 0x1F80, "{model}");
        let k = &o.final_image[if model == "zen5" { 832 } else { 1088 }..][..64];
        assert!(k.iter().all(|&b| b == 0), "{model}: opmask");
    }
}

// ---- XRSTOR: what it loads and initializes ----

#[test]
fn xrstor_standard_initializes_components_with_xstate_bv_0() {
    // SDM1 §13.8.1: RFBM[i] = 1 and XSTATE_BV[i] = 0 initialize i (x87: FCW 037FH,
    // FSW 0, tags empty, pointers 0, ST 0; AVX 0), XINUSE[i] := 0; SSE init clears
    // XMM but leaves MXCSR to the image (loaded because RFBM[1] = 1).
    let mut t = xrstor("zen5", 0b111, 0, 0);
    t.init(0, &0x0340u16.to_le_bytes())
        .init(2, &0x0081u16.to_le_bytes())
        .init(160, &pat(1, 16))
        .init(576, &pat(2, 256))
        .init_bv(0b111);
    t.put(24, &0x1FC0u32.to_le_bytes());
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u16_at(&o.final_image, 0), 0x037F);
    assert_eq!(u16_at(&o.final_image, 2), 0);
    assert_eq!(u32_at(&o.final_image, 24), 0x1FC0);
    assert!(o.final_image[160..416].iter().all(|&b| b == 0));
    assert!(o.final_image[576..832].iter().all(|&b| b == 0));
    assert_eq!(u64_at(&o.final_image, 512), 0);
    assert_eq!(o.xinuse, Some(0b10), "bit 1 from MXCSR != 1F80H only");
}

#[test]
fn xrstor_leaves_components_outside_rfbm() {
    // SDM2 XRSTOR: RFBM[i] = 0 leaves component i and XINUSE[i] unchanged.
    let mut t = xrstor("zen5", 0b1, 0b100, 0);
    t.init(576, &pat(2, 256))
        .init_bv(0b100)
        .put(576, &pat(9, 256));
    let o = t.predict();
    assert_eq!(&o.final_image[576..832], &pat(2, 256)[..]);
    assert_eq!(o.xinuse, Some(0b100));
}

#[test]
fn xrstor_standard_loads_from_standard_offsets() {
    // SDM1 §13.8.1: XSTATE_BV[i] = 1 loads i from CPUID.(0DH,i).EBX (opmask at 1088
    // on xeon-amx-vm) and sets XINUSE[i] = 1, whatever the values (zero included).
    let mut t = xrstor("xeon-amx-vm", 0b110_0000, 0b110_0000, 0);
    t.put(1088, &pat(5, 64));
    let o = t.predict();
    assert_eq!(&o.final_image[1088..1152], &pat(5, 64)[..]);
    assert!(o.final_image[1152..1664].iter().all(|&b| b == 0));
    assert_eq!(o.xinuse, Some(0b110_0000));
}

#[test]
fn xrstor_compacted_force_init_outside_xcomp_bv() {
    // SDM2 XRSTOR (compacted): RFBM[i] = 1 and XCOMP_BV[i] = 0 initialize i, x87 and
    // SSE included (MXCSR := 1F80H); AVX is loaded from offset 576.
    let mut t = xrstor("zen5", 0b111, 0b100, CMP | 0b100);
    t.init(0, &0x0340u16.to_le_bytes())
        .init(24, &0x1FC0u32.to_le_bytes())
        .init(160, &pat(1, 16))
        .init_bv(0b11);
    t.put(576, &pat(2, 256));
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u16_at(&o.final_image, 0), 0x037F);
    assert_eq!(u32_at(&o.final_image, 24), 0x1F80);
    assert!(o.final_image[160..416].iter().all(|&b| b == 0));
    assert_eq!(&o.final_image[576..832], &pat(2, 256)[..]);
    assert_eq!(o.xinuse, Some(0b100));
}

#[test]
fn xrstor_compacted_walks_the_xcomp_bv_layout_with_alignment() {
    // SDM1 §13.4.3: XCOMP_BV = opmask|TILECFG: opmask at 576, TILECFG 64-byte aligned
    // at 640; RFBM = TILECFG only loads TILECFG and leaves opmask.
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    cfg[16] = 64;
    cfg[48] = 16;
    let mut t = xrstor("xeon-amx-vm", 1 << 17, 0x2_0020, CMP | 0x2_0020);
    t.put(640, &cfg).put(576, &pat(5, 64));
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(&o.final_image[2752..2816], &cfg[..]);
    assert!(o.final_image[1088..1152].iter().all(|&b| b == 0));
    assert_eq!(o.xinuse, Some(1 << 17));
}

#[test]
fn xrstor_of_an_unsupported_tilecfg_initializes_it() {
    // SDM1 §13.5.11: XRSTOR of a TILECFG that LDTILECFG would refuse does not fault
    // and initializes TILECFG (XINUSE[17] = 0); see amx.rs for "refuse": palette 2,
    // 17 rows, a reserved byte, rows without colsb.
    let mut bad = Vec::new();
    for (k, v) in [(0usize, 2u8), (48, 17), (2, 1), (48, 4)] {
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        cfg[16] = 64;
        cfg[48] = 16;
        cfg[k] = v;
        if k == 48 && v == 4 {
            cfg[16] = 0;
        }
        bad.push(cfg);
    }
    for cfg in bad {
        let mut t = xrstor("xeon-amx-vm", 1 << 17, 1 << 17, 0);
        t.put(2752, &cfg);
        let o = t.predict();
        assert_eq!(o.fault, None);
        assert!(o.final_image[2752..2816].iter().all(|&b| b == 0), "{cfg:?}");
        assert_eq!(o.xinuse, Some(0), "{cfg:?}");
    }
    // A palette-1 configuration is loaded as is, start_row included.
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    cfg[1] = 7;
    cfg[16] = 4;
    cfg[48] = 1;
    let mut t = xrstor("xeon-amx-vm", 1 << 17, 1 << 17, 0);
    t.put(2752, &cfg);
    assert_eq!(&t.predict().final_image[2752..2816], &cfg[..]);
}

#[test]
fn xrstor_of_an_unsupported_tilecfg_next_to_tiledata_initializes_only_tilecfg() {
    // SDM1 §13.5.11 with TILEDATA restored as well (the two follow each other in
    // the image and in the model's state, and load as one run): palette 2
    // initializes TILECFG (XINUSE[17] = 0), TILEDATA loads as it is. Standard form
    // (TILECFG at 2752, TILEDATA at 2816) and compacted with XCOMP_BV =
    // TILECFG|TILEDATA (576, 640); a palette-1 TILECFG loads with it.
    let data = pat(7, 8192);
    let mut good = [0u8; 64];
    good[0] = 1;
    good[16] = 64;
    good[48] = 16;
    let mut bad = good;
    bad[0] = 2;
    for (xcomp_bv, at) in [(0, 2752), (CMP | 0x6_0000, 576)] {
        for (cfg, xinuse) in [(bad, 1 << 18), (good, 0x6_0000)] {
            let mut t = xrstor("xeon-amx-vm", 0x6_0000, 0x6_0000, xcomp_bv);
            t.put(at, &cfg).put(at + 64, &data);
            let o = t.predict();
            assert_eq!(o.fault, None);
            let want = if cfg[0] == 1 { cfg } else { [0; 64] };
            assert_eq!(&o.final_image[2752..2816], &want[..], "{xcomp_bv:#x}");
            assert_eq!(&o.final_image[2816..11008], &data[..], "{xcomp_bv:#x}");
            assert_eq!(o.xinuse, Some(xinuse), "{xcomp_bv:#x}");
        }
    }
}

#[test]
fn xrstor_nm_for_an_xfd_armed_component_loaded_from_memory() {
    // SDM1 §13.14: #NM if RFBM[18] = XSTATE_BV[18] = 1 and TILEDATA is armed; no
    // #NM with XSTATE_BV[18] = 0 (TILEDATA initialized) or RFBM[18] = 0.
    for (rfbm, bv, fault) in [
        (0x60003u64, 0x40000u64, Some(Fault::Nm)),
        (0x60003, 0x3, None),
        (0x3, 0x40000, None),
    ] {
        let mut t = xrstor("xeon-amx-vm", rfbm, bv, 0);
        t.ctl().xfd = 1 << 18;
        assert_eq!(t.fault(), fault, "rfbm {rfbm:#x} xstate_bv {bv:#x}");
    }
}

#[test]
fn xrstor_header_gp_comes_before_the_xfd_nm() {
    // Reference §5.2 items 6-7 (order silent in the SDM; the model checks the header
    // first): a bad header and an armed TILEDATA give #GP(0).
    let mut t = xrstor("xeon-amx-vm", !0, 0x40000, 1);
    t.ctl().xfd = 1 << 18;
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstor_sets_xrstor_info_and_xinuse_only_on_success() {
    // SDM2 XRSTOR: XINUSE[i] := 1 for loaded components; a faulting XRSTOR changes
    // nothing (standard form, header #GP).
    // (zen5 sets XINUSE from the contents loaded: quirk xinuse-by-contents.)
    let mut z = xrstor("zen5", 0b100, 0b100, 0);
    z.put(576, &[0u8; 256]);
    assert_eq!(
        z.predict().xinuse,
        Some(0),
        "zen5: loaded zeros are not in use"
    );
    let mut t = xrstor("zen5", 0b100, 0b100, 0);
    t.model.quirks.xinuse_by_contents = false;
    t.put(576, &[0u8; 256]);
    assert_eq!(
        t.predict().xinuse,
        Some(0b100),
        "loaded zeros are still in use"
    );
    t.put_u64(520, 5);
    // XINUSE[2] stays 0; bits 1:0 are Linux's sigreturn after the #GP (quirk
    // linux-signal-fpsse of the ring-3 runner's OS).
    assert_eq!(t.predict().xinuse, Some(0b11));
}

#[test]
fn xrstor_with_rfbm_zero_checks_the_header_and_changes_nothing() {
    // Reference §3.5: EDX:EAX = 0 gives RFBM = 0: no state change, header still checked.
    let mut t = xrstor("zen5", 0, 0b100, 0);
    assert_eq!(t.fault(), None);
    t.put_u64(520, 1);
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

// ---- XRSTORS: #GP(0) conditions ----

#[test]
fn xrstors_gp_at_cpl3() {
    // SDM2 XRSTORS: #GP(0) if CPL > 0 (before the alignment check: misaligned too).
    let mut t = xrstors("zen5", !0, 0, CMP);
    t.ctl().cpl = 3;
    t.case.gprs[3] = B + 8;
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstors_gp_standard_format() {
    // SDM2 XRSTORS: #GP(0) if XCOMP_BV[63] = 0.
    assert_eq!(xrstors("zen5", !0, 0, 0).fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstors_gp_xcomp_bv_not_in_xcr0_or_xss() {
    // SDM1 §13.12 (reference D2): #GP(0) if XCOMP_BV has a bit not in XCR0 | IA32_XSS;
    // CET_S (12, in IA32_XSS) is fine, PKRU (9) is not.
    assert_eq!(xrstors("zen5", !0, 0, CMP | 1 << 12).fault(), None);
    assert_eq!(
        xrstors("zen5", !0, 0, CMP | 1 << 9).fault(),
        Some(Fault::Gp(0))
    );
    let mut t = xrstors("zen5", !0, 0, CMP | 1 << 12);
    t.ctl().xss = 1 << 11;
    assert_eq!(
        t.fault(),
        Some(Fault::Gp(0)),
        "CET_S not enabled in IA32_XSS"
    );
}

#[test]
fn xrstors_gp_xstate_bv_not_in_xcomp_bv() {
    // SDM2 XRSTORS: #GP(0) if XSTATE_BV has a bit not in XCOMP_BV.
    assert_eq!(
        xrstors("zen5", !0, 0b10, CMP | 0b1).fault(),
        Some(Fault::Gp(0))
    );
}

#[test]
fn xrstors_gp_header_bytes_16_to_63() {
    // SDM2 XRSTORS: #GP(0) if bytes 63:16 of the header are not 0.
    let mut t = xrstors("zen5", !0, 0, CMP);
    t.put(540, &[4]);
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstors_gp_mxcsr_reserved_bit() {
    // SDM2 XRSTORS: #GP(0) loading MXCSR with a reserved bit (bit 18, outside
    // zen5's 2FFFFH).
    let mut t = xrstors("zen5", !0, 0b10, CMP | 0b10);
    t.put(24, &0x4_0000u32.to_le_bytes());
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xrstors_gp_cet_u_reserved_bits() {
    // SDM1 §13.12 ("unsupported value", reference §6.1): IA32_U_CET bits 9:6 reserved;
    // SUPPRESS (10) and TRACKER (11) together; PL3_SSP bits 1:0 or non-canonical.
    // CET_U alone at 576 (16 bytes).
    for (u_cet, ssp, ok) in [
        (0x1u64, 0x7FFF_FFFF_F000u64, true),
        (1 << 6, 0, false),
        (1 << 10 | 1 << 11, 0, false),
        (1 << 10, 0, true),
        (0x8000_0000_0000_0000, 0, false),
        (0, 0x1001, false),
        (0, 0x1004, true),
        (0, 0x0000_8000_0000_0000, false),
    ] {
        let mut t = xrstors("zen5", !0, 1 << 11, CMP | 1 << 11);
        t.put_u64(576, u_cet).put_u64(584, ssp);
        let want = if ok { None } else { Some(Fault::Gp(0)) };
        assert_eq!(t.fault(), want, "U_CET {u_cet:#x} PL3_SSP {ssp:#x}");
    }
}

#[test]
fn xrstors_gp_cet_s_ssp_checks() {
    // SDM Vol.4 IA32_PLi_SSP with Intel's clarification (reference D10): WRMSR (and
    // so XRSTORS) #GP if bit 0 or 1 is set or the address is not canonical; bit 2 is
    // not checked. zen5 and sapphire-rapids (48-bit canonical on zen5, 57 on SPR).
    for model in ["zen5", "sapphire-rapids"] {
        for (k, ssp, ok) in [
            (0usize, 0xFFFF_8000_0000_1000u64, true),
            (1, 0x1004, true),
            (2, 0x1002, false),
            (0, 0x1001, false),
            (1, 0x00F0_0000_0000_0000, model == "sapphire-rapids"),
            (2, 0x0100_0000_0000_0000, false),
        ] {
            let mut t = xrstors(model, !0, 1 << 12, CMP | 1 << 12);
            t.put_u64(576 + 8 * k, ssp);
            let want = if ok { None } else { Some(Fault::Gp(0)) };
            assert_eq!(t.fault(), want, "{model} PL{k}_SSP {ssp:#x}");
        }
    }
}

#[test]
fn fxrstor_gp_mxcsr_reserved_and_loads_x87_sse() {
    // SDM2 FXRSTOR: #GP(0) if the MXCSR image sets a bit outside MXCSR_MASK (the SDM's
    // "bits 16 through 32" is a typo, reference D14); otherwise x87, MXCSR and XMM are
    // loaded and XINUSE[1:0] = 1 (SDM silent; Intel recording: 215 of 215).
    let mut t = T::user("xeon-amx-vm");
    t.put(0, &0x0340u16.to_le_bytes())
        .put(24, &0x1_1F80u32.to_le_bytes())
        .code(|a| a.fxrstor64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    t.put(24, &0x1F81u32.to_le_bytes()).put(160, &pat(4, 16));
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u16_at(&o.final_image, 0), 0x0340);
    assert_eq!(u32_at(&o.final_image, 24), 0x1F81);
    assert_eq!(&o.final_image[160..176], &pat(4, 16)[..]);
    assert_eq!(o.xinuse, Some(0b11));
}

#[test]
fn fxrstor_32bit_form_fcs_fds_ignored_when_deprecated() {
    // SDM2 FXRSTOR (CPUID.(7,0):EBX[13]): FCS/FDS are ignored on load; a model
    // without the deprecation bit (zen5's CPUID, its quirks aside) keeps them, and
    // its 32-bit FXSAVE writes them back.
    for (model, fcs, fds) in [("xeon-amx-vm", 0u16, 0u16), ("zen5", 0x0033, 0x002B)] {
        let mut t = T::user(model);
        if model == "zen5" {
            // x87-pointers-need-es would clear them (FSW = 0 here).
            t.model.quirks.x87_pointers_need_es = false;
        }
        t.put(0, &0x037Fu16.to_le_bytes())
            .put(8, &0x1234_5678u32.to_le_bytes())
            .put(12, &0x33u16.to_le_bytes())
            .put(20, &0x2Bu16.to_le_bytes())
            .put(24, &0x1F80u32.to_le_bytes())
            .code(|a| {
                a.fxrstor(ptr(rbx))?;
                a.fxsave(ptr(rbx + 0x1000))
            });
        let o = t.predict();
        assert_eq!(u32_at(&o.memory, 0x1008), 0x1234_5678, "{model}");
        assert_eq!(u16_at(&o.memory, 0x100C), fcs, "{model} FCS");
        assert_eq!(u16_at(&o.memory, 0x1014), fds, "{model} FDS");
    }
}
