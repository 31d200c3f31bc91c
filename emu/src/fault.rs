//! Faults are outcomes (SDM Vol.3 §6.15): the vector, the error code, and for #PF
//! the faulting linear address (CR2).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// #UD, vector 6.
    Ud,
    /// #NM, vector 7 (CR0.TS, CR0.EM for FXSAVE/FXRSTOR, or XFD).
    Nm,
    /// #SS(0), vector 12.
    Ss,
    /// #GP(error code), vector 13.
    Gp(u32),
    /// #PF, vector 14: error code (P = bit 0, W/R = bit 1, U/S = bit 2) and CR2.
    Pf { err: u32, addr: u64 },
    /// #AC(0), vector 17.
    Ac,
}

impl Fault {
    pub fn vector(&self) -> u8 {
        match self {
            Fault::Ud => 6,
            Fault::Nm => 7,
            Fault::Ss => 12,
            Fault::Gp(_) => 13,
            Fault::Pf { .. } => 14,
            Fault::Ac => 17,
        }
    }
    pub fn error_code(&self) -> u32 {
        match self {
            Fault::Gp(e) => *e,
            Fault::Pf { err, .. } => *err,
            _ => 0,
        }
    }
    pub fn gp0() -> Fault {
        Fault::Gp(0)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Ud => write!(f, "#UD"),
            Fault::Nm => write!(f, "#NM"),
            Fault::Ss => write!(f, "#SS(0)"),
            Fault::Gp(e) => write!(f, "#GP({e:#x})"),
            Fault::Pf { err, addr } => write!(f, "#PF(err={err:#x}, cr2={addr:#x})"),
            Fault::Ac => write!(f, "#AC(0)"),
        }
    }
}

/// A fault and the instruction (index into the case's code) that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultAt {
    pub fault: Fault,
    /// Index of the faulting instruction in the case; `None` for the runner's
    /// own initial XRSTOR (the case's initial image was rejected).
    pub insn: Option<usize>,
}
