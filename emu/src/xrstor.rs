//! XRSTOR (SDM2 XRSTOR; SDM1 §13.8), standard form (XCOMP_BV[63] = 0). The
//! compacted form is in `xrstor_compacted.rs`.
//!
//! Order of checks (reference §5.2): #UD, #NM (CR0.TS), canonical/alignment
//! (#GP, or #AC with alignment checking), #PF on the header, (Intel,
//! `pf-last-byte`) #PF on the last byte of the region, header #GP, XFD #NM,
//! #PF on the components, MXCSR #GP; nothing is changed before every check has
//! passed (the standard form checks MXCSR first on Intel silicon too).
//!
//! The region is that of every RFBM component, XFD-armed ones included in
//! full, and a #PF on any of its bytes may come before the header #GP (SDM
//! silent on the order, reference §5.2 items 5 and 7), so the envelope notes it
//! as soon as the header is read. Intel silicon probes its last byte right
//! after reading the header, before any header #GP and before XFD's #NM
//! (corpus/silicon/xrstor-*-probe-*.case).

use crate::area::{check_read, check_read_slots, read_header, read_u32, Header};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::machine::{Machine, Operand};
use crate::restore::{commit_extended, legacy_part, probe_legacy};
use crate::rules;
use crate::Xfeatures;

pub fn xrstor(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(true, &rules::XSAVE_UD_DISABLED)?;
    m.check_area(op, 64)?;
    m.note_region(op.addr, layout::EXTENDED_START as u64, false);
    m.probe_first_byte(op.addr, false)?;
    let h = read_header(m, op.addr)?;
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    if h.xcomp_bv >> 63 == 1 && m.model.xsavec {
        let bv63_gp = m.quirks().xrstor_compacted_xstate_bv_63_gp;
        return crate::xrstor_compacted::restore_compacted(m, op, &h, rfbm, m.ctl.xcr0, bv63_gp);
    }
    restore_standard(m, op, rfbm, &h)
}

fn restore_standard(m: &mut Machine, op: &Operand, rfbm: u64, h: &Header) -> Result<(), Fault> {
    // The region: every RFBM component in the standard format, XFD-armed ones
    // included (Intel host: XRSTOR with RFBM = TILEDATA, armed, XSTATE_BV = 0 and
    // one arena page faults at base + 2AFFH, TILEDATA's last byte; with a header
    // #GP or XSTATE_BV[18] = 1 (#NM) likewise).
    let end = layout::standard_end(m.model, Xfeatures::from_bits_retain(rfbm));
    // The region is noted first (the envelope admits a #PF on any of its bytes
    // whichever order a model probes in).
    m.note_region(op.addr, end as u64, false);
    // Every read below lies in the region: when all of it can be read (one
    // page walk), none of them faults and their checks are skipped.
    let readable = m.read_check(op.addr, end as u64).is_ok();
    let probe = |m: &mut Machine| {
        if readable {
            return Ok(());
        }
        m.probe_last_byte(op.addr, end as u64, false)?;
        probe_legacy(m, op.addr, rfbm)
    };
    let header_first = m.quirks().xrstor_header_checks_first;
    if !header_first {
        probe(m)?;
    }
    if h.xcomp_bv >> 63 == 1 {
        // XCOMP_BV[63] = 1 without compaction support (SDM2 XRSTOR; SDM1 §13.8
        // footnote: such a CPU reads XCOMP_BV as the standard form would, and
        // bytes 15:8 != 0 is #GP(0) there too).
        return Err(m.raise(&rules::XRSTOR_GP_COMPACTED_UNSUPPORTED, Fault::gp0()));
    }
    let xstate_bv = h.xstate_bv;
    // #GP: XSTATE_BV sets a bit not in XCR0 (bit 63 included).
    if xstate_bv & !m.ctl.xcr0 != 0 {
        return Err(m.raise(&rules::XRSTOR_GP_XSTATE_BV_NOT_IN_XCR0, Fault::gp0()));
    }
    // #GP: header bytes 15:8 (XCOMP_BV) or 23:16 not zero; 63:24 are not checked
    // (SDM1 §13.8.1 footnote).
    if h.xcomp_bv != 0 || h.rest[0] != 0 {
        return Err(m.raise(&rules::XRSTOR_GP_HEADER_BYTES_23_8, Fault::gp0()));
    }
    if header_first {
        probe(m)?;
    }
    let to_restore = rfbm & xstate_bv;
    let to_init = rfbm & !xstate_bv;
    // XFD: loading an armed component from memory is #NM (SDM1 §13.14); with
    // XSTATE_BV[i] = 0 it is initialized as usual.
    if to_restore & m.ctl.xfd_armed() != 0 {
        return Err(m.raise(&rules::XRSTOR_NM_XFD, Fault::Nm));
    }
    let base = op.addr;
    let ext = || layout::standard_slots(m.model, Xfeatures::from_bits_retain(to_restore));
    if !readable {
        if to_restore & 1 != 0 {
            check_read(m, base, 160)?;
        }
        if rfbm & 0b110 != 0 {
            check_read(m, base.wrapping_add(24), 4)?;
        }
        if to_restore & 2 != 0 {
            check_read(m, base.wrapping_add(160), 256)?;
        }
        check_read_slots(m, base, ext)?;
    }
    // x87 and XMM0..15 come from the area when they are restored; MXCSR is
    // loaded when RFBM[1] or RFBM[2] is set, whatever XSTATE_BV says.
    let load = to_restore & 0b11;
    let mxcsr = (rfbm & 0b110 != 0).then(|| read_u32(m, base.wrapping_add(24)));
    let load_legacy = |m: &mut Machine| legacy_part(m, base, op.rex_w, to_init, load, false);
    if let Some(v) = mxcsr {
        if let Err(f) = legacy::check_mxcsr(m, v, &rules::XRSTOR_GP_MXCSR_RESERVED) {
            // The SDM is silent on partial user state before this #GP (reference S2):
            // the envelope admits x87 and XMM already loaded or initialized.
            m.alternative(load_legacy);
            return Err(f);
        }
    }
    // Commit.
    m.set_by(rfbm & 3, &rules::XRSTOR_LOADS_STANDARD);
    load_legacy(m);
    if let Some(v) = mxcsr {
        m.st.mxcsr = v;
        m.mxcsr_by(&rules::XRSTOR_MXCSR_STANDARD);
    }
    m.set_by(rfbm & !3, &rules::XRSTOR_LOADS_STANDARD);
    let model = m.model;
    let ext = layout::standard_slots(model, Xfeatures::from_bits_retain(to_restore));
    commit_extended(m, op, rfbm, to_restore, to_init, base, ext, 0);
    Ok(())
}
