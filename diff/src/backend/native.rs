//! This CPU in ring 3, through xsave-native's runner. The runner serialises
//! runs within a process (fixed mappings), so one runner per thread is safe.

use super::{Backend, Skip};
use std::sync::Mutex;
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::runner::Runner;

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
        self.runner
            .run(case)
            .map_err(|r| Skip(format!("native: {}", r.reason)))
    }
    fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Outcome, Skip>> {
        let _turn = BATCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        cases.iter().map(|c| self.run(c)).collect()
    }
}
