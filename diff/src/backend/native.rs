//! This CPU in ring 3, through xsave-native's runner. The runner serialises
//! runs within a process (fixed mappings), so one runner per thread is safe.

use super::{Backend, Skip};
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::runner::Runner;

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
}
