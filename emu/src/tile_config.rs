//! LDTILECFG, STTILECFG and TILERELEASE: the AMX instructions that set or read
//! the tile configuration (SDM2 each instruction's Operation; exception classes
//! AMX-E1 (LDTILECFG), AMX-E2 (STTILECFG), AMX-E6 (TILERELEASE)).
//!
//! - #UD unless XCR0[18:17] = 11b (and CR4.OSXSAVE = 1).
//! - XFD: none of the three raises #NM with XFD[18] = 1. "The LDTILECFG and
//!   TILERELEASE instructions initialize TILEDATA and do not cause an #NM
//!   exception" (SDM1 §13.14); STTILECFG does not touch TILEDATA. Intel host:
//!   every corpus/silicon/amx-*.case runs with XFD[18] armed (Linux, no AMX
//!   permission) and none raises #NM.
//! - LDTILECFG #GP(0) on a configuration [`crate::amx::tilecfg_supported`]
//!   refuses, except that palette 0 ignores the other 63 bytes (the Operation
//!   checks them only for palette_id ≠ 0): it returns TILECFG and TILEDATA to
//!   init (Intel host: corpus/silicon/amx-ldtilecfg-palette-0-ignores-rest.case).
//!   start_row is stored as given and colsb need not be a multiple of 4.
//! - TILECFG in use after LDTILECFG of palette 1 (TILES_CONFIGURED = 1), also with
//!   no tile sized; TILEDATA is zeroed, so in init (XINUSE[18] = 0, seen only from
//!   init: the ring-3 runner has no AMX permission).
//!
//! - No #AC: with alignment checking on, a misaligned m512 runs (Intel host).
//!
//! Not modelled (declined): CR0.TS = 1 (the AMX exception classes give no
//! CR0.TS rule and the ring-3 runner cannot set it).

use crate::amx;
use crate::fault::Fault;
use crate::machine::{Machine, Unsupported};
use crate::operand::{data_addr, span_canonical, wrote};
use crate::rules;
use iced_x86::{Code, Instruction};

/// TILECFG and TILEDATA.
const AMX: u64 = 1 << 17 | 1 << 18;

/// Whether LDTILECFG loads this 64-byte configuration (no #GP(0)).
pub fn ldtilecfg_accepts(b: &[u8; 64]) -> bool {
    b[0] == 0 || amx::tilecfg_supported(b)
}

/// What STTILECFG stores for a TILECFG: 64 zero bytes when tiles are not
/// configured (palette 0), else palette_id, start_row, and colsb and rows of
/// palette 1's tiles, every other byte 0 (SDM2 STTILECFG Operation).
pub fn sttilecfg_image(tilecfg: &[u8]) -> [u8; 64] {
    let mut buf = [0u8; 64];
    if tilecfg.len() != 64 || tilecfg[0] == 0 {
        return buf;
    }
    buf[..2].copy_from_slice(&tilecfg[..2]);
    let colsb = 16..16 + 2 * amx::MAX_NAMES;
    buf[colsb.clone()].copy_from_slice(&tilecfg[colsb]);
    let rows = 48..48 + amx::MAX_NAMES;
    buf[rows.clone()].copy_from_slice(&tilecfg[rows]);
    buf
}

pub fn step(m: &mut Machine, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
    if !m.ctl.cr4_osxsave || m.ctl.xcr0 >> 17 & 3 != 3 {
        // AMX-E1, E2, E6: #UD if XCR0[18:17] ≠ 11b.
        return Ok(Err(m.raise(&rules::INSN_SEMANTICS, Fault::Ud)));
    }
    if m.ctl.cr0_ts {
        return Err(Unsupported(format!(
            "`{ins}` with CR0.TS = 1: not modelled (not observable in ring 3)"
        )));
    }
    if ins.code() == Code::VEX_Tilerelease {
        tiles_to_init(m);
        return Ok(Ok(()));
    }
    // No alignment check (size 1): the Intel host runs both at +1, +4, +8 and
    // +20H with CR0.AM = EFLAGS.AC = 1 (corpus/silicon/amx-*-misaligned-no-ac.case).
    let a = match data_addr(m, ins, 1)? {
        Ok(a) => a,
        Err(f) => return Ok(Err(f)),
    };
    if let Err(f) = span_canonical(m, ins, a, 64) {
        return Ok(Err(f));
    }
    let cpl = m.ctl.cpl;
    if ins.code() == Code::VEX_Sttilecfg_m512 {
        let buf = sttilecfg_image(m.st.comp(17));
        let r = m.mem.write(a, &buf, cpl);
        if r.is_ok() {
            wrote(m, a, 64, None);
        }
        return Ok(r);
    }
    let mut b = [0u8; 64];
    if let Err(f) = m.mem.read(a, &mut b, cpl) {
        return Ok(Err(f));
    }
    if !ldtilecfg_accepts(&b) {
        return Ok(Err(m.raise(&rules::LDTILECFG_GP_INVALID, Fault::gp0())));
    }
    if b[0] == 0 {
        tiles_to_init(m);
    } else {
        m.st.comp_mut(17).copy_from_slice(&b);
        m.st.init_component(18);
        m.st.xinuse = (m.st.xinuse | 1 << 17) & !(1 << 18);
        m.st.xmodified |= AMX;
        m.set_by(AMX, &rules::INSN_SEMANTICS);
    }
    Ok(Ok(()))
}

/// TILECFG and TILEDATA to init (TILERELEASE; LDTILECFG of palette 0): both
/// not in use afterwards (Intel host: XGETBV(1) bit 17 reads 0 after
/// TILERELEASE of a configured TILECFG,
/// corpus/silicon/amx-tilerelease-then-xsave-init.case).
fn tiles_to_init(m: &mut Machine) {
    m.st.init_component(17);
    m.st.init_component(18);
    m.st.xinuse &= !AMX;
    m.st.xmodified |= AMX;
    m.set_by(AMX, &rules::INSN_SEMANTICS);
}
