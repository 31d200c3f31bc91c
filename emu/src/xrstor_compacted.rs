//! XRSTOR with XCOMP_BV[63] = 1 (the compacted form, SDM2 XRSTOR; SDM1 §13.8.2),
//! shared with XRSTORS (SDM1 §13.12): components outside XCOMP_BV are initialized
//! even when XSTATE_BV does not say so (FORCE_INIT); SSE init sets MXCSR to
//! 1F80H; MXCSR is loaded only with SSE.

use crate::area::Header;
use crate::exec::{Machine, Operand};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::Xfeatures;

/// `allowed` is XCR0 for XRSTOR and XCR0 | IA32_XSS for XRSTORS.
pub fn restore_compacted(
    m: &mut Machine,
    op: &Operand,
    h: &Header,
    rfbm: u64,
    allowed: u64,
) -> Result<(), Fault> {
    let format = h.xcomp_bv & !(1 << 63);
    // #GP: XCOMP_BV[62:0] not a subset of what is enabled.
    if format & !allowed != 0 {
        return Err(Fault::gp0());
    }
    // #GP: XSTATE_BV not a subset of XCOMP_BV (bit 63 may be set: XCOMP_BV[63] = 1).
    if h.xstate_bv & !h.xcomp_bv != 0 {
        return Err(Fault::gp0());
    }
    // #GP: header bytes 63:16 not zero.
    if h.bytes[16..64].iter().any(|&b| b != 0) {
        return Err(Fault::gp0());
    }
    let to_restore = format & rfbm & h.xstate_bv;
    let to_init = rfbm & !(format & h.xstate_bv);
    if to_restore & m.ctl.xfd_armed() != 0 {
        return Err(Fault::Nm);
    }
    let fmt = Xfeatures::from_bits_retain(format);
    let end = layout::compacted_end(m.model, fmt, Xfeatures::from_bits_retain(rfbm));
    m.note_region(op.addr, end as u64, false);
    let armed = Xfeatures::from_bits_retain(m.ctl.xfd_armed());
    let end = layout::compacted_region_end(m.model, fmt, Xfeatures::from_bits_retain(rfbm), armed);
    m.probe_last_byte(op.addr, end as u64, false)?;
    let base = op.addr;
    let x87 = if to_restore & 1 != 0 {
        Some(crate::area::read(m, base, 160)?)
    } else {
        None
    };
    let sse = if to_restore & 2 != 0 {
        let mx = crate::area::read(m, base.wrapping_add(24), 4)?;
        let mx = u32::from_le_bytes([mx[0], mx[1], mx[2], mx[3]]);
        Some((mx, crate::area::read(m, base.wrapping_add(160), 256)?))
    } else {
        None
    };
    let lay = layout::compacted(m.model, fmt);
    let mut ext = Vec::new();
    for s in &lay.slots {
        if to_restore & (1 << s.index) != 0 {
            let b = crate::area::read(m, base.wrapping_add(s.offset as u64), s.size as usize)?;
            ext.push((s.index, b));
        }
    }
    if let Some((mx, xmm)) = &sse {
        if let Err(f) = legacy::check_mxcsr(m, *mx) {
            let x = x87.clone();
            let xmm = xmm.clone();
            let partial = move |m: &mut Machine| {
                let xmm = Some(&xmm[..]);
                crate::xrstor::legacy_part(m, op.rex_w, to_init, x.as_deref(), xmm, true);
                for i in Xfeatures::from_bits_retain(to_init)
                    .indices()
                    .filter(|&i| i >= 2)
                {
                    m.st.init_component(i);
                }
                m.st.xinuse |= 2 | (to_restore & 1);
                m.st.xinuse &= !to_init;
            };
            if m.quirks().xrstor_compacted_mxcsr_late {
                let before = m.st.clone();
                partial(m);
                if m.policy == crate::exec::Policy::Architectural {
                    m.lat.partial_states.push(before);
                }
            } else {
                m.alternative(partial);
            }
            return Err(f);
        }
    }
    for (i, b) in &ext {
        // SDM1 §13.12: a supervisor component may be partly loaded when XRSTORS
        // faults; the prediction changes nothing before the #GP.
        crate::xrstors::check_supervisor_value(m, *i, b)?;
    }
    crate::xrstor::legacy_part(
        m,
        op.rex_w,
        to_init,
        x87.as_deref(),
        sse.as_ref().map(|(_, b)| &b[..]),
        true,
    );
    if let Some((mx, _)) = sse {
        m.st.mxcsr = mx;
    }
    crate::xrstor::commit_extended(m, op, rfbm, to_restore, to_init, ext, h.xcomp_bv);
    Ok(())
}
