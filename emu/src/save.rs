//! What the saves share: the writes of the standard and compacted formats,
//! XINUSE as a save reports it, the region a compacted save operates on, and
//! the coupled latitude of the init and modified optimizations.

use crate::fault::Fault;
use crate::latitude::Coupled;
use crate::layout;
use crate::legacy;
use crate::machine::{Machine, Policy};
use crate::rules::{self, Rule};
use crate::state::MXCSR_INIT;
use crate::writes::Writes;
use crate::Xfeatures;

/// The XINUSE bits an XSAVE/XSAVEOPT writes into XSTATE_BV for `rfbm`:
/// XFD-armed components count as not in use (SDM1 §13.14).
pub fn xinuse_for_xstate_bv(m: &Machine, rfbm: u64) -> u64 {
    m.st.xinuse & rfbm & !m.ctl.xfd_armed()
}

/// Collects the x87 part's writes (bytes 0..23 and 32..159, by
/// [`rules::SAVE_X87_FORMAT`]: what goes wrong there is the values).
pub fn x87_writes(m: &Machine, w: &mut Writes, base: u64, rex_w: bool) {
    w.put_parts_with(&rules::SAVE_X87_FORMAT, base, 160, &[0..24, 32..160], |b| {
        legacy::x87_image(m, rex_w, b)
    });
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
        x87_writes(m, w, base, rex_w);
    }
    if mxcsr {
        let b = legacy::mxcsr_bytes(m);
        w.put_with(
            &rules::XSAVE_MXCSR_WITH_SSE_OR_AVX,
            base.wrapping_add(24),
            &b[0..4],
        );
        w.put_with(&rules::SAVE_MXCSR_MASK, base.wrapping_add(28), &b[4..8]);
    }
    if save.has(1) {
        w.put_xmm(base.wrapping_add(160));
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

/// Collects compacted-format writes: the components in `save`, at offsets laid
/// out by `rfbm`.
pub fn compacted_writes(m: &Machine, w: &mut Writes, base: u64, rfbm: u64, save: u64, rex_w: bool) {
    if save & 1 != 0 {
        x87_writes(m, w, base, rex_w);
    }
    if save & 2 != 0 {
        let b = legacy::mxcsr_bytes(m);
        w.put(base.wrapping_add(24), &b[0..4]);
        w.put_with(&rules::SAVE_MXCSR_MASK, base.wrapping_add(28), &b[4..8]);
        w.put_xmm(base.wrapping_add(160));
    }
    for s in layout::compacted_slots(m.model, Xfeatures::from_bits_retain(rfbm)) {
        if save & (1 << s.index) != 0 {
            w.put_comp(&m.st, base.wrapping_add(s.offset as u64), s.index);
        }
    }
}

/// XINUSE AND RFBM with the MXCSR rule of XSAVEC/XSAVES: bit 1 is set when
/// RFBM[1] = 1 and MXCSR != 1F80H. XFD-armed components count as not in use.
pub fn compacted_in_use(m: &Machine, rfbm: u64) -> u64 {
    let mut v = m.st.xinuse & rfbm & !m.ctl.xfd_armed();
    if rfbm & 2 != 0 && m.st.mxcsr != MXCSR_INIT {
        v |= 2;
    }
    v
}

/// The region a compacted save operates on: the layout of RFBM, XFD-armed
/// components (skipped, SDM1 §13.14) counting up to where they start.
pub fn compacted_region(m: &mut Machine, base: u64, rfbm: u64) -> Result<(), Fault> {
    let end = layout::compacted_region_end(
        m.model,
        Xfeatures::from_bits_retain(rfbm),
        Xfeatures::from_bits_retain(rfbm),
        Xfeatures::from_bits_retain(m.ctl.xfd_armed()),
    );
    m.probe_first_byte(base, true)?;
    m.access_region(base, end as u64, true)
}

/// The format of a save with the init optimization, for [`coupled_latitude`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// XSAVEOPT: standard offsets; MXCSR is written whatever is skipped.
    Standard,
    /// XSAVEC, XSAVES: the compacted layout of RFBM; MXCSR goes with SSE, and
    /// RFBM[1] = 1 with MXCSR != 1F80H saves SSE (XSTATE_BV[1] = 1) always.
    Compacted,
}

/// Records, under the architectural policy, the coupled latitude of a save
/// with the init optimization (and the modified one when `info_match`): for
/// each component i of RFBM not armed for XFD, XSTATE_BV[i] and whether i's
/// bytes are written are one choice (SDM2 XSAVEOPT/XSAVEC/XSAVES Operation:
/// TO_BE_SAVED = RFBM AND XINUSE [AND XMODIFIED], XSTATE_BV from RFBM AND
/// XINUSE): XINUSE[i] may be 1 over init contents ((0, unwritten) or
/// (1, written)); XMODIFIED[i] may be 0 only for a component the model
/// tracks as unmodified since the XRSTOR that XRSTOR_INFO names, and then
/// (1, unwritten) is allowed too. `save_rule` and `header_rule` are what a
/// choice outside these breaks. The choices stay pending until the save's
/// writes commit ([`crate::area::Writes::commit_save`]).
#[allow(clippy::too_many_arguments)]
pub fn coupled_latitude(
    m: &mut Machine,
    base: u64,
    rfbm: u64,
    rex_w: bool,
    format: Format,
    info_match: bool,
    save_rule: &'static Rule,
    header_rule: &'static Rule,
) {
    if m.policy != Policy::Architectural {
        return;
    }
    let not_init = m.st.not_init(rfbm);
    for i in Xfeatures::from_bits_retain(rfbm & !m.ctl.xfd_armed()).indices() {
        let forced = format == Format::Compacted && i == 1 && m.st.mxcsr != MXCSR_INIT;
        let init = not_init >> i & 1 == 0 && !forced;
        let skip = info_match && m.st.xmodified >> i & 1 == 0 && !forced;
        let mut choices = vec![(true, true)];
        if init {
            choices.push((false, false));
        }
        if skip {
            choices.push((true, false));
        }
        if choices.len() == 1 {
            continue;
        }
        let mut w = Writes::default();
        match format {
            Format::Standard => standard_writes(m, &mut w, base, 1 << i, rex_w, false),
            Format::Compacted => compacted_writes(m, &mut w, base, rfbm, 1 << i, rex_w),
        }
        // Written, the bytes may hold the alternatives of the state they copy.
        for p in &w.pieces {
            if let Some((c, j)) = p.state_byte(base) {
                m.lat.state_saved(c, j, p.addr, p.len as u32, |_| true);
            }
        }
        let mut bytes = Vec::new();
        let mem = &m.mem;
        w.for_each(&m.st, |a, b| {
            for (k, &v) in b.iter().enumerate() {
                let addr = a.wrapping_add(k as u64);
                if addr >= mem.base && addr < mem.end() {
                    bytes.push((addr, v, mem.bytes[(addr - mem.base) as usize]));
                }
            }
        });
        m.lat.pending.push(Coupled {
            header: base.wrapping_add(512),
            bit: i as u32,
            bytes,
            choices,
            save_rule,
            header_rule,
            header_live: true,
            site: m.site,
        });
    }
}
