//! What the restores share (XRSTOR in both forms, XRSTORS): Intel's probes of
//! the legacy region, loading or initializing x87 and SSE, the extended
//! components, and XINUSE, XMODIFIED and XRSTOR_INFO afterwards.

use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::machine::{Machine, Operand};
use crate::rules;
use crate::state::XrstorInfo;
use crate::Xfeatures;

/// The `pf-last-byte` quirk, after the last byte: Intel probes byte 0 if
/// `probe`[0] = 1 and byte 24 (MXCSR) if `probe`[1] or `probe`[2] = 1,
/// whatever XSTATE_BV says, before any header #GP and before XFD's #NM: the
/// standard form passes RFBM, the compacted form RFBM AND XCOMP_BV[1:0].
/// Intel host, page 0 absent, header on page 1 (corpus/silicon/xrstor-probe-byte-0-*.case):
/// RFBM = x87 with XSTATE_BV = 0, with a reserved header byte set, with
/// XSTATE_BV bit 56, with XCOMP_BV = 2^63 | 1 and with armed TILEDATA in
/// XSTATE_BV (#NM otherwise): #PF at base + 0; RFBM = SSE or AVX with a reserved
/// header byte set: #PF at base + 24; RFBM = x87 | SSE: base + 0; with the
/// region's last byte absent as well, the last byte first.
pub fn probe_legacy(m: &Machine, base: u64, probe: u64) -> Result<(), Fault> {
    if !m.quirks().pf_last_byte {
        return Ok(());
    }
    if probe & 1 != 0 {
        m.read_check(base, 1)?;
    }
    if probe & 0b110 != 0 {
        m.read_check(base.wrapping_add(24), 1)?;
    }
    Ok(())
}

/// The last step of both forms: loads the extended components of `ext` (their
/// slots in the image at `base`, already checked readable), initializes the
/// others of `to_init`, then updates XINUSE (a TILECFG that loads as palette 0
/// is not in use), XMODIFIED and XRSTOR_INFO.
#[allow(clippy::too_many_arguments)]
pub fn commit_extended(
    m: &mut Machine,
    op: &Operand,
    rfbm: u64,
    to_restore: u64,
    to_init: u64,
    base: u64,
    ext: impl Iterator<Item = layout::Slot>,
    xcomp_bv: u64,
) {
    let mut inuse = to_restore;
    for s in ext {
        let (image, Machine { st, mem, .. }) = (m.image(), &mut *m);
        let addr = base.wrapping_add(s.offset as u64);
        let loaded = match image {
            None => crate::amx::load_component_into(st, s.index, mem.slice(addr, s.size as usize)),
            Some(_) => {
                let b = crate::machine::read_source(image, mem, addr, s.size as usize);
                crate::amx::load_component_into(st, s.index, &b)
            }
        };
        if loaded {
            m.state_loaded(s.index, addr, s.size);
        } else {
            inuse &= !(1 << s.index);
            m.set_by(1 << s.index, &rules::XRSTOR_TILECFG);
        }
    }
    for i in Xfeatures::from_bits_retain(to_init)
        .indices()
        .filter(|&i| i >= 2)
    {
        m.st.init_component(i);
        m.state_initialized(i);
    }
    finish(m, op, rfbm, inuse, xcomp_bv);
}

/// Loads or initializes x87 and the XMM registers: `x87`/`xmm` are the image
/// bytes of components to load; `to_init` says which of 0 and 1 to initialize.
/// The x87 init is FNINIT's plus ST0..7 = 0 (SDM1 §13.6: FCW 037FH, FSW 0, all
/// tags empty, FIP/FDP/FCS/FDS/FOP 0); the SSE init clears XMM0..15 and, in the
/// compacted form only (`compacted_mxcsr_init`), sets MXCSR to 1F80H. The
/// loaded bytes come from the area at `base` (for their alternatives).
#[allow(clippy::too_many_arguments)]
pub fn legacy_part(
    m: &mut Machine,
    base: u64,
    rex_w: bool,
    to_init: u64,
    x87: Option<&[u8; 160]>,
    xmm: Option<&[u8; 256]>,
    compacted_mxcsr_init: bool,
) {
    if let Some(b) = x87 {
        legacy::load_x87(m, b, rex_w);
        m.state_loaded(0, base, 160);
    } else if to_init & 1 != 0 {
        m.st.x87 = crate::state::X87::init();
        m.state_initialized(0);
    }
    if let Some(b) = xmm {
        legacy::load_xmm(m, b);
        m.state_loaded(1, base.wrapping_add(160), 256);
    } else if to_init & 2 != 0 {
        m.st.xmm = [[0; 16]; 16];
        m.state_initialized(1);
        if compacted_mxcsr_init {
            m.st.mxcsr = crate::state::MXCSR_INIT;
        }
    }
}

/// XINUSE, XMODIFIED and XRSTOR_INFO after a restore (SDM2 XRSTOR Operation):
/// RFBM components take `inuse` (XSTATE_BV[i] = 0 gives XINUSE[i] = 0, the SDM2
/// pseudo-code's choice within SDM1's "0 or 1"), XMODIFIED := NOT RFBM,
/// XRSTOR_INFO := <CPL, VMX non-root, linear address, XCOMP_BV>.
pub fn finish(m: &mut Machine, op: &Operand, rfbm: u64, inuse: u64, xcomp_bv: u64) {
    let inuse = if m.quirks().xinuse_by_contents {
        inuse & m.st.not_init(rfbm)
    } else {
        inuse
    };
    m.st.xinuse = (m.st.xinuse & !rfbm) | (inuse & rfbm);
    m.st.xmodified = !rfbm;
    m.st.xrstor_info = Some(XrstorInfo {
        cpl: m.ctl.cpl,
        vmx_nonroot: m.ctl.vmx_nonroot,
        laddr: op.addr,
        xcomp_bv,
    });
}
