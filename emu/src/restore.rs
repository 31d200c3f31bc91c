//! What the restores share (XRSTOR in both forms, XRSTORS): Intel's probes of
//! the legacy region, loading or initializing x87 and SSE, the extended
//! components, and XINUSE, XMODIFIED and XRSTOR_INFO afterwards.

use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::machine::{Machine, Operand, Policy};
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
/// is not in use), XMODIFIED and XRSTOR_INFO. Slots that follow each other in
/// the image and in the state's own layout are loaded as one run.
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
    let mut ext = ext.peekable();
    let mut run = [layout::Slot {
        index: 0,
        offset: 0,
        size: 0,
    }; crate::component::MAX_COMPONENT + 1];
    while let Some(first) = ext.next() {
        run[0] = first;
        let mut n = 1;
        if m.st.comp(first.index).len() == first.size as usize {
            while let Some(&s) = ext.peek() {
                let prev = run[n - 1];
                if n == run.len()
                    || prev.offset.checked_add(prev.size) != Some(s.offset)
                    || m.st.comp(s.index).len() != s.size as usize
                    || !m.st.follows(prev.index, s.index)
                {
                    break;
                }
                run[n] = s;
                n += 1;
                ext.next();
            }
        }
        let run = &run[..n];
        let len = (run[n - 1].offset + run[n - 1].size - first.offset) as usize;
        let addr = base.wrapping_add(first.offset as u64);
        let (image, Machine { st, mem, .. }) = (m.image(), &mut *m);
        let b = crate::machine::read_source(image, mem, addr, len);
        // Not with a case's initial image: read once, at its own alignment,
        // it does not win back moving all the state's contents.
        let not_in_use = crate::amx::load_run_into(st, run, &b, image.is_none());
        inuse &= !not_in_use;
        if m.policy == Policy::Architectural {
            for s in run {
                if not_in_use >> s.index & 1 != 0 {
                    m.set_by(1 << s.index, &rules::XRSTOR_TILECFG);
                } else {
                    m.state_loaded(s.index, base.wrapping_add(s.offset as u64), s.size);
                }
            }
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

/// Loads or initializes x87 and the XMM registers: `load` says which of 0 and
/// 1 to load from the area at `base` (its bytes already checked readable and
/// unchanged since), `to_init` which to initialize.
/// The x87 init is FNINIT's plus ST0..7 = 0 (SDM1 §13.6: FCW 037FH, FSW 0, all
/// tags empty, FIP/FDP/FCS/FDS/FOP 0); the SSE init clears XMM0..15 and, in the
/// compacted form only (`compacted_mxcsr_init`), sets MXCSR to 1F80H.
pub fn legacy_part(
    m: &mut Machine,
    base: u64,
    rex_w: bool,
    to_init: u64,
    load: u64,
    compacted_mxcsr_init: bool,
) {
    if load & 1 != 0 {
        legacy::load_x87_at(m, base, rex_w);
        m.state_loaded(0, base, 160);
    } else if to_init & 1 != 0 {
        m.st.x87 = crate::state::X87::init();
        m.state_initialized(0);
    }
    if load & 2 != 0 {
        legacy::load_xmm_at(m, base.wrapping_add(160));
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
