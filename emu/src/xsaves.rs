//! XSAVES (SDM2 XSAVES; SDM1 §13.11): CPL 0 only; RFBM := (XCR0 OR IA32_XSS) AND
//! EDX:EAX; compacted format; init and modified optimizations (the latter when
//! XRSTOR_INFO = <CPL, VMX mode, linear address, RFBM OR 2^63>). SSE is saved
//! whenever MXCSR != 1F80H, applied after the modified optimization.

use crate::exec::{Machine, Operand, Policy};
use crate::fault::Fault;
use crate::state::MXCSR_INIT;
use crate::xsavec::{compacted_in_use, compacted_latitude, compacted_writes};

pub fn xsaves(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsaves)?;
    if m.ctl.cpl != 0 {
        return Err(Fault::gp0());
    }
    m.check_area(op, 64)?;
    let rfbm = (m.ctl.xcr0 | m.ctl.xss) & m.edx_eax();
    crate::xsavec::compacted_region(m, op.addr, rfbm)?;
    let compmask = rfbm | 1 << 63;
    let header = compacted_in_use(m, rfbm);
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
    compacted_writes(m, &mut w, op.addr, rfbm, to_be_saved, op.rex_w);
    w.put_u64(op.addr.wrapping_add(512), header);
    w.put_u64(op.addr.wrapping_add(520), compmask);
    if rfbm & 1 != 0 {
        crate::legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    if m.policy == Policy::Architectural {
        let modified = if info_match { m.st.xmodified } else { !0 };
        let must = ((m.st.not_init(rfbm) & modified) | (to_be_saved & 2)) & !m.ctl.xfd_armed();
        compacted_latitude(m, op.addr, rfbm, op.rex_w, must);
    }
    w.commit_save(m, op.addr, rfbm)
}
