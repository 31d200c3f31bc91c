//! XSAVEOPT (SDM2 XSAVEOPT; SDM1 §13.9): XSAVE with the init optimization and the
//! modified optimization (only after a standard-form XRSTOR from the same linear
//! address at the same CPL and VMX mode). MXCSR is saved whenever RFBM[1] or
//! RFBM[2] is set.

use crate::fault::Fault;
use crate::machine::{Machine, Operand};
use crate::rules;
use crate::save::{coupled_latitude, standard_writes, xinuse_for_xstate_bv, Format};
use crate::Xfeatures;

pub fn xsaveopt(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(m.model.xsaveopt, &rules::XSAVEOPT_UD_NOT_ADVERTISED)?;
    m.check_area(op, 64)?;
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    let end = crate::layout::standard_region_end(
        m.model,
        Xfeatures::from_bits_retain(rfbm),
        Xfeatures::from_bits_retain(m.ctl.xfd_armed()),
    );
    m.probe_first_byte(op.addr, true)?;
    m.access_region(op.addr, end as u64, true)?;
    let inuse = xinuse_for_xstate_bv(m, rfbm);
    let mut to_be_saved = inuse;
    let info_match = m.st.xrstor_info.is_some_and(|i| {
        i.cpl == m.ctl.cpl
            && i.vmx_nonroot == m.ctl.vmx_nonroot
            && i.laddr == op.addr
            && i.xcomp_bv == 0
    });
    if info_match {
        to_be_saved &= m.st.xmodified;
    }
    let old = crate::area::read_header_qword(m, op.addr);
    let mut w = m.writes();
    w.by(&rules::XSAVEOPT_SAVES_IN_USE);
    standard_writes(m, &mut w, op.addr, to_be_saved, op.rex_w, rfbm & 0b110 != 0);
    w.by(&rules::XSAVE_HEADER_RMW)
        .put_u64(op.addr.wrapping_add(512), (old & !rfbm) | inuse);
    if rfbm & 1 != 0 {
        crate::legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    coupled_latitude(
        m,
        op.addr,
        rfbm,
        op.rex_w,
        Format::Standard,
        info_match,
        &rules::XSAVEOPT_SAVES_IN_USE,
        &rules::XSAVE_HEADER_RMW,
    );
    let r = w.commit_save(m, op.addr, rfbm, rfbm);
    m.recycle_writes(w);
    r
}
