//! XSAVES (SDM2 XSAVES; SDM1 §13.11): CPL 0 only; RFBM := (XCR0 OR IA32_XSS) AND
//! EDX:EAX; compacted format; init and modified optimizations (the latter when
//! XRSTOR_INFO = <CPL, VMX mode, linear address, RFBM OR 2^63>). SSE is saved
//! whenever MXCSR != 1F80H, applied after the modified optimization.
//! XSTATE_BV := NEW_HEADER = RFBM AND XINUSE (not TO_BE_SAVED: a component the
//! modified optimization skips keeps its bit).

use crate::fault::Fault;
use crate::machine::{Machine, Operand};
use crate::rules;
use crate::save::{compacted_in_use, compacted_region, compacted_writes, coupled_latitude, Format};
use crate::state::MXCSR_INIT;

pub fn xsaves(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsaves, &rules::XSAVES_UD_NOT_ADVERTISED)?;
    if m.ctl.cpl != 0 {
        return Err(m.raise(&rules::XSAVES_GP_CPL, Fault::gp0()));
    }
    m.check_area(op, 64)?;
    let rfbm = (m.ctl.xcr0 | m.ctl.xss) & m.edx_eax();
    compacted_region(m, op.addr, rfbm)?;
    let compmask = rfbm | 1 << 63;
    let new_header = compacted_in_use(m, rfbm);
    let mut to_be_saved = m.st.xinuse & rfbm & !m.ctl.xfd_armed();
    let info_match = m.st.xrstor_info.is_some_and(|i| {
        i.cpl == m.ctl.cpl
            && i.vmx_nonroot == m.ctl.vmx_nonroot
            && i.laddr == op.addr
            && i.xcomp_bv == compmask
    });
    if info_match {
        to_be_saved &= m.st.xmodified;
    }
    if rfbm & 2 != 0 && m.st.mxcsr != MXCSR_INIT {
        to_be_saved |= 2;
    }
    let mut w = m.writes();
    w.by(&rules::XSAVES_SAVES_IN_USE);
    compacted_writes(m, &mut w, op.addr, rfbm, to_be_saved, op.rex_w);
    w.by(&rules::XSAVES_HEADER);
    w.put_u64(op.addr.wrapping_add(512), new_header);
    w.put_u64(op.addr.wrapping_add(520), compmask);
    if rfbm & 1 != 0 {
        crate::legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    coupled_latitude(
        m,
        op.addr,
        rfbm,
        op.rex_w,
        Format::Compacted,
        info_match,
        &rules::XSAVES_SAVES_IN_USE,
        &rules::XSAVES_HEADER,
    );
    let r = w.commit_save(m, op.addr, rfbm, !0);
    m.recycle_writes(w);
    r
}
