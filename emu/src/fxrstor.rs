//! FXRSTOR (SDM2 FXRSTOR): loads x87, MXCSR (#GP(0) on bits outside MXCSR_MASK)
//! and XMM0..15 from a 16-byte aligned 512-byte area. XINUSE[0] and XINUSE[1]
//! become 1 (the SDM is silent; loading from memory is a use).

use crate::area::read;
use crate::fault::Fault;
use crate::fxsave::fx_gate;
use crate::legacy;
use crate::machine::{Machine, Operand};
use crate::rules;

pub fn fxrstor(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    fx_gate(m)?;
    m.check_area(op, 16)?;
    m.access_region(op.addr, 512, false)?;
    let b = read(m, op.addr, 512)?;
    let mx = u32::from_le_bytes(b[24..28].try_into().unwrap());
    if m.ctl.cr4_osfxsr {
        legacy::check_mxcsr(m, mx, &rules::FXRSTOR_GP_MXCSR_RESERVED)?;
    }
    m.set_by(1, &rules::FXRSTOR_LOADS_LEGACY);
    legacy::load_x87(m, &b[0..160], op.rex_w);
    m.state_loaded(0, op.addr, 160);
    if m.ctl.cr4_osfxsr {
        m.st.mxcsr = mx;
        m.set_by(2, &rules::FXRSTOR_LOADS_LEGACY);
        legacy::load_xmm(m, &b[160..416]);
        m.state_loaded(1, op.addr.wrapping_add(160), 256);
        m.mxcsr_by(&rules::FXRSTOR_LOADS_LEGACY);
    }
    if m.quirks().xinuse_by_contents {
        m.st.xinuse = (m.st.xinuse & !0b11) | m.st.not_init(0b11);
    } else {
        m.st.xinuse |= 0b11;
    }
    m.st.xmodified |= 0b11;
    if m.quirks().fxrstor_ends_tracking {
        m.st.xrstor_info = None;
    }
    Ok(())
}
