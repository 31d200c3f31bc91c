//! This CPU in ring 3, through xsave-native's runner. The runner serialises
//! runs within a process (fixed mappings), so one runner per thread is safe.
//! A batch is run inside one runner batch (one lock and signal setup for all
//! its cases); with expected outcomes, a case whose single run agrees is not
//! run again (`Batch::run_expecting`: a disagreement is always confirmed).

use super::{Backend, Skip};
use std::sync::Mutex;
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::runner::Runner;
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
        cases.iter().map(|c| b.run(c).map_err(skip)).collect()
    }
    fn run_batch_expecting(
        &mut self,
        cases: &[Case],
        expected: &[Result<Outcome, Skip>],
        agrees: &dyn Fn(&Case, &Outcome, &Outcome) -> bool,
    ) -> Vec<Result<(Outcome, bool), Skip>> {
        let _turn = BATCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut b = match self.runner.batch() {
            Ok(b) => b,
            Err(r) => return cases.iter().map(|_| Err(skip(r.clone()))).collect(),
        };
        // In the order of their arena protections (stable): the runner changes
        // a page's protection only where it differs from the previous case's,
        // and each change is an mprotect with a TLB flush (about 1.6 us here);
        // generated cases mix a few patterns, so a batch in generation order
        // changed them for most cases. Outcomes do not depend on the order.
        let mut order: Vec<usize> = (0..cases.len()).collect();
        let pattern = |k: usize| cases[k].memory.prot.iter().map(|&p| p as u8);
        order.sort_by(|&a, &b| pattern(a).cmp(pattern(b)));
        let mut out: Vec<Option<Result<(Outcome, bool), Skip>>> =
            (0..cases.len()).map(|_| None).collect();
        for k in order {
            let (c, e) = (&cases[k], &expected[k]);
            out[k] = Some(match e {
                Ok(e) => {
                    let mut agreed = false;
                    let o = b.run_expecting(c, |o| {
                        agreed = agrees(c, e, o);
                        agreed
                    });
                    o.map(|o| (o, agreed)).map_err(skip)
                }
                Err(_) => b.run(c).map(|o| (o, false)).map_err(skip),
            });
        }
        out.into_iter()
            .map(|o| o.expect("every case run"))
            .collect()
    }
}

fn skip(r: Refusal) -> Skip {
    Skip(format!("native: {}", r.reason))
}
