//! FXSAVE (SDM2 FXSAVE): the 512-byte legacy region, 16-byte aligned; x87 in
//! the form REX.W selects, MXCSR and MXCSR_MASK, XMM0..15 (CR4.OSFXSR = 1).
//! Bytes 160+256..511 are not written. Independent of XCR0 and CR4.OSXSAVE.

use crate::fault::Fault;
use crate::legacy;
use crate::machine::{Machine, Operand};
use crate::rules;

/// #UD without FXSR; #NM if CR0.TS or CR0.EM.
pub fn fx_gate(m: &Machine) -> Result<(), Fault> {
    if !m.model.fxsr {
        return Err(m.raise(&rules::FXSAVE_UD_NO_FXSR, Fault::Ud));
    }
    if m.ctl.cr0_ts || m.ctl.cr0_em {
        return Err(m.raise(&rules::FXSAVE_NM_TS_EM, Fault::Nm));
    }
    Ok(())
}

pub fn fxsave(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    fx_gate(m)?;
    m.check_area(op, 16)?;
    m.access_region(op.addr, 512, true)?;
    let mut w = m.writes();
    crate::save::x87_writes(m, &mut w, op.addr, op.rex_w);
    w.by(&rules::FXSAVE_SAVES_LEGACY);
    if m.ctl.cr4_osfxsr {
        let b = legacy::mxcsr_bytes(m);
        w.put(op.addr.wrapping_add(24), &b[0..4]);
        w.put_with(&rules::SAVE_MXCSR_MASK, op.addr.wrapping_add(28), &b[4..8]);
        w.put_xmm(op.addr.wrapping_add(160));
    }
    legacy::x87_latitude(m, op.addr, op.rex_w);
    let r = w.commit_save(m, op.addr, 1, 0);
    m.recycle_writes(w);
    r
}
