//! XRSTORS (SDM2 XRSTORS; SDM1 §13.12): CPL 0 only; compacted form required;
//! RFBM := (XCR0 OR IA32_XSS) AND EDX:EAX; XCOMP_BV checked against XCR0 | IA32_XSS
//! (SDM1's wording; SDM2's "XCR0" is a slip, reference D2); supervisor values are
//! checked as WRMSR would check them.

use crate::area::read_header;
use crate::fault::Fault;
use crate::machine::{Machine, Operand};
use crate::rules;

pub fn xrstors(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsaves, &rules::XSAVES_UD_NOT_ADVERTISED)?;
    if m.ctl.cpl != 0 {
        return Err(m.raise(&rules::XSAVES_GP_CPL, Fault::gp0()));
    }
    m.check_area(op, 64)?;
    m.note_region(op.addr, crate::layout::EXTENDED_START as u64, false);
    let h = read_header(m, op.addr)?;
    // #GP: XCOMP_BV[63] = 0 (XRSTORS has no standard form).
    if h.xcomp_bv >> 63 == 0 {
        return Err(m.raise(&rules::XRSTORS_GP_STANDARD_FORM, Fault::gp0()));
    }
    let allowed = m.ctl.xcr0 | m.ctl.xss;
    let rfbm = allowed & m.edx_eax();
    crate::xrstor_compacted::restore_compacted(m, op, &h, rfbm, allowed, false)
}
