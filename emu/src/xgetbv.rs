//! XGETBV (SDM2 XGETBV): ECX = 0 reads XCR0; ECX = 1 (CPUID.(0DH,1):EAX[2]) reads
//! XCR0 AND XINUSE, with bit 1 set when XCR0[1] = 1 and MXCSR != 1F80H (SDM1
//! §13.6); other ECX #GP(0). RCX[63:32] is ignored; RAX/RDX[63:32] are cleared.

use crate::fault::Fault;
use crate::machine::{Machine, Policy};
use crate::rules;
use crate::state::MXCSR_INIT;

pub fn xgetbv1_value(m: &Machine) -> u64 {
    let mut v = m.ctl.xcr0 & m.st.xinuse;
    if m.ctl.xcr0 & 2 != 0 && m.st.mxcsr != MXCSR_INIT {
        v |= 2;
    }
    v
}

pub fn xgetbv(m: &mut Machine) -> Result<(), Fault> {
    if !m.model.xsave || !m.ctl.cr4_osxsave {
        return Err(m.raise(&rules::XSAVE_UD_DISABLED, Fault::Ud));
    }
    let v = match m.gprs[1] as u32 {
        0 => m.ctl.xcr0,
        1 if m.model.xgetbv1 => xgetbv1_value(m),
        _ => return Err(m.raise(&rules::XGETBV_GP_INVALID_XCR, Fault::gp0())),
    };
    m.gprs[0] = v & 0xFFFF_FFFF;
    m.gprs[2] = v >> 32;
    if m.policy == Policy::Architectural {
        m.prov.gpr(0, &rules::XGETBV_RETURNS_XCR, m.site);
        m.prov.gpr(2, &rules::XGETBV_RETURNS_XCR, m.site);
    }
    if m.gprs[1] as u32 == 1 && m.policy == Policy::Architectural {
        // XINUSE[i] may read 1 for a component in init configuration (SDM1 §13.6).
        let mut free = m.ctl.xcr0 & !m.st.not_init(m.ctl.xcr0);
        if m.st.mxcsr != MXCSR_INIT {
            free &= !2;
        }
        m.lat.gpr_free[0] = free & 0xFFFF_FFFF;
        m.lat.gpr_free[2] = free >> 32;
    } else {
        m.lat.gpr_free[0] = 0;
        m.lat.gpr_free[2] = 0;
    }
    Ok(())
}
