//! The legacy region (bytes 0..511, the FXSAVE format): x87 state in its 32-bit
//! and 64-bit forms, MXCSR and MXCSR_MASK, XMM registers (SDM2 FXSAVE tables
//! 3-53, 3-56; SDM1 §13.5.1, §13.5.2).

use crate::fault::Fault;
use crate::latitude;
use crate::machine::Machine;
use crate::model::CpuModel;
use crate::rules::Rule;
use crate::state::X87;

/// Bytes 0..160 of the x87 part into `b`, 160 zero bytes (bytes 24..31,
/// MXCSR, are left as zero here). Written in place: a copy of bytes just
/// stored piecemeal stalls on store forwarding.
pub fn x87_image(m: &Machine, rex_w: bool, b: &mut [u8]) {
    let x = &m.st.x87;
    let q = m.quirks();
    b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&x.fsw.to_le_bytes());
    b[4] = x.ftw;
    // byte 5 is reserved and written as 0.
    b[6..8].copy_from_slice(&x.fop.to_le_bytes());
    if rex_w {
        // Quirks fip-canonical-57, fdp-canonical-57: bits 63..57 copy bit 56.
        let canonical_57 = |v: u64, on: bool| if on { ((v << 7) as i64 >> 7) as u64 } else { v };
        b[8..16].copy_from_slice(&canonical_57(x.fip, q.fip_canonical_57).to_le_bytes());
        b[16..24].copy_from_slice(&canonical_57(x.fdp, q.fdp_canonical_57).to_le_bytes());
    } else {
        let dep = m.model.fcs_fds_deprecated;
        b[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        b[12..14].copy_from_slice(&(if dep { 0 } else { x.fcs }).to_le_bytes());
        b[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        b[20..22].copy_from_slice(&(if dep { 0 } else { x.fds }).to_le_bytes());
    }
    for (k, r) in x.st.iter().enumerate() {
        b[32 + 16 * k..32 + 16 * k + 10].copy_from_slice(r);
    }
}

/// Loads the x87 part from an image's bytes 0..160.
pub fn load_x87(m: &mut Machine, b: &[u8], rex_w: bool) {
    x87_into(m.model, b, rex_w, &mut m.st.x87);
    loaded_x87(m);
}

/// [`load_x87`] from the 160 bytes at `addr`, already checked readable.
pub fn load_x87_at(m: &mut Machine, addr: u64, rex_w: bool) {
    let (image, Machine { st, mem, model, .. }) = (m.image(), &mut *m);
    let b = crate::machine::read_source(image, mem, addr, 160);
    x87_into(model, &b, rex_w, &mut st.x87);
    loaded_x87(m);
}

fn loaded_x87(m: &mut Machine) {
    if m.policy == crate::machine::Policy::Architectural {
        m.lat.fsw_es_b = true;
    }
}

/// Sets `x` to the x87 state an image's bytes 0..160 load on `model`
/// (field by field in place: a state built aside and copied in stalls on
/// store forwarding).
fn x87_into(model: &CpuModel, b: &[u8], rex_w: bool, x: &mut X87) {
    let q = model.quirks;
    // FCW bits 7 and 15:13 are reserved and read 0, bit 6 reads 1 (seen on the Intel
    // host: FFFFH loads as 1F7FH, 0000H as 0040H; Bochs masks the same way).
    x.fcw = (u16::from_le_bytes([b[0], b[1]]) & !0xE0C0) | 0x0040;
    x.fsw = u16::from_le_bytes([b[2], b[3]]);
    x.ftw = b[4];
    // FOP is 11 bits; bits 15:11 of the image are reserved and read back as 0
    // (SDM2 FXSAVE table; seen on the Intel host: 0x8c4c loaded, 0x044c saved).
    x.fop = u16::from_le_bytes([b[6], b[7]]) & 0x07FF;
    (x.fcs, x.fds) = (0, 0);
    if rex_w {
        x.fip = u64::from_le_bytes(b[8..16].try_into().unwrap());
        x.fdp = u64::from_le_bytes(b[16..24].try_into().unwrap());
    } else {
        x.fip = u32::from_le_bytes(b[8..12].try_into().unwrap()) as u64;
        x.fdp = u32::from_le_bytes(b[16..20].try_into().unwrap()) as u64;
        if !model.fcs_fds_deprecated {
            x.fcs = u16::from_le_bytes([b[12], b[13]]);
            x.fds = u16::from_le_bytes([b[20], b[21]]);
        }
    }
    if q.fsw_es_recompute {
        let es = (x.fsw & 0x3F & !x.fcw) != 0;
        x.fsw = (x.fsw & !0x8080) | if es { 0x8080 } else { 0 };
    }
    if q.x87_pointers_need_es && (x.fsw & 0x3F & !x.fcw) == 0 {
        (x.fip, x.fdp, x.fop, x.fcs, x.fds) = (0, 0, 0, 0, 0);
    }
    for k in 0..8 {
        x.st[k].copy_from_slice(&b[32 + 16 * k..32 + 16 * k + 10]);
    }
}

pub fn load_xmm(m: &mut Machine, b: &[u8]) {
    m.st.xmm.as_flattened_mut().copy_from_slice(&b[..256]);
}

/// [`load_xmm`] from the 256 bytes at `addr`, already checked readable.
pub fn load_xmm_at(m: &mut Machine, addr: u64) {
    let (image, Machine { st, mem, .. }) = (m.image(), &mut *m);
    let b = crate::machine::read_source(image, mem, addr, 256);
    st.xmm.as_flattened_mut().copy_from_slice(&b);
}

/// MXCSR and MXCSR_MASK, bytes 24..32.
pub fn mxcsr_bytes(m: &Machine) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&m.st.mxcsr.to_le_bytes());
    b[4..8].copy_from_slice(&m.model.mxcsr_mask.to_le_bytes());
    b
}

/// #GP(0) if the MXCSR image sets a bit that MXCSR_MASK says is reserved
/// (the instruction's `rule`).
pub fn check_mxcsr(m: &Machine, v: u32, rule: &'static Rule) -> Result<(), Fault> {
    if v & !m.model.mxcsr_mask != 0 {
        Err(m.raise(rule, Fault::gp0()))
    } else {
        Ok(())
    }
}

/// The envelope around the x87 bytes a save writes at `addr`: FSW.ES and FSW.B
/// may have been recomputed by an earlier load, and the 64-bit form's FIP may be
/// canonicalized (see `envelope::fip_variants`). Only under the architectural
/// policy.
pub fn x87_latitude(m: &mut Machine, addr: u64, rex_w: bool) {
    if m.policy != crate::machine::Policy::Architectural {
        return;
    }
    let x = m.st.x87;
    if m.lat.fsw_es_b {
        // ES (bit 7) and B (bit 15) as loaded or as recomputed: either bit may differ.
        let [lo, hi] = x.fsw.to_le_bytes();
        m.lat
            .alt(addr.wrapping_add(2), &[lo ^ 0x80], &latitude::FSW_ES_B);
        m.lat
            .alt(addr.wrapping_add(3), &[hi ^ 0x80], &latitude::FSW_ES_B);
    }
    if rex_w {
        for v in crate::latitude::fip_variants(x.fip) {
            m.lat.alt(
                addr.wrapping_add(8),
                &v.to_le_bytes(),
                &latitude::FIP_CANONICAL,
            );
        }
    }
}
