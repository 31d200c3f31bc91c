//! Which rule put each value where it is: the rule behind a fault, each range
//! of the arena a save wrote (or may have written), each component's
//! contents, MXCSR and each GPR. Recorded under the architectural policy only,
//! so that [`crate::envelope::check`] names the rule a differing field breaks.

use crate::rules::{self, Rule};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Arena ranges (first, last inclusive) and the rule that writes them, in
    /// the order written; the last range holding an address wins.
    pub written: Vec<(u64, u64, &'static Rule)>,
    /// The rule that last set component i (0 = x87, 1 = XMM registers).
    pub component: [Option<&'static Rule>; 64],
    /// The rule that last set MXCSR.
    pub mxcsr: Option<&'static Rule>,
    /// The rule that last set each GPR.
    pub gprs: [Option<&'static Rule>; 16],
    /// The rule behind the run's fault.
    pub fault: Option<&'static Rule>,
}

impl Default for Provenance {
    fn default() -> Provenance {
        Provenance {
            written: Vec::new(),
            component: [None; 64],
            mxcsr: None,
            gprs: [None; 16],
            fault: None,
        }
    }
}

impl Provenance {
    /// Notes that `rule` set the components of `mask`.
    pub fn components(&mut self, mask: u64, rule: &'static Rule) {
        for i in 0..64 {
            if mask >> i & 1 != 0 {
                self.component[i] = Some(rule);
            }
        }
    }
    /// The rule behind arena byte `addr` (the last write holding it).
    pub fn byte(&self, addr: u64) -> Option<&'static Rule> {
        self.written
            .iter()
            .rev()
            .find(|&&(a, b, _)| a <= addr && addr <= b)
            .map(|&(_, _, r)| r)
    }
    /// The rule behind component i's contents (state untouched by the case:
    /// [`rules::STATE_UNCHANGED`]).
    pub fn of_component(&self, i: usize) -> &'static Rule {
        self.component
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(&rules::STATE_UNCHANGED)
    }
}
