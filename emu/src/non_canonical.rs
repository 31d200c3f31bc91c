//! An access to a non-canonical linear address is #GP(0), never #PF (SDM2, the
//! 64-bit mode exceptions of every XSAVE-family instruction: "If a memory
//! address is in a non-canonical form"), also when only part of the area is:
//! the canonical check is per access, not only on the base. For an operand that
//! uses SS (an RSP or RBP base) it is #SS(0): the Intel host gives #SS(0) for
//! the case below with `rbp` instead of `rdi`
//! (corpus/silicon/xrstor-rbp-area-crosses-canonical-boundary-ss.case). The machine's memory knows pages, not address widths, so it reports
//! the first inaccessible byte as a #PF; where that byte is non-canonical for
//! the model's paging (48 bits, 57 with LA57 in use), the fault is turned into
//! the one the CPU raises at that same access. Intel host: XRSTOR at
//! 7FFF_FFFF_FF00H (the header at 8000_0000_0100H) is #GP(0)
//! (corpus/silicon/xrstor-area-crosses-canonical-boundary-gp.case; found by
//! the diff_native fuzz target).

use crate::case::Case;
use crate::decode::{decode_lazily, stack_based};
use crate::fault::{Fault, FaultAt};
use crate::model::CpuModel;

/// Whether `a` is canonical under the model's paging.
pub fn canonical(model: &CpuModel, a: u64) -> bool {
    let bits = if model.os_la57 { 57 } else { 48 };
    ((a << (64 - bits)) as i64 >> (64 - bits)) as u64 == a
}

/// `f` as the CPU raises it: a #PF on a non-canonical address becomes #GP(0),
/// #SS(0) for an instruction whose operand uses SS.
pub fn fault_for(model: &CpuModel, case: &Case, f: FaultAt) -> FaultAt {
    let Fault::Pf { addr, .. } = f.fault else {
        return f;
    };
    if canonical(model, addr) {
        return f;
    }
    let ss = f
        .insn
        .and_then(|k| decode_lazily(&case.code, model.decoder_options()).nth(k))
        .map(|(ins, _)| stack_based(&ins))
        .unwrap_or(false);
    FaultAt {
        fault: if ss { Fault::Ss } else { Fault::gp0() },
        ..f
    }
}
