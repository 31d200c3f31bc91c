//! XSAVEC (SDM2 XSAVEC; SDM1 §13.10): compacted format for RFBM, init
//! optimization only. SSE (XMM, MXCSR, MXCSR_MASK) is saved when RFBM[1] = 1 and
//! (XINUSE[1] = 1 or MXCSR != 1F80H); RFBM[2] alone does not save MXCSR.
//! XSTATE_BV := what was saved; XCOMP_BV := RFBM OR 2^63. XSTATE_BV is not read.

use crate::area::Writes;
use crate::exec::{Machine, Operand, Policy};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::state::MXCSR_INIT;
use crate::Xfeatures;

/// Collects compacted-format writes: the components in `save`, at offsets laid
/// out by `rfbm`.
pub fn compacted_writes(m: &Machine, w: &mut Writes, base: u64, rfbm: u64, save: u64, rex_w: bool) {
    if save & 1 != 0 {
        let b = legacy::x87_bytes(m, rex_w);
        w.put(base, &b[0..24]);
        w.put(base.wrapping_add(32), &b[32..160]);
    }
    if save & 2 != 0 {
        w.put(base.wrapping_add(24), &legacy::mxcsr_bytes(m));
        w.put(base.wrapping_add(160), &legacy::xmm_bytes(m));
    }
    for s in layout::compacted_slots(m.model, Xfeatures::from_bits_retain(rfbm)) {
        if save & (1 << s.index) != 0 {
            w.put_comp(&m.st, base.wrapping_add(s.offset as u64), s.index);
        }
    }
}

/// XINUSE AND RFBM with the MXCSR rule of XSAVEC/XSAVES: bit 1 is set when
/// RFBM[1] = 1 and MXCSR != 1F80H. XFD-armed components count as not in use.
pub fn compacted_in_use(m: &Machine, rfbm: u64) -> u64 {
    let mut v = m.st.xinuse & rfbm & !m.ctl.xfd_armed();
    if rfbm & 2 != 0 && m.st.mxcsr != MXCSR_INIT {
        v |= 2;
    }
    v
}

/// Envelope for a compacted save: components in init configuration may be
/// written (with their init values) or skipped, and their XSTATE_BV bit may be
/// either value.
pub fn compacted_latitude(m: &mut Machine, base: u64, rfbm: u64, rex_w: bool, must: u64) {
    let mut free = rfbm & !m.st.not_init(rfbm) & !m.ctl.xfd_armed();
    if m.st.mxcsr != MXCSR_INIT {
        free &= !2;
    }
    let optional = rfbm & !must & !m.ctl.xfd_armed();
    let mut all = Writes::default();
    compacted_writes(m, &mut all, base, rfbm, optional, rex_w);
    let Machine { st, mem, lat, .. } = m;
    all.for_each(st, |a, b| lat.alt_or_old(mem, a, b));
    m.lat.header_bits(base.wrapping_add(512), free);
}

/// The region a compacted save operates on: the layout of RFBM, XFD-armed
/// components (skipped, SDM1 §13.14) counting up to where they start.
pub fn compacted_region(m: &mut Machine, base: u64, rfbm: u64) -> Result<(), Fault> {
    let end = layout::compacted_region_end(
        m.model,
        Xfeatures::from_bits_retain(rfbm),
        Xfeatures::from_bits_retain(rfbm),
        Xfeatures::from_bits_retain(m.ctl.xfd_armed()),
    );
    m.probe_first_byte(base, true)?;
    m.access_region(base, end as u64, true)
}

pub fn xsavec(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsavec)?;
    m.check_area(op, 64)?;
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    compacted_region(m, op.addr, rfbm)?;
    let to_be_saved = compacted_in_use(m, rfbm);
    let mut w = m.writes();
    compacted_writes(m, &mut w, op.addr, rfbm, to_be_saved, op.rex_w);
    w.put_u64(op.addr.wrapping_add(512), to_be_saved);
    w.put_u64(op.addr.wrapping_add(520), rfbm | 1 << 63);
    if rfbm & 1 != 0 {
        legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    if m.policy == Policy::Architectural {
        let must = (m.st.not_init(rfbm) | (to_be_saved & 2)) & !m.ctl.xfd_armed();
        compacted_latitude(m, op.addr, rfbm, op.rex_w, must);
    }
    w.commit_save(m, op.addr, rfbm)
}
