//! The #PF P bit on a page the case does not own. A case defines its arena
//! pages and the code page; every other linear address belongs to the OS's
//! page tables (a ring-3 runner's process: a kernel-half address is mapped
//! supervisor-only on Linux, so a user access reports P = 1, SDM Vol.3 §4.7).
//! Whether such a page is present is not the CPU's XSAVE logic and the model
//! cannot know it: the prediction says P = 0 (absent, as everything outside
//! the case), the envelope ([`crate::check`]) admits either value, and a
//! comparison of outcomes does not count a difference in that bit alone
//! (found by diff_native on the Intel host: XRSTOR64 at 0xFFFFFFFF00000000,
//! err 5 observed, 4 predicted).

use crate::case::{Case, CODE_BASE};
use crate::fault::{Fault, FaultAt};
use crate::memory::PAGE;

/// Whether `addr` lies on one of the case's own pages: the arena or the code page.
pub fn is_case_page(case: &Case, addr: u64) -> bool {
    let arena = addr >= case.memory.base && addr < case.memory.end();
    let code = (CODE_BASE..CODE_BASE + PAGE).contains(&addr);
    arena || code
}

/// Whether `f` is a #PF whose P bit the model cannot know (its address lies
/// outside the case's pages).
pub fn present_bit_unknown(case: &Case, f: &Fault) -> bool {
    matches!(*f, Fault::Pf { addr, .. } if !is_case_page(case, addr))
}

/// Whether `a` and `b` are the same #PF (instruction, CR2 and the other
/// error-code bits) but for the P bit, on a page outside the case.
pub fn differ_only_in_present_bit(case: &Case, a: &FaultAt, b: &FaultAt) -> bool {
    match (a.fault, b.fault) {
        (Fault::Pf { err: e1, addr: a1 }, Fault::Pf { err: e2, addr: a2 }) => {
            a.insn == b.insn && a1 == a2 && e1 ^ e2 == 1 && present_bit_unknown(case, &a.fault)
        }
        _ => false,
    }
}

/// `f` with the P bit the model predicts (0) where it cannot know it.
pub fn with_model_present_bit(case: &Case, f: FaultAt) -> FaultAt {
    match f.fault {
        Fault::Pf { err, addr } if present_bit_unknown(case, &f.fault) => FaultAt {
            fault: Fault::Pf {
                err: err & !1,
                addr,
            },
            ..f
        },
        _ => f,
    }
}
