//! XSETBV (SDM2 XSETBV; SDM1 §13.3): CPL 0 only, ECX = 0 only, and the value must
//! be a valid XCR0 for this CPU.

use crate::fault::Fault;
use crate::machine::Machine;
use crate::rules;

/// Whether `v` may be loaded into XCR0 (SDM1 §13.3).
pub fn valid_xcr0(supported: u64, v: u64) -> bool {
    let bit = |i: u32| v >> i & 1;
    v & 1 == 1
        && v & !supported == 0
        && !(bit(2) == 1 && bit(1) == 0)
        && bit(3) == bit(4)
        && (v & 0xE0 == 0 || (v & 0xE0 == 0xE0 && v & 0b110 == 0b110))
        && bit(17) == bit(18)
        // APX (19) reuses MPX's bytes 960..1087: never both (reference §6.8).
        && !(bit(19) == 1 && v & 0x18 != 0)
}

/// Whether this XSETBV passes its #UD and CPL checks in VMX non-root operation,
/// where it then always exits to the VMM (SDM Vol.3 §26.1.1, privilege checks
/// first): an event, not an outcome this model gives.
pub fn exits_to_vmm(m: &Machine) -> bool {
    m.model.xsave && m.ctl.cr4_osxsave && m.ctl.cpl == 0 && m.ctl.vmx_nonroot
}

pub fn xsetbv(m: &mut Machine) -> Result<(), Fault> {
    if !m.model.xsave || !m.ctl.cr4_osxsave {
        return Err(m.raise(&rules::XSAVE_UD_DISABLED, Fault::Ud));
    }
    if m.ctl.cpl != 0 {
        return Err(m.raise(&rules::XSETBV_GP_CPL, Fault::gp0()));
    }
    if m.gprs[1] as u32 != 0 {
        return Err(m.raise(&rules::XSETBV_GP_ECX, Fault::gp0()));
    }
    let v = m.edx_eax();
    if !valid_xcr0(m.model.xcr0_supported, v) {
        return Err(m.raise(&rules::XSETBV_GP_INVALID_XCR0, Fault::gp0()));
    }
    m.ctl.xcr0 = v;
    Ok(())
}
