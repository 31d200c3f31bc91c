//! CET supervisor state (CET_U = 11, CET_S = 12) through XSAVES/XRSTORS on zen5
//! and sapphire-rapids (SDM1 §13.5.9, §13.11, §13.12), laid out as the Linux
//! CET-S series lays out fpstates: a guest fpstate has XCOMP_BV[12] = 1 (CET_S's 24
//! bytes at 2448, 2472 bytes in all), a normal fpstate has XCOMP_BV[12] = 0 and
//! those 24 bytes are not part of it (2448 bytes).
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::{layout, Fault, Xfeatures};

const GUEST: u64 = 0x18e7;
const NORMAL: u64 = 0x08e7;
const CMP: u64 = 1 << 63;

/// CPL 0, IA32_XSS = CET_U|CET_S, the runner's initial XRSTORS from a compacted
/// image of `GUEST` holding PL0..2_SSP = `ssp` (XSTATE_BV[12] = 1 unless all zero).
fn guest(model: &str, ssp: [u64; 3]) -> T {
    let mut t = T::kernel(model);
    assert_eq!(t.case.control.xss, 0x1800);
    let m = t.model.clone();
    let lay = layout::compacted(&m, Xfeatures::from_bits_retain(GUEST));
    let at = lay.slot(12).unwrap().offset as usize;
    t.case.init.resize(lay.size as usize, 0);
    for (k, v) in ssp.iter().enumerate() {
        t.init_u64(at + 8 * k, *v);
    }
    let bv = if ssp.iter().any(|&v| v != 0) {
        1 << 12
    } else {
        0
    };
    t.init_u64(512, bv).init_u64(520, CMP | GUEST);
    t.fill(0xAA);
    t
}

#[test]
fn zen5_layouts_match_linux() {
    // Linux on zen5: guest fpstate 2472 bytes with CET_S at 2448; normal 2448.
    let t = T::kernel("zen5");
    let g = layout::compacted(&t.model, Xfeatures::from_bits_retain(GUEST));
    assert_eq!(
        (g.slot(11).unwrap().offset, g.slot(12).unwrap().offset),
        (2432, 2448)
    );
    assert_eq!(g.size, 2472);
    assert_eq!(
        layout::compacted(&t.model, Xfeatures::from_bits_retain(NORMAL)).size,
        2448
    );
}

#[test]
fn xsaves_of_a_guest_fpstate_writes_cet_s() {
    // SDM2 XSAVES: RFBM = (XCR0 | IA32_XSS) AND EDX:EAX includes CET_S: its 24 bytes
    // at 2448, XSTATE_BV[12] = 1 (in use), XCOMP_BV = RFBM | 2^63.
    for model in ["zen5", "sapphire-rapids"] {
        let ssp = [0x7FFF_FFFF_F000, 0x7FFF_FFFF_E008, 0xFFFF_8000_0000_1004];
        let mut t = guest(model, ssp);
        t.rfbm(GUEST).code(|a| a.xsaves64(ptr(rbx)));
        let o = t.predict();
        assert_eq!(o.fault, None, "{model}");
        for (k, v) in ssp.iter().enumerate() {
            assert_eq!(u64_at(&o.memory, 2448 + 8 * k), *v, "{model} PL{k}_SSP");
        }
        assert_eq!(u64_at(&o.memory, 512), 1 << 12, "{model}");
        assert_eq!(u64_at(&o.memory, 520), CMP | GUEST, "{model}");
        assert_eq!(mem(&o, 2432, 16), &[0xAA; 16][..], "{model}: CET_U in init");
        let mut sup = vec![0u8; 16];
        for v in ssp {
            sup.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            o.supervisor, sup,
            "{model}: supervisor state after the case"
        );
    }
}

#[test]
fn xsaves_of_a_normal_fpstate_leaves_cet_s_out() {
    // The same CPU state saved without CET_S in RFBM (a normal fpstate): XCOMP_BV[12]
    // = 0, XSTATE_BV[12] = 0, and the 24 bytes after the 2448-byte area untouched.
    for model in ["zen5", "sapphire-rapids"] {
        let mut t = guest(model, [0x1000, 0x2000, 0x3000]);
        t.rfbm(NORMAL).code(|a| a.xsaves64(ptr(rbx)));
        let o = t.predict();
        assert_eq!(o.fault, None, "{model}");
        assert_eq!(u64_at(&o.memory, 520), CMP | NORMAL, "{model}");
        assert_eq!(u64_at(&o.memory, 512) & 1 << 12, 0, "{model}");
        assert_eq!(mem(&o, 2448, 24), &[0xAA; 24][..], "{model}");
    }
}

#[test]
fn xsaves_init_optimization_on_cet_s() {
    // SDM1 §13.11: with PL0..2_SSP all zero (XSTATE_BV[12] = 0 in the image, so
    // XINUSE[12] = 0) XSAVES writes XSTATE_BV[12] = 0 and not the 24 bytes; with one
    // SSP non-zero it writes all 24.
    for model in ["zen5", "sapphire-rapids"] {
        let mut t = guest(model, [0, 0, 0]);
        t.rfbm(GUEST).code(|a| a.xsaves64(ptr(rbx)));
        let o = t.predict();
        assert_eq!(u64_at(&o.memory, 512), 0, "{model}");
        assert_eq!(u64_at(&o.memory, 520), CMP | GUEST, "{model}");
        assert_eq!(mem(&o, 2448, 24), &[0xAA; 24][..], "{model}");
        let mut t = guest(model, [0, 0, 0x8]);
        t.rfbm(GUEST).code(|a| a.xsaves64(ptr(rbx)));
        let o = t.predict();
        assert_eq!(u64_at(&o.memory, 512), 1 << 12, "{model}");
        assert_eq!(mem(&o, 2448, 16), &[0u8; 16][..], "{model}");
        assert_eq!(u64_at(&o.memory, 2464), 8, "{model}");
    }
}

#[test]
fn xsaves_then_xrstors_restores_cet_s() {
    // SDM1 §13.12: XRSTORS of what XSAVES wrote restores the SSPs (after FORCE_INIT
    // by a first XRSTORS with XSTATE_BV = 0 from another area).
    let ssp = [0x1000, 0x7FFF_0000_0008, 0xFFFF_FFFF_FFFF_F000];
    let mut t = guest("zen5", ssp);
    // XSAVES does not write header bytes 16..63: they must be zero for XRSTORS.
    t.put(528, &[0u8; 48])
        .put_u64(0x1000 + 24, 0x1F80)
        .put_u64(0x1000 + 512, 0)
        .put_u64(0x1000 + 520, CMP | GUEST)
        .put(0x1000 + 528, &[0u8; 48]);
    t.rfbm(GUEST).code(|a| {
        a.xsaves64(ptr(rbx))?;
        a.xrstors64(ptr(rbx + 0x1000))?;
        a.xrstors64(ptr(rbx))
    });
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(&o.supervisor[16..], &t.predict().supervisor[16..]);
    let want: Vec<u8> = ssp.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(&o.supervisor[16..], &want[..]);
    // Without the last XRSTORS, CET_S is in its init configuration.
    t.code(|a| {
        a.xsaves64(ptr(rbx))?;
        a.xrstors64(ptr(rbx + 0x1000))
    });
    assert_eq!(&t.predict().supervisor[16..], &[0u8; 24][..]);
}

#[test]
fn xsaves_modified_optimization_skips_unmodified_cet_s() {
    // SDM1 §13.11: after XRSTORS from the same address with XCOMP_BV = RFBM | 2^63,
    // XSAVES skips components not modified since (CET_S here); XSTATE_BV still
    // reports it in use.
    let mut t = guest("zen5", [0x1000, 0x2000, 0x3000]);
    t.put_u64(24, 0x1F80)
        .put_u64(512, 1 << 12)
        .put_u64(520, CMP | GUEST)
        .put(528, &[0u8; 48])
        .put_u64(2448, 0x1000)
        .put_u64(2456, 0x2000)
        .put_u64(2464, 0x3000);
    t.case.gprs[1] = 0x5555;
    t.rfbm(GUEST).code(|a| {
        a.xrstors64(ptr(rbx))?;
        a.mov(qword_ptr(rbx + 2448), rcx)?;
        a.xsaves64(ptr(rbx))
    });
    let o = t.predict();
    assert_eq!(o.fault, None);
    assert_eq!(u64_at(&o.memory, 2448), 0x5555, "CET_S not written again");
    assert_eq!(u64_at(&o.memory, 512), 1 << 12);
}

#[test]
fn xsaves_and_xrstors_need_cpl0_on_both_cet_models() {
    // SDM2 XSAVES/XRSTORS: #GP(0) at CPL 3.
    for model in ["zen5", "sapphire-rapids"] {
        let mut t = T::user(model);
        t.rfbm(GUEST).code(|a| a.xsaves64(ptr(rbx)));
        assert_eq!(t.fault(), Some(Fault::Gp(0)), "{model}");
        t.code(|a| a.xrstors64(ptr(rbx)));
        assert_eq!(t.fault(), Some(Fault::Gp(0)), "{model}");
    }
}

#[test]
fn xsave_and_xsavec_never_touch_supervisor_components() {
    // SDM1 §13.2: supervisor components are managed only by XSAVES/XRSTORS; XSAVEC's
    // RFBM is XCR0 AND EDX:EAX (CET_S not in XCR0): XCOMP_BV[12] = 0.
    let mut t = guest("zen5", [0x1000, 0, 0]);
    t.rfbm(!0).code(|a| a.xsavec64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(u64_at(&o.memory, 520), CMP | 0xe7);
    assert_eq!(mem(&o, 2432, 40), &[0xAA; 40][..]);
}
