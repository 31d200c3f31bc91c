//! Supervisor state component values XRSTORS may load (SDM1 §13.12): the
//! checks WRMSR would make on CET_U and CET_S (reference §6.1).

use crate::fault::Fault;
use crate::machine::Machine;
use crate::rules;

fn canonical48(v: u64) -> bool {
    ((v << 16) as i64 >> 16) as u64 == v
}

/// The components whose values [`check_supervisor_value`] checks: CET_U,
/// CET_S; every other component's bytes load as they are.
pub const VALUE_CHECKED: u64 = 1 << 11 | 1 << 12;

/// Whether [`check_supervisor_value`] checks component `i`'s value.
pub fn value_checked(i: usize) -> bool {
    i < 64 && VALUE_CHECKED >> i & 1 != 0
}

/// #GP(0) for a supervisor component value that WRMSR would refuse (SDM1 §13.12,
/// reference §6.1): IA32_U_CET reserved bits 9:6, SUPPRESS and TRACKER both set,
/// a non-canonical legacy-bitmap base; IA32_PLi_SSP non-canonical or bits 1:0 set.
pub fn check_supervisor_value(m: &Machine, i: usize, b: &[u8]) -> Result<(), Fault> {
    // A component shorter than the qword asked for reads as zero there.
    let q = |k: usize| {
        b.get(8 * k..8 * k + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let canon = |v: u64| {
        if m.model.la57 {
            ((v << 7) as i64 >> 7) as u64 == v
        } else {
            canonical48(v)
        }
    };
    let ssp_ok = |v: u64| canon(v) && v & 3 == 0;
    match i {
        11 => {
            let u_cet = q(0);
            let bad = u_cet & 0x3C0 != 0
                || (u_cet & (1 << 10) != 0 && u_cet & (1 << 11) != 0)
                || !canon(u_cet & !0xFFF);
            if bad || !ssp_ok(q(1)) {
                return Err(m.raise(&rules::XRSTORS_GP_SUPERVISOR_VALUE, Fault::gp0()));
            }
        }
        12 if !(0..3).all(|k| ssp_ok(q(k))) => {
            return Err(m.raise(&rules::XRSTORS_GP_SUPERVISOR_VALUE, Fault::gp0()))
        }
        _ => {}
    }
    Ok(())
}
