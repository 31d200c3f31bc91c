//! XSAVE (SDM2 XSAVE Operation; SDM1 §13.7): every RFBM component, standard format,
//! no optimizations; XSTATE_BV read-modify-written; XCOMP_BV and header bytes
//! 16..63 not written.

use crate::area::Writes;
use crate::exec::{Machine, Operand, Policy};
use crate::fault::Fault;
use crate::legacy;
use crate::Xfeatures;

/// The XINUSE bits an XSAVE/XSAVEOPT writes into XSTATE_BV for `rfbm`:
/// XFD-armed components count as not in use (SDM1 §13.14).
pub fn xinuse_for_xstate_bv(m: &Machine, rfbm: u64) -> u64 {
    m.st.xinuse & rfbm & !m.ctl.xfd_armed()
}

/// Collects the standard-format writes of the components in `save` (the
/// MXCSR pair when `mxcsr` is set), relative to `base`.
pub fn standard_writes(
    m: &Machine,
    w: &mut Writes,
    base: u64,
    save: u64,
    rex_w: bool,
    mxcsr: bool,
) {
    let save = Xfeatures::from_bits_retain(save);
    if save.has(0) {
        let b = legacy::x87_bytes(m, rex_w);
        w.put(base, &b[0..24]);
        w.put(base.wrapping_add(32), &b[32..160]);
    }
    if mxcsr {
        w.put(base.wrapping_add(24), &legacy::mxcsr_bytes(m));
    }
    if save.has(1) {
        w.put(base.wrapping_add(160), &legacy::xmm_bytes(m));
    }
    let armed = m.ctl.xfd_armed();
    for i in save.indices().filter(|&i| i >= 2) {
        let Some(c) = m.model.component(i) else {
            continue;
        };
        if c.supervisor {
            continue;
        }
        if armed & (1 << i) != 0 {
            // An armed component is written in its initial configuration.
            w.put_init(base.wrapping_add(c.offset as u64), i, c.size as usize);
        } else {
            w.put_comp(&m.st, base.wrapping_add(c.offset as u64), i);
        }
    }
}

/// Writes a standard-format save of `rfbm` into a buffer (the runner's capture).
pub fn store_standard(m: &mut Machine, area: &mut [u8], rfbm: u64, rex_w: bool, mxcsr_rule: bool) {
    let mut w = m.writes();
    let mx = mxcsr_rule && rfbm & 0b110 != 0;
    standard_writes(m, &mut w, 0, rfbm, rex_w, mx);
    w.store(&m.st, area);
    m.recycle_writes(w);
}

pub fn xsave(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(true)?;
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
    standard_writes(m, &mut w, op.addr, rfbm, op.rex_w, rfbm & 0b110 != 0);
    // XSTATE_BV := (old AND NOT RFBM) OR (XINUSE AND RFBM): a read-modify-write,
    // part of the header's write in the order of the commit (an unreadable header
    // is unwritable too, and faults there).
    let old = crate::area::read_header_qword(m, op.addr);
    let inuse = xinuse_for_xstate_bv(m, rfbm);
    w.put_u64(op.addr.wrapping_add(512), (old & !rfbm) | inuse);
    if rfbm & 1 != 0 {
        legacy::x87_latitude(m, op.addr, op.rex_w);
    }
    if m.policy == Policy::Architectural {
        // XINUSE[i] = 1 is always allowed: an init component may be reported in use.
        let free = rfbm & !m.st.not_init(rfbm) & !m.ctl.xfd_armed();
        m.lat.header_bits(op.addr.wrapping_add(512), free);
    }
    w.commit_save(m, op.addr, rfbm)
}
