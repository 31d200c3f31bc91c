//! The minimizer: shrinks a case while a predicate (the mismatch keeps its
//! signature) holds: drops instructions, resets initial-image fields to their
//! defaults, clears XSTATE_BV bits, shrinks and clears the arena, zeroes GPRs.
//!
//! It works in rounds so that a backend can run many candidates at once (one
//! emulator process, one Bochs boot): a round proposes every one-step
//! reduction of the current case, coarse ones first (all GPRs to zero, the
//! whole image or one component to its default, the whole arena or one page
//! to zero...) until none holds, then fine ones (one GPR, one RFBM bit, one
//! field, one line); of those that keep the predicate, the next
//! batch tries them applied together, and the first half of them, the first
//! quarter..., and keeps the largest that still holds, else the first alone
//! (already known to hold). It stops at a fixed
//! point (a local minimum that reads well), after `budget` candidates, or at
//! its deadline. [`Minimizer`] is that loop as a state machine, so that a
//! campaign can put candidates into the batches it runs anyway.

use crate::casefile::{default_image, disassemble};
use crate::fields::Catalog;
use std::time::Instant;
use xsave_emu::memory::PAGE;
use xsave_emu::{layout, Case, CpuModel, Prot, Xfeatures};

/// One reduction of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Drop the k-th instruction (proposed last first, so that steps applied
    /// in order keep their indices).
    DropInsn(usize),
    ZeroGpr(usize),
    ZeroGprs,
    ClearGprBit(usize, u32),
    /// Image bytes offset..offset+len back to the default image.
    InitDefault(usize, usize),
    /// Every image byte but the header's first 16 back to the default.
    InitAllDefault,
    /// Bit of the header qword at 512 (XSTATE_BV) or 520 (XCOMP_BV).
    ClearHeaderBit(usize, u32),
    /// The header qword at 512 or 520 to zero.
    ClearHeader(usize),
    KeepPages(usize),
    ReadWrite(usize),
    AllReadWrite,
    ZeroArena,
    ZeroArenaPage(usize),
    ZeroArenaLine(usize),
    /// Clear the bits of a GPR in this mask.
    ClearGprBits(usize, u64),
}

fn default_for(model: &CpuModel, c: &Case) -> Vec<u8> {
    let mut def = default_image(model, c.control.xcr0, c.init_xcomp_bv());
    def.resize(c.init.len(), 0);
    def
}

impl Step {
    /// The case with this step applied, or None where it changes nothing.
    fn apply(self, model: &CpuModel, cur: &Case) -> Option<Case> {
        let mut c = cur.clone();
        match self {
            Step::DropInsn(k) => {
                let insns = disassemble(&c.code);
                let start: usize = insns[..k.min(insns.len())]
                    .iter()
                    .map(|(b, _)| b.len())
                    .sum();
                let n = insns.get(k)?.0.len();
                c.code.drain(start..start + n);
            }
            Step::ZeroGpr(r) => c.gprs[r] = 0,
            Step::ZeroGprs => c.gprs = [0; 16],
            Step::ClearGprBit(r, b) => c.gprs[r] &= !(1u64 << b),
            Step::InitDefault(o, n) => {
                let def = default_for(model, &c);
                let e = (o + n).min(c.init.len());
                if o >= e {
                    return None;
                }
                c.init[o..e].copy_from_slice(&def[o..e]);
            }
            Step::InitAllDefault => {
                let def = default_for(model, &c);
                let hdr = c.init[512..528].to_vec();
                c.init.copy_from_slice(&def);
                c.init[512..528].copy_from_slice(&hdr);
            }
            Step::ClearHeaderBit(h, b) => {
                let v = u64::from_le_bytes(c.init[h..h + 8].try_into().expect("8 bytes"));
                c.init[h..h + 8].copy_from_slice(&(v & !(1u64 << b)).to_le_bytes());
            }
            Step::ClearHeader(h) => c.init[h..h + 8].fill(0),
            Step::AllReadWrite => c.memory.prot.fill(Prot::ReadWrite),
            Step::KeepPages(n) => {
                if c.memory.prot.len() <= n {
                    return None;
                }
                c.memory.prot.truncate(n);
                c.memory.bytes.truncate(n * PAGE as usize);
            }
            Step::ReadWrite(k) => *c.memory.prot.get_mut(k)? = Prot::ReadWrite,
            Step::ZeroArena => c.memory.bytes.fill(0),
            Step::ZeroArenaPage(k) => {
                let p = PAGE as usize;
                let e = ((k + 1) * p).min(c.memory.bytes.len());
                if k * p >= e {
                    return None;
                }
                c.memory.bytes[k * p..e].fill(0);
            }
            Step::ClearGprBits(r, m) => c.gprs[r] &= !m,
            Step::ZeroArenaLine(l) => {
                let e = (l + 64).min(c.memory.bytes.len());
                if l >= e {
                    return None;
                }
                c.memory.bytes[l..e].fill(0);
            }
        }
        (c != *cur).then_some(c)
    }
}

/// The image regions of the components of `cur`'s format: x87 (bytes 0..160),
/// SSE (160..416), and each extended component's slot.
fn component_regions(model: &CpuModel, cur: &Case) -> Vec<(usize, usize)> {
    let xcomp = cur.init_xcomp_bv();
    let mut v = vec![(0, 160), (160, 256)];
    let lay = if xcomp >> 63 == 1 {
        layout::compacted(model, Xfeatures::from_bits_retain(xcomp & !(1 << 63)))
    } else {
        layout::standard(model, Xfeatures::from_bits_retain(cur.control.xcr0))
    };
    v.extend(
        lay.slots
            .iter()
            .map(|s| (s.offset as usize, s.size as usize)),
    );
    v
}

/// The coarse reductions of `cur`: each instruction, and each part of the
/// case (GPRs, image, header qwords, arena pages, protections, bytes) as a
/// whole, then each component's region and each arena page.
fn coarse_steps(model: &CpuModel, cur: &Case) -> Vec<Step> {
    let n = disassemble(&cur.code).len();
    let mut v: Vec<Step> = (0..n).rev().map(Step::DropInsn).collect();
    v.extend([
        Step::ZeroGprs,
        Step::InitAllDefault,
        Step::ClearHeader(512),
        Step::ClearHeader(520),
        Step::KeepPages(1),
        Step::AllReadWrite,
        Step::ZeroArena,
    ]);
    v.extend(
        component_regions(model, cur)
            .into_iter()
            .map(|(o, n)| Step::InitDefault(o, n)),
    );
    v.extend((0..cur.memory.prot.len()).map(Step::ZeroArenaPage));
    v
}

/// Every one-step reduction of `cur`: instructions, GPRs, image fields,
/// header bits, the arena.
fn steps(model: &CpuModel, cur: &Case) -> Vec<Step> {
    let mut v = Vec::new();
    let n = disassemble(&cur.code).len();
    v.extend((0..n).rev().map(Step::DropInsn));
    v.extend((0..16).filter(|&r| cur.gprs[r] != 0).map(Step::ZeroGpr));
    // RAX (the low half of the instruction mask): bits 20 and up at once (no
    // component lives there), then each component bit.
    v.push(Step::ClearGprBits(0, !0xf_ffff));
    v.extend(
        (0..20)
            .rev()
            .filter(|b| cur.gprs[0] >> b & 1 == 1)
            .map(|b| Step::ClearGprBit(0, b)),
    );
    let xcomp = cur.init_xcomp_bv();
    let compacted = xcomp >> 63 == 1;
    let def = default_for(model, cur);
    let cat = Catalog::new(
        model,
        if compacted { xcomp } else { cur.control.xcr0 },
        compacted,
    );
    for f in &cat.fields {
        let e = (f.offset + f.len).min(cur.init.len());
        if f.offset < e && f.name != "xstate_bv" && cur.init[f.offset..e] != def[f.offset..e] {
            v.push(Step::InitDefault(f.offset, f.len));
        }
    }
    if cur.init != def {
        v.push(Step::InitAllDefault);
        for line in (0..cur.init.len()).step_by(64) {
            let e = (line + 64).min(cur.init.len());
            if cur.init[line..e] != def[line..e] && !(512..576).contains(&line) {
                v.push(Step::InitDefault(line, 64));
            }
        }
    }
    for h in [512usize, 520] {
        let q = u64::from_le_bytes(cur.init[h..h + 8].try_into().expect("8 bytes"));
        v.extend(
            (0..64)
                .rev()
                .filter(|b| q >> b & 1 == 1)
                .map(|b| Step::ClearHeaderBit(h, b)),
        );
    }
    v.extend((1..cur.memory.prot.len()).map(Step::KeepPages));
    v.extend(
        (0..cur.memory.prot.len())
            .filter(|&k| cur.memory.prot[k] != Prot::ReadWrite)
            .map(Step::ReadWrite),
    );
    if cur.memory.bytes.iter().any(|&b| b != 0) {
        v.push(Step::ZeroArena);
        v.extend(
            (0..cur.memory.bytes.len())
                .step_by(64)
                .filter(|&l| {
                    cur.memory.bytes[l..(l + 64).min(cur.memory.bytes.len())]
                        .iter()
                        .any(|&b| b != 0)
                })
                .map(Step::ZeroArenaLine),
        );
    }
    v
}

enum Phase {
    /// Next: propose every coarse (or every) one-step reduction.
    Round {
        coarse: bool,
    },
    /// Proposed one-step reductions (step and candidate each).
    Singles {
        coarse: bool,
        singles: Vec<(Step, Case)>,
    },
    /// Proposed prefixes of the held steps applied together, longest first;
    /// the first step alone is the fallback.
    Together {
        coarse: bool,
        prefixes: Vec<Case>,
    },
    Done,
}

/// The minimizer as a state machine: [`Minimizer::propose`] gives the next
/// candidates (none when done), [`Minimizer::accept`] takes whether each one
/// keeps the predicate.
pub struct Minimizer {
    model: CpuModel,
    cur: Case,
    phase: Phase,
    /// Candidates left to run.
    budget: usize,
    deadline: Option<Instant>,
    /// Candidates run so far.
    pub tried: usize,
    /// Batches proposed so far.
    pub rounds: usize,
    /// Stopped from outside before a fixed point.
    stopped: bool,
}

impl Minimizer {
    /// Starts from `case`, which must keep the predicate.
    pub fn new(model: &CpuModel, case: &Case, budget: usize, deadline: Option<Instant>) -> Self {
        Minimizer {
            model: model.clone(),
            cur: case.clone(),
            phase: Phase::Round { coarse: true },
            budget,
            deadline,
            tried: 0,
            rounds: 0,
            stopped: false,
        }
    }

    /// The smallest case so far (it keeps the predicate).
    pub fn current(&self) -> &Case {
        &self.cur
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether it stopped before a fixed point (budget, deadline or [`Minimizer::stop`]).
    pub fn cut_short(&self) -> bool {
        self.stopped || self.budget == 0 || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Ends the minimization where it is.
    pub fn stop(&mut self) {
        if !self.is_done() {
            self.stopped = true;
        }
        self.phase = Phase::Done;
    }

    /// The next candidates to run; empty when done.
    pub fn propose(&mut self) -> Vec<Case> {
        if self.budget == 0 || self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.phase = Phase::Done;
        }
        let out = match &self.phase {
            Phase::Done => return Vec::new(),
            &Phase::Round { coarse } => {
                let all = if coarse {
                    coarse_steps(&self.model, &self.cur)
                } else {
                    steps(&self.model, &self.cur)
                };
                let mut singles: Vec<(Step, Case)> = Vec::new();
                for s in all {
                    if singles.len() >= self.budget {
                        break;
                    }
                    if let Some(c) = s.apply(&self.model, &self.cur) {
                        if !singles.iter().any(|(_, x)| *x == c) {
                            singles.push((s, c));
                        }
                    }
                }
                if singles.is_empty() {
                    self.phase = if coarse {
                        Phase::Round { coarse: false }
                    } else {
                        Phase::Done
                    };
                    return self.propose();
                }
                let cands = singles.iter().map(|(_, c)| c.clone()).collect();
                self.phase = Phase::Singles { coarse, singles };
                cands
            }
            Phase::Singles { singles, .. } => singles.iter().map(|(_, c)| c.clone()).collect(),
            Phase::Together { prefixes, .. } => prefixes.clone(),
        };
        self.tried += out.len();
        self.budget = self.budget.saturating_sub(out.len());
        self.rounds += 1;
        out
    }

    /// Whether each candidate of the last [`Minimizer::propose`] keeps the predicate.
    pub fn accept(&mut self, held: &[bool]) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Singles { coarse, singles } => {
                let s0 = self.cur.clone();
                let good: Vec<&(Step, Case)> = singles
                    .iter()
                    .zip(held)
                    .filter(|(_, &h)| h)
                    .map(|(x, _)| x)
                    .collect();
                // No coarse step holds: on to the fine ones; no fine one: done.
                self.phase = match (good.is_empty(), coarse) {
                    (true, true) => Phase::Round { coarse: false },
                    (true, false) => Phase::Done,
                    (false, _) => Phase::Round { coarse },
                };
                if let [(_, first), ..] = good.as_slice() {
                    self.cur = first.clone();
                    let mut lens = Vec::new();
                    let mut k = good.len();
                    while k >= 2 {
                        lens.push(k);
                        k /= 2;
                    }
                    let mut prefixes: Vec<Case> = Vec::new();
                    for k in lens {
                        let mut all = s0.clone();
                        for (st, _) in &good[..k] {
                            if let Some(c) = st.apply(&self.model, &all) {
                                all = c;
                            }
                        }
                        if all != self.cur && !prefixes.contains(&all) {
                            prefixes.push(all);
                        }
                    }
                    if !prefixes.is_empty() {
                        self.phase = Phase::Together { coarse, prefixes };
                    }
                }
            }
            Phase::Together { coarse, prefixes } => {
                if let Some((c, _)) = prefixes.into_iter().zip(held).find(|(_, &h)| h) {
                    self.cur = c;
                }
                self.phase = Phase::Round { coarse };
            }
            p => self.phase = p,
        }
    }
}

/// Shrinks `case` while `keep` holds for it, candidates run in batches by
/// `keep_batch` (one bool per candidate); `keep` must hold on entry. At most
/// `budget` candidates, and none proposed after `deadline`.
pub fn minimize_batched(
    model: &CpuModel,
    case: &Case,
    budget: usize,
    deadline: Option<Instant>,
    keep_batch: &mut dyn FnMut(&[Case]) -> Vec<bool>,
) -> Minimizer {
    let mut m = Minimizer::new(model, case, budget, deadline);
    loop {
        let c = m.propose();
        if c.is_empty() {
            return m;
        }
        let held = keep_batch(&c);
        m.accept(&held);
    }
}

/// [`minimize_batched`] with a predicate on one case.
pub fn minimize(
    model: &CpuModel,
    case: &Case,
    budget: usize,
    keep: &mut dyn FnMut(&Case) -> bool,
) -> Case {
    let mut batch = |cs: &[Case]| cs.iter().map(&mut *keep).collect();
    minimize_batched(model, case, budget, None, &mut batch)
        .current()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::{Control, Fault};

    fn mxcsr_case(m: &CpuModel) -> Case {
        let t = crate::generate::Target {
            control: Control::user(m),
            model: m.clone(),
        };
        let mut c = crate::generate::generate(&t, 5, 0);
        c.code = vec![0x90, 0x48, 0x0f, 0xae, 0x2f, 0x90]; // nop; xrstor64 [rdi]; nop
        c.gprs = [0; 16];
        c.gprs[0] = 0xffff_ffff;
        c.gprs[2] = 0xffff_ffff;
        c.gprs[7] = xsave_emu::case::ARENA_BASE;
        c.gprs[9] = 0x1234;
        c.memory = xsave_emu::Memory::new(xsave_emu::case::ARENA_BASE, 3);
        c.memory.bytes[24..28].copy_from_slice(&0x1_1f80u32.to_le_bytes());
        c.memory.bytes[200] = 7;
        c
    }

    /// The emulator predicts #GP(0) at an instruction (an MXCSR with a
    /// reserved bit: SDM2 XRSTOR).
    fn gp(m: &CpuModel, x: &Case) -> bool {
        xsave_emu::predict(m, x)
            .ok()
            .and_then(|o| o.fault)
            .is_some_and(|f| f.fault == Fault::Gp(0) && f.insn.is_some())
    }

    #[test]
    fn shrinks_to_the_instruction_and_field_that_matter() {
        let m = CpuModel::builtin("zen5").unwrap();
        let c = mxcsr_case(&m);
        assert!(gp(&m, &c));
        let mut p = |x: &Case| gp(&m, x);
        let r = minimize(&m, &c, 2000, &mut p);
        assert_eq!(r.code, vec![0x48, 0x0f, 0xae, 0x2f]);
        assert_eq!(r.memory.prot.len(), 1);
        assert_eq!(r.gprs[9], 0);
        assert_eq!(r.memory.bytes[200], 0);
        assert_eq!(&r.memory.bytes[24..28], &0x1_1f80u32.to_le_bytes());
        assert_eq!(r.init, default_image(&m, r.control.xcr0, 0));
    }

    #[test]
    fn candidates_come_in_few_batches() {
        // Same case, counted: every batch is one backend run (one emulator
        // process, one Bochs boot). The one-candidate-at-a-time greedy loop
        // this replaced reached the same case in 79 runs.
        let m = CpuModel::builtin("zen5").unwrap();
        let c = mxcsr_case(&m);
        let mut batches = 0;
        let mut keep = |cs: &[Case]| {
            batches += 1;
            cs.iter().map(|x| gp(&m, x)).collect()
        };
        let r = minimize_batched(&m, &c, 2000, None, &mut keep);
        assert!(r.is_done());
        assert!(!r.cut_short());
        assert_eq!(r.current().code, vec![0x48, 0x0f, 0xae, 0x2f]);
        assert_eq!(r.rounds, batches);
        assert_eq!((batches, r.tried), (12, 92));
    }

    #[test]
    fn the_budget_and_the_deadline_stop_it() {
        let m = CpuModel::builtin("zen5").unwrap();
        let c = mxcsr_case(&m);
        let mut keep = |cs: &[Case]| cs.iter().map(|x| gp(&m, x)).collect();
        let r = minimize_batched(&m, &c, 10, None, &mut keep);
        assert_eq!(r.tried, 10);
        assert!(r.cut_short());
        let past = Instant::now();
        let r = minimize_batched(&m, &c, 2000, Some(past), &mut keep);
        assert_eq!(r.tried, 0);
        assert_eq!(r.current(), &c);
        let mut s = Minimizer::new(&m, &c, 2000, None);
        assert!(!s.propose().is_empty());
        s.stop();
        assert!(s.is_done() && s.cut_short());
        assert!(s.propose().is_empty());
    }
}
