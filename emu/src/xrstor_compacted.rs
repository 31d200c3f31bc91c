//! XRSTOR with XCOMP_BV[63] = 1 (the compacted form, SDM2 XRSTOR; SDM1 §13.8.2),
//! shared with XRSTORS (SDM1 §13.12): components outside XCOMP_BV are initialized
//! even when XSTATE_BV does not say so (FORCE_INIT); SSE init sets MXCSR to
//! 1F80H; MXCSR is loaded only with SSE.

use crate::area::{check_read, check_read_slots, read_u32, Header};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::machine::{Machine, Operand};
use crate::restore::{commit_extended, legacy_part, probe_legacy};
use crate::rules;
use crate::supervisor::{check_supervisor_value, value_checked, VALUE_CHECKED};
use crate::Xfeatures;

/// `allowed` is XCR0 for XRSTOR and XCR0 | IA32_XSS for XRSTORS;
/// `xstate_bv_63_gp`: XSTATE_BV[63] = 1 is #GP(0) (the quirk
/// `xrstor-compacted-xstate-bv-63-gp`, seen for XRSTOR).
///
/// Order: XCOMP_BV[62:0] against `allowed` (#GP), then the region (every RFBM
/// component of the XCOMP_BV layout, XFD-armed ones in full; Intel probes its
/// last byte), then the other header checks, XFD's #NM, the reads. Intel host
/// (`xsdiff record`, TILEDATA armed, one arena page): XCOMP_BV = 2^63 | 600E7H
/// with XSTATE_BV = 0, with XSTATE_BV = 100H (not a subset), with header byte 23
/// set, with XSTATE_BV = 2^63 | 1, with XSTATE_BV = 40000H (#NM otherwise): all
/// #PF at base + 29BFH, TILEDATA's last compacted byte; XCOMP_BV = 2^63 | 1E7H
/// (bit 8 not in XCR0) #GP(0). XRSTORS takes the same path (not measured).
pub fn restore_compacted(
    m: &mut Machine,
    op: &Operand,
    h: &Header,
    rfbm: u64,
    allowed: u64,
    xstate_bv_63_gp: bool,
) -> Result<(), Fault> {
    let format = h.xcomp_bv & !(1 << 63);
    // #GP: XCOMP_BV[62:0] not a subset of what is enabled.
    if format & !allowed != 0 {
        return Err(m.raise(&rules::XRSTOR_GP_XCOMP_BV_NOT_ENABLED, Fault::gp0()));
    }
    let fmt = Xfeatures::from_bits_retain(format);
    let end = layout::compacted_end(m.model, fmt, Xfeatures::from_bits_retain(rfbm));
    m.note_region(op.addr, end as u64, false);
    // Intel probes the legacy bytes of the components this form may load: x87
    // and SSE of RFBM AND XCOMP_BV (outside XCOMP_BV they are initialized).
    // Intel host, page 0 absent, a reserved header byte set, XCOMP_BV =
    // 2^63 | SSE: RFBM = SSE and RFBM = E7H (x87 included) both #PF at base + 24
    // (corpus/silicon/xrstor-compacted-probe-byte-24-*.case); XCOMP_BV = 2^63 | x87
    // with RFBM = x87: base + 0. XCOMP_BV with AVX but not SSE: not measured.
    // Every read below lies in the region: when all of it can be read (one
    // page walk), none of them faults and their checks are skipped.
    let readable = m.read_check(op.addr, end as u64).is_ok();
    let probe = |m: &mut Machine| {
        if readable {
            return Ok(());
        }
        m.probe_last_byte(op.addr, end as u64, false)?;
        probe_legacy(m, op.addr, rfbm & format & 0b11)
    };
    let header_first = m.quirks().xrstor_header_checks_first;
    if !header_first {
        probe(m)?;
    }
    if xstate_bv_63_gp && h.xstate_bv >> 63 == 1 {
        return Err(m.raise(&rules::XRSTOR_GP_XSTATE_BV_NOT_IN_XCOMP_BV, Fault::gp0()));
    }
    // #GP: XSTATE_BV not a subset of XCOMP_BV (bit 63 may be set: XCOMP_BV[63] = 1).
    if h.xstate_bv & !h.xcomp_bv != 0 {
        return Err(m.raise(&rules::XRSTOR_GP_XSTATE_BV_NOT_IN_XCOMP_BV, Fault::gp0()));
    }
    // #GP: header bytes 63:16 not zero.
    if h.rest.iter().any(|&q| q != 0) {
        return Err(m.raise(&rules::XRSTOR_GP_HEADER_BYTES_63_16, Fault::gp0()));
    }
    if header_first {
        probe(m)?;
    }
    let to_restore = format & rfbm & h.xstate_bv;
    let to_init = rfbm & !(format & h.xstate_bv);
    if to_restore & m.ctl.xfd_armed() != 0 {
        return Err(m.raise(&rules::XRSTOR_NM_XFD, Fault::Nm));
    }
    let base = op.addr;
    let model = m.model;
    let ext =
        move || layout::compacted_slots(model, fmt).filter(move |s| to_restore >> s.index & 1 != 0);
    if !readable {
        if to_restore & 1 != 0 {
            check_read(m, base, 160)?;
        }
        if to_restore & 2 != 0 {
            check_read(m, base.wrapping_add(24), 4)?;
            check_read(m, base.wrapping_add(160), 256)?;
        }
        check_read_slots(m, base, ext)?;
    }
    // x87 and XMM0..15 come from the area when they are restored.
    let load = to_restore & 0b11;
    let sse = (to_restore & 2 != 0).then(|| read_u32(m, base.wrapping_add(24)));
    if let Some(mx) = sse {
        if let Err(f) = legacy::check_mxcsr(m, mx, &rules::XRSTOR_GP_MXCSR_RESERVED) {
            let partial = move |m: &mut Machine| {
                legacy_part(m, base, op.rex_w, to_init, load, true);
                for i in Xfeatures::from_bits_retain(to_init)
                    .indices()
                    .filter(|&i| i >= 2)
                {
                    m.st.init_component(i);
                    m.state_initialized(i);
                }
                m.st.xinuse |= 2 | (to_restore & 1);
                m.st.xinuse &= !to_init;
            };
            if m.quirks().xrstor_compacted_mxcsr_late {
                let before = (m.policy == crate::machine::Policy::Architectural)
                    .then(|| crate::state::XState::clone(&m.st));
                partial(m);
                if let Some(before) = before {
                    m.lat.partial_states.push(before);
                }
            } else {
                m.alternative(partial);
            }
            return Err(f);
        }
    }
    let xcomp_bv = h.xcomp_bv;
    let commit = |m: &mut Machine| {
        legacy_part(m, base, op.rex_w, to_init, load, true);
        if let Some(mx) = sse {
            m.st.mxcsr = mx;
        }
        commit_extended(m, op, rfbm, to_restore, to_init, base, ext(), xcomp_bv);
    };
    let checked = (to_restore & VALUE_CHECKED != 0).then(ext);
    for s in checked
        .into_iter()
        .flatten()
        .filter(|s| value_checked(s.index))
    {
        let b = m.read_slice(base.wrapping_add(s.offset as u64), s.size as usize);
        if let Err(f) = check_supervisor_value(m, s.index, &b) {
            // SDM1 §13.12: after an XRSTORS fault each element of a supervisor
            // component may hold its old value, the loaded one or its initial
            // one ("even if the exception is not related to" it). The user
            // components restored before: the SDM is silent (reference S2); as
            // for the MXCSR #GP, the envelope admits them loaded or initialized.
            // The prediction changes nothing; the alternatives are the restore
            // done, and done with the supervisor components initialized (each
            // element judged alone: old, loaded or initial).
            let supervisor: Vec<usize> = Xfeatures::from_bits_retain(rfbm)
                .indices()
                .filter(|&i| m.model.component(i).is_some_and(|c| c.supervisor))
                .collect();
            m.alternative(commit);
            m.alternative(|m| {
                commit(m);
                for &i in &supervisor {
                    m.st.init_component(i);
                }
            });
            return Err(f);
        }
    }
    m.set_by(rfbm, &rules::XRSTOR_LOADS_COMPACTED);
    if rfbm & 2 != 0 {
        m.mxcsr_by(&rules::XRSTOR_LOADS_COMPACTED);
    }
    commit(m);
    Ok(())
}
