//! This CPU in ring 3, through xsave-native's runner. The runner serialises
//! runs within a process (fixed mappings), so one runner per thread is safe.
//! A batch is run inside one runner batch (one lock and signal setup for all
//! its cases); with expected outcomes, a case whose single run agrees is not
//! run again, and one whose single run equals the expected outcome is not even
//! copied out of the runner (`Batch::check_expecting`: a disagreement is always
//! confirmed).

use super::{Backend, Observed, Skip};
use std::sync::Mutex;
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::runner::{Batch, Check, Runner};
use xsave_native::Refusal;

/// Held for a whole batch: threads take turns by batch rather than by case,
/// so the runner's own per-case lock is never contended (a campaign's other
/// threads generate and predict meanwhile).
static BATCH_LOCK: Mutex<()> = Mutex::new(());

pub struct NativeBackend {
    runner: Runner,
}

impl NativeBackend {
    pub fn new() -> Result<NativeBackend, String> {
        Ok(NativeBackend {
            runner: Runner::new()?,
        })
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> String {
        "native".into()
    }
    fn model(&self) -> &CpuModel {
        self.runner.model()
    }
    fn control(&self) -> Control {
        self.runner.control()
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip> {
        self.runner.run(case).map_err(skip)
    }
    fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Outcome, Skip>> {
        let _turn = BATCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut b = match self.runner.batch() {
            Ok(b) => b,
            Err(r) => return cases.iter().map(|_| Err(skip(r.clone()))).collect(),
        };
        in_protection_order(&mut b, cases, |b, _, c| b.run(c).map_err(skip))
    }
    fn run_batch_expecting(
        &mut self,
        cases: &[Case],
        expected: &[Result<Outcome, Skip>],
        agrees: &dyn Fn(&Case, &Outcome, &Outcome) -> bool,
    ) -> Vec<Result<Observed, Skip>> {
        let _turn = BATCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut b = match self.runner.batch() {
            Ok(b) => b,
            Err(r) => return cases.iter().map(|_| Err(skip(r.clone()))).collect(),
        };
        in_protection_order(&mut b, cases, |b, k, c| match &expected[k] {
            Ok(e) => b
                .check_expecting(c, e, |o| agrees(c, e, o))
                .map(|r| match r {
                    Check::Same => Observed::Same,
                    Check::Accepted(outcome) => Observed::Outcome {
                        outcome,
                        agreed: true,
                    },
                    Check::Confirmed(outcome) => Observed::Outcome {
                        outcome,
                        agreed: false,
                    },
                })
                .map_err(skip),
            Err(_) => b
                .run(c)
                .map(|outcome| Observed::Outcome {
                    outcome,
                    agreed: false,
                })
                .map_err(skip),
        })
    }
}

/// `run(batch, index, case)` for each of `cases`, in the batch's
/// [`Batch::protection_order`], the results in the cases' order. The runner
/// changes a page's protection only where it differs from the previous case's,
/// and each change is an mprotect with a TLB flush; generated cases mix a few
/// patterns and image sizes (compacted images), so a batch in generation order
/// changed them for most cases. Outcomes do not depend on the order.
fn in_protection_order<T>(
    b: &mut Batch<'_>,
    cases: &[Case],
    mut run: impl FnMut(&mut Batch<'_>, usize, &Case) -> T,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..cases.len()).map(|_| None).collect();
    for k in b.protection_order(&cases.iter().collect::<Vec<_>>()) {
        out[k] = Some(run(b, k, &cases[k]));
    }
    out.into_iter()
        .map(|o| o.expect("every case run"))
        .collect()
}

fn skip(r: Refusal) -> Skip {
    Skip(format!("native: {}", r.reason))
}

#[cfg(test)]
mod tests {
    //! The runner's in-place check (`Batch::check_expecting`) against the
    //! campaign's comparison: on every case the agreement it reports is exactly
    //! what `compare(prediction, confirmed observation).is_match()` says, and a
    //! prediction changed in any one field (the fault, each GPR, each XINUSE
    //! bit, every byte of the final image and of the arena, the supervisor
    //! state) is never reported equal.
    use super::*;
    use crate::compare::compare;
    use crate::generate::{generate, Target};
    use xsave_emu::{predict, Fault, FaultAt};

    fn runner_or_skip() -> Option<Runner> {
        match Runner::new() {
            Ok(r) => Some(r),
            Err(e) => {
                println!("skipped: no ring-3 runner on this machine: {e}");
                None
            }
        }
    }

    /// The runner, its model, and the generator's target for it.
    fn runner_and_target() -> Option<(Runner, CpuModel, Target)> {
        let r = runner_or_skip()?;
        let m = r.model().clone();
        let t = Target {
            model: m.clone(),
            control: r.control(),
        };
        Some((r, m, t))
    }

    /// The agreement `check_expecting` reports for `predicted` (`Same` and
    /// `Accepted` agree; `Confirmed` is judged by the comparison), with the
    /// observation it stands for.
    fn checked(
        b: &mut Batch<'_>,
        m: &CpuModel,
        c: &Case,
        predicted: &Outcome,
    ) -> (bool, Check, Outcome) {
        // The careful path refuses a case when a context switch or noise hits
        // every try (seen on the busy 2-core Zen 5 host): try again, a few times.
        let r = (0..4)
            .find_map(|_| {
                b.check_expecting(c, predicted, |o| compare(m, c, predicted, o).is_match())
                    .ok()
            })
            .expect("a case the careful path ran");
        let agreed = match &r {
            Check::Same | Check::Accepted(_) => true,
            Check::Confirmed(o) => compare(m, c, predicted, o).is_match(),
        };
        let o = r.clone().outcome(predicted);
        (agreed, r, o)
    }

    #[test]
    fn in_place_check_agrees_with_compare_on_generated_cases() {
        let Some((mut r, m, t)) = runner_and_target() else {
            return;
        };
        let cases: Vec<Case> = (0..400)
            .map(|i| generate(&t, 7, i))
            .filter(|c| r.refusal(c).is_ok())
            .collect();
        let mut b = r.batch().expect("runner batch");
        let (mut same, mut faulting) = (0, 0);
        for (i, c) in cases.iter().enumerate() {
            let Ok(p) = predict(&m, c) else { continue };
            let careful = b.run(c).expect("runs");
            let want = compare(&m, c, &p, &careful).is_match();
            let (agreed, r, o) = checked(&mut b, &m, c, &p);
            assert_eq!(agreed, want, "case {i}: {r:?}");
            // The observation it reports is the careful path's (but for noise).
            assert!(compare(&m, c, &careful, &o).is_match(), "case {i}");
            same += (r == Check::Same) as u32;
            faulting += (r == Check::Same && p.fault.is_some()) as u32;
        }
        println!(
            "{} cases: {same} equal in place ({faulting} of them faulting)",
            cases.len()
        );
        assert!(same > 0 && faulting > 0, "the cases cover both kinds");
    }

    /// Every single-field change of an agreeing prediction is seen in place: the
    /// run is never `Same`, and the reported agreement is the comparison's of
    /// the changed prediction with the confirmed observation (a difference the
    /// model calls noise is `Accepted`, any other is `Confirmed`).
    #[test]
    fn in_place_check_sees_every_changed_field() {
        let Some((mut r, m, t)) = runner_and_target() else {
            return;
        };
        // One agreeing case without a fault and one with (each the first of its
        // kind among the generated cases).
        let mut picked: Vec<(Case, Outcome)> = vec![];
        {
            let mut b = r.batch().expect("runner batch");
            for want_fault in [false, true] {
                for i in 0..400 {
                    let c = generate(&t, 7, i);
                    let Ok(p) = predict(&m, &c) else { continue };
                    if p.fault.is_some() != want_fault || b.runner().refusal(&c).is_err() {
                        continue;
                    }
                    if matches!(checked(&mut b, &m, &c, &p).1, Check::Same) {
                        picked.push((c, p));
                        break;
                    }
                }
            }
        }
        assert_eq!(picked.len(), 2, "an agreeing case of each kind");
        let mut b = r.batch().expect("runner batch");
        for (c, p) in &picked {
            let careful = b.run(c).expect("runs");
            let mut changed: Vec<(String, Outcome)> = vec![];
            let mut with = |what: String, f: &dyn Fn(&mut Outcome)| {
                let mut q = p.clone();
                f(&mut q);
                assert_ne!(&q, p, "{what}");
                changed.push((what, q));
            };
            with("fault".into(), &|q| {
                q.fault = match q.fault {
                    None => Some(FaultAt {
                        fault: Fault::Ud,
                        insn: Some(0),
                    }),
                    Some(_) => None,
                }
            });
            if let Some(f) = p.fault {
                with("fault insn".into(), &|q| {
                    q.fault = Some(FaultAt {
                        insn: f.insn.map_or(Some(0), |k| Some(k + 1)),
                        ..f
                    })
                });
            }
            for k in 0..16 {
                with(format!("GPR {k}"), &|q| q.gprs[k] ^= 1 << (k * 4));
            }
            match p.xinuse {
                Some(x) => {
                    for bit in 0..64 {
                        with(format!("XINUSE bit {bit}"), &|q| {
                            q.xinuse = Some(x ^ 1 << bit)
                        });
                    }
                    with("XINUSE absent".into(), &|q| q.xinuse = None);
                }
                None => with("XINUSE present".into(), &|q| q.xinuse = Some(0)),
            }
            for k in 0..p.final_image.len() {
                with(format!("final image byte {k}"), &|q| {
                    q.final_image[k] ^= 0x80
                });
            }
            with("final image longer".into(), &|q| q.final_image.push(0));
            for k in 0..p.memory.len() {
                with(format!("arena byte {k}"), &|q| q.memory[k] ^= 0x01);
            }
            with("arena shorter".into(), &|q| {
                q.memory.pop();
            });
            with("supervisor state".into(), &|q| q.supervisor.push(0));
            for (what, q) in &changed {
                let want = compare(&m, c, q, &careful).is_match();
                let (agreed, r, o) = checked(&mut b, &m, c, q);
                assert!(r != Check::Same, "{what}: reported equal in place");
                assert_eq!(agreed, want, "{what}: {r:?}");
                assert!(compare(&m, c, &careful, &o).is_match(), "{what}");
            }
            println!(
                "{} changed predictions of a case with fault {:?}",
                changed.len(),
                p.fault
            );
        }
    }

    /// The backend runs a batch in the runner's protection order
    /// (`in_protection_order`), not the cases' order, and must give each
    /// outcome back at its case's index: on 48 generated cases of mixed
    /// protections (the order does move them), each batch outcome equals
    /// the one the same backend gives the case run on its own.
    #[test]
    fn batch_outcomes_are_in_the_cases_order() {
        let Some((mut r, m, t)) = runner_and_target() else {
            return;
        };
        let cases: Vec<Case> = (0..200)
            .map(|i| generate(&t, 3, i))
            .filter(|c| r.refusal(c).is_ok() && predict(&m, c).is_ok())
            .take(48)
            .collect();
        let order = r
            .batch()
            .expect("runner batch")
            .protection_order(&cases.iter().collect::<Vec<_>>());
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "the protection order differs from the cases' order: {order:?}"
        );
        drop(r);
        let mut be = NativeBackend::new().expect("runner");
        let batch = be.run_batch(&cases);
        let expected: Vec<Result<Outcome, Skip>> = cases
            .iter()
            .map(|c| predict(&m, c).map_err(|e| Skip(e.to_string())))
            .collect();
        let checked = be.run_batch_expecting(&cases, &expected, &|_, e, o| e == o);
        for (i, c) in cases.iter().enumerate() {
            let alone = be.run(c).expect("runs");
            let b = batch[i].as_ref().expect("runs in the batch");
            assert!(compare(&m, c, &alone, b).is_match(), "case {i}");
            if let Ok(Observed::Outcome { outcome, .. }) = &checked[i] {
                assert!(compare(&m, c, &alone, outcome).is_match(), "case {i}");
            }
        }
    }
}
