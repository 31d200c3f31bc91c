//! XRSTORS (SDM2 XRSTORS; SDM1 §13.12): CPL 0 only; compacted form required;
//! RFBM := (XCR0 OR IA32_XSS) AND EDX:EAX; XCOMP_BV checked against XCR0 | IA32_XSS
//! (SDM1's wording; SDM2's "XCR0" is a slip, reference D2); supervisor values are
//! checked as WRMSR would check them.

use crate::area::read_header;
use crate::exec::{Machine, Operand};
use crate::fault::Fault;

pub fn xrstors(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsaves)?;
    if m.ctl.cpl != 0 {
        return Err(Fault::gp0());
    }
    m.check_area(op, 64)?;
    m.note_region(op.addr, crate::layout::EXTENDED_START as u64, false);
    let h = read_header(m, op.addr)?;
    // #GP: XCOMP_BV[63] = 0 (XRSTORS has no standard form).
    if h.xcomp_bv >> 63 == 0 {
        return Err(Fault::gp0());
    }
    let allowed = m.ctl.xcr0 | m.ctl.xss;
    let rfbm = allowed & m.edx_eax();
    crate::xrstor_compacted::restore_compacted(m, op, &h, rfbm, allowed, false)
}

fn canonical48(v: u64) -> bool {
    ((v << 16) as i64 >> 16) as u64 == v
}

/// #GP(0) for a supervisor component value that WRMSR would refuse (SDM1 §13.12,
/// reference §6.1): IA32_U_CET reserved bits 9:6, SUPPRESS and TRACKER both set,
/// a non-canonical legacy-bitmap base; IA32_PLi_SSP non-canonical or bits 1:0 set.
pub fn check_supervisor_value(m: &Machine, i: usize, b: &[u8]) -> Result<(), Fault> {
    // A component shorter than the qword asked for reads as zero there.
    let q = |k: usize| {
        b.get(8 * k..8 * k + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let canon = |v: u64| {
        if m.model.la57 {
            ((v << 7) as i64 >> 7) as u64 == v
        } else {
            canonical48(v)
        }
    };
    let ssp_ok = |v: u64| canon(v) && v & 3 == 0;
    match i {
        11 => {
            let u_cet = q(0);
            let bad = u_cet & 0x3C0 != 0
                || (u_cet & (1 << 10) != 0 && u_cet & (1 << 11) != 0)
                || !canon(u_cet & !0xFFF);
            if bad || !ssp_ok(q(1)) {
                return Err(Fault::gp0());
            }
        }
        12 if !(0..3).all(|k| ssp_ok(q(k))) => return Err(Fault::gp0()),
        _ => {}
    }
    Ok(())
}
