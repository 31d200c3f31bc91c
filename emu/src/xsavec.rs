//! XSAVEC (SDM2 XSAVEC; SDM1 §13.10): compacted format for RFBM, init
//! optimization only. SSE (XMM, MXCSR, MXCSR_MASK) is saved when RFBM[1] = 1 and
//! (XINUSE[1] = 1 or MXCSR != 1F80H); RFBM[2] alone does not save MXCSR.
//! XSTATE_BV := what was saved; XCOMP_BV := RFBM OR 2^63. XSTATE_BV is not read.

use crate::fault::Fault;
use crate::machine::{Machine, Operand};
use crate::rules;
use crate::save::{compacted_in_use, compacted_region, compacted_writes, coupled_latitude, Format};

pub fn xsavec(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsavec, &rules::XSAVEC_UD_NOT_ADVERTISED)?;
    m.check_area(op, 64)?;
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    compacted_region(m, op.addr, rfbm)?;
    // TO_BE_SAVED := RFBM AND XINUSE, SSE also when MXCSR != 1F80H.
    let to_be_saved = compacted_in_use(m, rfbm);
    let mut w = m.writes();
    w.by(&rules::XSAVEC_SAVES_IN_USE);
    compacted_writes(m, &mut w, op.addr, rfbm, to_be_saved, op.rex_w);
    w.by(&rules::XSAVEC_HEADER);
    w.put_u64(op.addr.wrapping_add(512), to_be_saved);
    w.put_u64(op.addr.wrapping_add(520), rfbm | 1 << 63);
    if rfbm & 1 != 0 {
        crate::legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    coupled_latitude(
        m,
        op.addr,
        rfbm,
        op.rex_w,
        Format::Compacted,
        false,
        &rules::XSAVEC_SAVES_IN_USE,
        &rules::XSAVEC_HEADER,
    );
    let r = w.commit_save(m, op.addr, rfbm, !0);
    m.recycle_writes(w);
    r
}
