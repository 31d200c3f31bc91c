//! XSAVE (SDM2 XSAVE Operation; SDM1 §13.7): every RFBM component, standard format,
//! no optimizations; XSTATE_BV read-modify-written; XCOMP_BV and header bytes
//! 16..63 not written.

use crate::fault::Fault;
use crate::legacy;
use crate::machine::{Machine, Operand, Policy};
use crate::rules;
use crate::save::{standard_writes, xinuse_for_xstate_bv};
use crate::Xfeatures;

pub fn xsave(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(true, &rules::XSAVE_UD_DISABLED)?;
    m.check_area(op, 64)?;
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    // XSAVE writes every RFBM component, XFD-armed ones included. Intel: the
    // region's last byte first, then the writes in the order of
    // `Writes::commit_save` (native cases `xsave64_straddles_into_*`).
    let end = crate::layout::standard_end(m.model, Xfeatures::from_bits_retain(rfbm));
    m.probe_first_byte(op.addr, true)?;
    m.access_region(op.addr, end as u64, true)?;
    let mut w = m.writes();
    // MXCSR and MXCSR_MASK are saved when RFBM[1] or RFBM[2] is set.
    w.by(&rules::XSAVE_SAVES_RFBM);
    standard_writes(m, &mut w, op.addr, rfbm, op.rex_w, rfbm & 0b110 != 0);
    // XSTATE_BV := (old AND NOT RFBM) OR (XINUSE AND RFBM): a read-modify-write,
    // part of the header's write in the order of the commit (an unreadable header
    // is unwritable too, and faults there).
    let old = crate::area::read_header_qword(m, op.addr);
    let inuse = xinuse_for_xstate_bv(m, rfbm);
    w.by(&rules::XSAVE_HEADER_RMW)
        .put_u64(op.addr.wrapping_add(512), (old & !rfbm) | inuse);
    if rfbm & 1 != 0 {
        legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    // XINUSE[i] = 1 is always allowed: an init component may be reported in
    // use. XSAVE writes the component either way, so the bit is free alone
    // (noted after the commit, which ends the freedoms of earlier saves).
    let free = rfbm & !m.st.not_init(rfbm) & !m.ctl.xfd_armed();
    let r = w.commit_save(m, op.addr, rfbm, rfbm);
    m.recycle_writes(w);
    if m.policy == Policy::Architectural {
        m.lat.header_bits(op.addr.wrapping_add(512), free);
    }
    r
}
