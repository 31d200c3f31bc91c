//! Which rule put each value where it is, and where in the case it applied:
//! the rule behind a fault, each range of the arena a save wrote (or may have
//! written), each component's contents, MXCSR and each GPR. Recorded under the
//! architectural policy only, so that [`crate::envelope::check`] names the rule
//! a differing field breaks and the step that applied it (the runner's initial
//! load of the case's image, or one of the case's instructions).

use crate::rules::{self, Rule};

/// Where in a case a rule applied: the runner's initial load of the case's
/// image (the XRSTOR or XRSTORS before the case's first instruction), or the
/// case's k-th instruction (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    Initial,
    Insn(usize),
}

impl Site {
    /// The site of a fault at `insn` ([`crate::FaultAt::insn`]: None is the
    /// initial load).
    pub fn of_fault(insn: Option<usize>) -> Site {
        insn.map_or(Site::Initial, Site::Insn)
    }
}

/// A rule and the site where it set a value.
pub type Mark = (&'static Rule, Site);

/// The state a save copied into a range of the arena: bytes of the legacy
/// region from this offset of the area (x87, MXCSR, the XMM registers, and
/// XSTATE_BV from XINUSE: the same offsets as in the capture image), or
/// component i's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Legacy(u64),
    Comp(usize),
}

/// A range of the arena (first, last inclusive) a rule wrote at a site, and
/// the state copied there (None: header fields, initial configurations,
/// other instructions' stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub first: u64,
    pub last: u64,
    pub rule: &'static Rule,
    pub site: Site,
    pub source: Option<Source>,
}

/// Kept by every run, filled only under the architectural policy: the marks
/// of components and GPRs are allocated at the first one, so that a
/// prediction's run builds, moves and drops an empty record (the arrays were
/// 2 KiB to initialize and move per prediction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Arena ranges written, in the order written; the last range holding an
    /// address wins.
    pub written: Vec<Written>,
    /// What last set component i (0 = x87, 1 = XMM registers): 64 entries
    /// once any is marked, empty before (none marked).
    component: Vec<Option<Mark>>,
    /// What last set MXCSR.
    pub mxcsr: Option<Mark>,
    /// What last set each GPR: 16 entries once any is marked, empty before.
    gprs: Vec<Option<Mark>>,
    /// The rule behind the run's fault.
    pub fault: Option<&'static Rule>,
}

impl Provenance {
    /// Notes that `rule` set the components of `mask` at `site`.
    pub fn components(&mut self, mask: u64, rule: &'static Rule, site: Site) {
        if mask == 0 {
            return;
        }
        if self.component.is_empty() {
            self.component = vec![None; 64];
        }
        for i in 0..64 {
            if mask >> i & 1 != 0 {
                self.component[i] = Some((rule, site));
            }
        }
    }
    /// Notes that `rule` set GPR `k` (0..16) at `site`.
    pub fn gpr(&mut self, k: usize, rule: &'static Rule, site: Site) {
        if self.gprs.is_empty() {
            self.gprs = vec![None; 16];
        }
        self.gprs[k] = Some((rule, site));
    }
    /// What last set GPR `k` (None: nothing in the case).
    pub fn of_gpr(&self, k: usize) -> Option<Mark> {
        self.gprs.get(k).copied().flatten()
    }
    /// What wrote arena byte `addr` (the last write holding it).
    pub fn byte(&self, addr: u64) -> Option<Mark> {
        self.write_of(addr).map(|w| (w.rule, w.site))
    }
    /// The last write holding arena byte `addr`.
    pub fn write_of(&self, addr: u64) -> Option<&Written> {
        self.written
            .iter()
            .rev()
            .find(|w| w.first <= addr && addr <= w.last)
    }
    /// What set component i's contents (state untouched by the case:
    /// [`rules::STATE_UNCHANGED`], no site).
    pub fn of_component(&self, i: usize) -> (&'static Rule, Option<Site>) {
        match self.component.get(i).copied().flatten() {
            Some((r, s)) => (r, Some(s)),
            None => (&rules::STATE_UNCHANGED, None),
        }
    }
}
