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

use crate::area::{check_read, read_array, read_header, Header};
use crate::exec::{Machine, Operand};
use crate::fault::Fault;
use crate::layout;
use crate::legacy;
use crate::state::XrstorInfo;
use crate::Xfeatures;

pub fn xrstor(m: &mut Machine, op: &Operand) -> Result<(), Fault> {
    m.xsave_family_gate(true)?;
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

/// The `pf-last-byte` quirk, after the last byte: Intel probes byte 0 if
/// RFBM[0] = 1 and byte 24 (MXCSR) if RFBM[1] or RFBM[2] = 1, whatever
/// XSTATE_BV says, before any header #GP and before XFD's #NM, in both forms.
/// Intel host, page 0 absent, header on page 1 (corpus/silicon/xrstor-probe-byte-0-*.case):
/// RFBM = x87 with XSTATE_BV = 0, with a reserved header byte set, with
/// XSTATE_BV bit 56, with XCOMP_BV = 2^63 | 1 and with armed TILEDATA in
/// XSTATE_BV (#NM otherwise): #PF at base + 0; RFBM = SSE or AVX with a reserved
/// header byte set: #PF at base + 24; RFBM = x87 | SSE: base + 0; with the
/// region's last byte absent as well, the last byte first.
pub fn probe_legacy(m: &Machine, base: u64, rfbm: u64) -> Result<(), Fault> {
    if !m.quirks().pf_last_byte {
        return Ok(());
    }
    if rfbm & 1 != 0 {
        m.read_check(base, 1)?;
    }
    if rfbm & 0b110 != 0 {
        m.read_check(base.wrapping_add(24), 1)?;
    }
    Ok(())
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
    let probe = |m: &mut Machine| {
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
        return Err(Fault::gp0());
    }
    let (xstate_bv, header) = (h.xstate_bv, &h.bytes[..]);
    // #GP: XSTATE_BV sets a bit not in XCR0 (bit 63 included).
    if xstate_bv & !m.ctl.xcr0 != 0 {
        return Err(Fault::gp0());
    }
    // #GP: header bytes 15:8 (XCOMP_BV) or 23:16 not zero; 63:24 are not checked
    // (SDM1 §13.8.1 footnote).
    if header[8..24].iter().any(|&b| b != 0) {
        return Err(Fault::gp0());
    }
    if header_first {
        probe(m)?;
    }
    let to_restore = rfbm & xstate_bv;
    let to_init = rfbm & !xstate_bv;
    // XFD: loading an armed component from memory is #NM (SDM1 §13.14); with
    // XSTATE_BV[i] = 0 it is initialized as usual.
    if to_restore & m.ctl.xfd_armed() != 0 {
        return Err(Fault::Nm);
    }
    let base = op.addr;
    let x87 = if to_restore & 1 != 0 {
        Some(read_array::<160>(m, base)?)
    } else {
        None
    };
    // MXCSR is loaded when RFBM[1] or RFBM[2] is set, whatever XSTATE_BV says.
    let mxcsr = if rfbm & 0b110 != 0 {
        Some(u32::from_le_bytes(read_array(m, base.wrapping_add(24))?))
    } else {
        None
    };
    let xmm = if to_restore & 2 != 0 {
        Some(read_array::<256>(m, base.wrapping_add(160))?)
    } else {
        None
    };
    let ext = || layout::standard_slots(m.model, Xfeatures::from_bits_retain(to_restore));
    for s in ext() {
        check_read(m, base.wrapping_add(s.offset as u64), s.size as usize)?;
    }
    if let Some(v) = mxcsr {
        if let Err(f) = legacy::check_mxcsr(m, v) {
            // The SDM is silent on partial user state before this #GP (reference S2):
            // the envelope admits x87 and XMM already loaded or initialized.
            m.alternative(|m| {
                legacy_part(m, op.rex_w, to_init, x87.as_ref(), xmm.as_ref(), false);
            });
            return Err(f);
        }
    }
    // Commit.
    legacy_part(m, op.rex_w, to_init, x87.as_ref(), xmm.as_ref(), false);
    if let Some(v) = mxcsr {
        m.st.mxcsr = v;
    }
    let model = m.model;
    let ext = layout::standard_slots(model, Xfeatures::from_bits_retain(to_restore));
    commit_extended(m, op, rfbm, to_restore, to_init, base, ext, 0);
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
                let b = crate::exec::read_source(image, mem, addr, s.size as usize);
                crate::amx::load_component_into(st, s.index, &b)
            }
        };
        if !loaded {
            inuse &= !(1 << s.index);
        }
    }
    for i in Xfeatures::from_bits_retain(to_init)
        .indices()
        .filter(|&i| i >= 2)
    {
        m.st.init_component(i);
    }
    finish(m, op, rfbm, inuse, xcomp_bv);
}

/// Loads or initializes x87 and the XMM registers: `x87`/`xmm` are the image
/// bytes of components to load; `to_init` says which of 0 and 1 to initialize.
/// The x87 init is FNINIT's plus ST0..7 = 0 (SDM1 §13.6: FCW 037FH, FSW 0, all
/// tags empty, FIP/FDP/FCS/FDS/FOP 0); the SSE init clears XMM0..15 and, in the
/// compacted form only (`compacted_mxcsr_init`), sets MXCSR to 1F80H.
pub fn legacy_part(
    m: &mut Machine,
    rex_w: bool,
    to_init: u64,
    x87: Option<&[u8; 160]>,
    xmm: Option<&[u8; 256]>,
    compacted_mxcsr_init: bool,
) {
    if let Some(b) = x87 {
        legacy::load_x87(m, b, rex_w);
    } else if to_init & 1 != 0 {
        m.st.x87 = crate::state::X87::init();
    }
    if let Some(b) = xmm {
        legacy::load_xmm(m, b);
    } else if to_init & 2 != 0 {
        m.st.xmm = [[0; 16]; 16];
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
