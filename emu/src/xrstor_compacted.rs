//! XRSTOR with XCOMP_BV[63] = 1 (the compacted form, SDM2 XRSTOR; SDM1 §13.8.2),
//! shared with XRSTORS: components outside XCOMP_BV are initialized even when
//! XSTATE_BV does not say so; SSE init sets MXCSR to 1F80H; MXCSR is loaded only
//! with SSE.

use crate::area::{read, Header};
use crate::exec::{Machine, Operand};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::state::MXCSR_INIT;
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
    let base = op.addr;
    let x87 = if to_restore & 1 != 0 {
        Some(read(m, base, 160)?)
    } else {
        None
    };
    let sse = if to_restore & 2 != 0 {
        let mx = read(m, base + 24, 4)?;
        let mx = u32::from_le_bytes(mx.try_into().unwrap());
        Some((mx, read(m, base + 160, 256)?))
    } else {
        None
    };
    let lay = layout::compacted(m.model, Xfeatures::from_bits_retain(format));
    let mut ext = Vec::new();
    for s in &lay.slots {
        if to_restore & (1 << s.index) != 0 {
            ext.push((s.index, read(m, base + s.offset as u64, s.size as usize)?));
        }
    }
    if let Some((mx, _)) = &sse {
        legacy::check_mxcsr(m, *mx)?;
    }
    for (i, b) in &ext {
        crate::xrstors::check_supervisor_value(m, *i, b)?;
    }
    if let Some(b) = x87 {
        legacy::load_x87(m, &b, op.rex_w);
    } else if to_init & 1 != 0 {
        m.st.x87 = crate::state::X87::init();
    }
    if let Some((mx, b)) = sse {
        m.st.mxcsr = mx;
        legacy::load_xmm(m, &b);
    } else if to_init & 2 != 0 {
        m.st.xmm = [[0; 16]; 16];
        m.st.mxcsr = MXCSR_INIT;
    }
    for (i, b) in ext {
        m.st.comp_mut(i).copy_from_slice(&b);
    }
    for i in Xfeatures::from_bits_retain(to_init)
        .indices()
        .filter(|&i| i >= 2)
    {
        m.st.init_component(i);
    }
    crate::xrstor::finish(m, op, rfbm, to_restore, h.xcomp_bv);
    Ok(())
}
