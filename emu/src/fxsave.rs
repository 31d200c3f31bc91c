//! FXSAVE (SDM2 FXSAVE): the 512-byte legacy region, 16-byte aligned; x87 in
//! the form REX.W selects, MXCSR and MXCSR_MASK, XMM0..15 (CR4.OSFXSR = 1).
//! Bytes 160+256..511 are not written. Independent of XCR0 and CR4.OSXSAVE.

use crate::exec::{Machine, Operand};
use crate::fault::Fault;
use crate::legacy;

/// #UD without FXSR; #NM if CR0.TS or CR0.EM.
pub fn fx_gate(m: &Machine) -> Result<(), Fault> {
    if !m.model.fxsr {
        return Err(Fault::Ud);
    }
    if m.ctl.cr0_ts || m.ctl.cr0_em {
        return Err(Fault::Nm);
    }
    Ok(())
}

pub fn fxsave(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    fx_gate(m)?;
    m.check_area(op, 16)?;
    m.access_region(op.addr, 512, true)?;
    let mut w = m.writes();
    let b = legacy::x87_bytes(m, op.rex_w);
    w.put(op.addr, &b[0..24]);
    w.put(op.addr.wrapping_add(32), &b[32..160]);
    if m.ctl.cr4_osfxsr {
        w.put(op.addr.wrapping_add(24), &legacy::mxcsr_bytes(m));
        w.put(op.addr.wrapping_add(160), &legacy::xmm_bytes(m));
    }
    legacy::x87_latitude(m, op.addr, op.rex_w);
    w.commit_save(m, op.addr, 1)
}
