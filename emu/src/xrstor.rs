//! XRSTOR (SDM2 XRSTOR; SDM1 §13.8), standard form (XCOMP_BV[63] = 0). The
//! compacted form is in `xrstor_compacted.rs`.
//!
//! Order of checks (reference §5.2): #UD, #NM (CR0.TS), canonical/alignment,
//! #PF on the header, header #GP, XFD #NM, #PF on the components, MXCSR #GP;
//! nothing is changed before every check has passed.

use crate::area::{read, read_header};
use crate::exec::{Machine, Operand};
use crate::fault::Fault;
use crate::legacy;
use crate::state::{XrstorInfo, MXCSR_INIT};
use crate::Xfeatures;

pub fn xrstor(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(true)?;
    m.check_area(op, 64)?;
    let h = read_header(m, op.addr)?;
    if h.xcomp_bv >> 63 == 1 {
        if !m.model.xsavec {
            // XCOMP_BV[63] = 1 without compaction support (SDM2 XRSTOR).
            return Err(Fault::gp0());
        }
        let rfbm = m.ctl.xcr0 & m.edx_eax();
        return crate::xrstor_compacted::restore_compacted(m, op, &h, rfbm, m.ctl.xcr0);
    }
    restore_standard(m, op, h.xstate_bv, &h.bytes)
}

fn restore_standard(
    m: &mut Machine,
    op: &Operand,
    xstate_bv: u64,
    header: &[u8],
) -> Result<(), Fault> {
    // #GP: XSTATE_BV sets a bit not in XCR0 (bit 63 included).
    if xstate_bv & !m.ctl.xcr0 != 0 {
        return Err(Fault::gp0());
    }
    // #GP: header bytes 15:8 (XCOMP_BV) or 23:16 not zero; 63:24 are not checked.
    if header[8..24].iter().any(|&b| b != 0) {
        return Err(Fault::gp0());
    }
    let rfbm = m.ctl.xcr0 & m.edx_eax();
    let to_restore = rfbm & xstate_bv;
    let to_init = rfbm & !xstate_bv;
    // XFD: loading an armed component from memory is #NM (SDM1 §13.14).
    if to_restore & m.ctl.xfd_armed() != 0 {
        return Err(Fault::Nm);
    }
    let base = op.addr;
    let x87 = if to_restore & 1 != 0 {
        Some(read(m, base, 160)?)
    } else {
        None
    };
    // MXCSR is loaded when RFBM[1] or RFBM[2] is set, whatever XSTATE_BV says.
    let mxcsr = if rfbm & 0b110 != 0 {
        let b = read(m, base + 24, 4)?;
        Some(u32::from_le_bytes(b.try_into().unwrap()))
    } else {
        None
    };
    let xmm = if to_restore & 2 != 0 {
        Some(read(m, base + 160, 256)?)
    } else {
        None
    };
    let mut ext = Vec::new();
    for i in Xfeatures::from_bits_retain(to_restore)
        .indices()
        .filter(|&i| i >= 2)
    {
        let c = *m
            .model
            .component(i)
            .expect("XCR0 holds only supported components");
        ext.push((i, read(m, base + c.offset as u64, c.size as usize)?));
    }
    if let Some(v) = mxcsr {
        legacy::check_mxcsr(m, v)?;
    }
    // Commit.
    if let Some(b) = x87 {
        legacy::load_x87(m, &b, op.rex_w);
    } else if to_init & 1 != 0 {
        m.st.x87 = crate::state::X87::init();
    }
    if let Some(b) = xmm {
        legacy::load_xmm(m, &b);
    } else if to_init & 2 != 0 {
        // SSE init clears XMM0..15 and leaves MXCSR alone (standard form).
        m.st.xmm = [[0; 16]; 16];
    }
    if let Some(v) = mxcsr {
        m.st.mxcsr = v;
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
    let mut inuse = to_restore;
    if m.quirks().xinuse_sse_mxcsr_standard && to_init & 2 != 0 && m.st.mxcsr != MXCSR_INIT {
        inuse |= 2;
    }
    finish(m, op, rfbm, inuse, 0);
    Ok(())
}

/// XINUSE, XMODIFIED and XRSTOR_INFO after a restore (SDM2 XRSTOR Operation):
/// RFBM components take `inuse`, XMODIFIED := NOT RFBM.
pub fn finish(m: &mut Machine, op: &Operand, rfbm: u64, inuse: u64, xcomp_bv: u64) {
    m.st.xinuse = (m.st.xinuse & !rfbm) | (inuse & rfbm);
    m.st.xmodified = !rfbm;
    m.st.xrstor_info = Some(XrstorInfo {
        cpl: m.ctl.cpl,
        vmx_nonroot: m.ctl.vmx_nonroot,
        laddr: op.addr,
        xcomp_bv,
    });
}
