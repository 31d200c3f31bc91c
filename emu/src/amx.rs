//! AMX state components: TILECFG (17) and TILEDATA (18) (SDM1 §13.5.11; SDM2
//! LDTILECFG).
//!
//! XRSTOR(S) of a TILECFG value that LDTILECFG would refuse does not fault: it
//! initializes TILECFG instead (SDM1 §13.5.11). "Would refuse" is read from the
//! LDTILECFG Operation section for palette 1, the only palette of every AMX CPU
//! so far (CPUID.1DH: max_palette 1; palette 1: 8 tiles, 64 bytes per row, 16
//! rows; CPUID.1DH/1EH are not in the model, so these are constants):
//! - palette_id (byte 0) above 1;
//! - palette 1 with a reserved byte set (2..15, the colsb words of tiles 8..15 at
//!   32..47, the rows bytes of tiles 8..15 at 56..63);
//! - palette 1 with a tile of more than 16 rows or more than 64 bytes per row, or
//!   with exactly one of rows and colsb zero (a tile is either unused or sized);
//! - palette 0 with any other byte set (palette 0 is TILERELEASE's all-zero init
//!   configuration; anything else under palette 0 has no meaning).
//!
//! start_row (byte 1) is stored as is: LDTILECFG keeps it for restarting an
//! interrupted tile load and the SDM gives no check on it.
//! TILEDATA is loaded in full whatever TILECFG says.

use crate::layout::Slot;
use crate::machine::Machine;
use crate::state::XState;

/// Palette 1 limits (CPUID.(1DH,1)).
pub const MAX_NAMES: usize = 8;
pub const BYTES_PER_ROW: u16 = 64;
pub const MAX_ROWS: u8 = 16;

/// Whether LDTILECFG would accept this 64-byte TILECFG image (see the module doc).
pub fn tilecfg_supported(b: &[u8]) -> bool {
    if b.len() != 64 {
        return false;
    }
    // Each test ORs (or ANDs) its bytes without stopping early: fixed ranges
    // the compiler turns into a few word operations.
    let zero = |r: std::ops::Range<usize>| b[r].iter().fold(0, |a, &x| a | x) == 0;
    match b[0] {
        0 => zero(0..64),
        1 => {
            if !(zero(2..16) && zero(16 + 2 * MAX_NAMES..48) && zero(48 + MAX_NAMES..64)) {
                return false;
            }
            (0..MAX_NAMES).fold(true, |ok, t| {
                let colsb = u16::from_le_bytes([b[16 + 2 * t], b[17 + 2 * t]]);
                let rows = b[48 + t];
                ok & (colsb <= BYTES_PER_ROW) & (rows <= MAX_ROWS) & ((colsb == 0) == (rows == 0))
            })
        }
        _ => false,
    }
}

/// Whether XRSTOR(S) loads this TILECFG image as is: a value LDTILECFG would
/// accept, not palette 0 (else TILECFG is initialized, see
/// [`load_component_into`]).
pub fn tilecfg_loads(b: &[u8]) -> bool {
    tilecfg_supported(b) && b[0] != 0
}

/// Loads extended component `i` from image bytes; returns whether it is now in
/// use (false when an unsupported TILECFG was initialized instead).
///
/// A TILECFG of palette 0 (all zero, TILERELEASE's init configuration) loaded
/// with XSTATE_BV[17] = 1 is not in use afterwards (Intel host: XINUSE[17] = 0
/// and XSAVE's XSTATE_BV[17] = 0; native case
/// `xrstor64_tilecfg_in_use_with_zero_palette`).
pub fn load_component(m: &mut Machine, i: usize, b: &[u8]) -> bool {
    load_component_into(&mut m.st, i, b)
}

/// [`load_component`] on a state.
pub fn load_component_into(st: &mut XState, i: usize, b: &[u8]) -> bool {
    if i == 17 && !tilecfg_loads(b) {
        st.init_component(17);
        return false;
    }
    let c = st.comp_mut(i);
    if c.len() == b.len() {
        c.copy_from_slice(b);
    }
    true
}

/// [`load_component_into`] for the components `slots` (ascending, each as
/// long as the state holds it, one after the other both in the image and in
/// the state: [`XState::follows`]) from their image bytes `b`, in one copy;
/// returns the components not in use afterwards (TILECFG initialized).
/// `align`: whether the state aligns with `b` first ([`XState::align_with`]),
/// worth it only for bytes that stay where they are.
pub fn load_run_into(st: &mut XState, slots: &[Slot], b: &[u8], align: bool) -> u64 {
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return 0;
    };
    if align && b.len() >= crate::state::ALIGN_FROM {
        st.align_with(first.index, b.as_ptr() as usize);
    }
    if slots.len() == 1 {
        return (!load_component_into(st, first.index, b) as u64) << first.index;
    }
    let tilecfg = slots.iter().find(|s| s.index == 17).map(|s| {
        let o = (s.offset - first.offset) as usize;
        tilecfg_loads(&b[o..o + s.size as usize])
    });
    let run = slots.iter().fold(0, |a, s| a | 1 << s.index);
    debug_assert_eq!(b.len(), (last.offset + last.size - first.offset) as usize);
    st.run_mut(run, first.index, b.len()).copy_from_slice(b);
    if tilecfg == Some(false) {
        st.init_component(17);
        return 1 << 17;
    }
    0
}
