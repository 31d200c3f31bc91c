//! The emulator as a backend: the exact prediction of a model (quirks
//! included). Envelopes are asked of `xsave_emu::check` by the comparison.

use super::{Backend, Skip};
use xsave_emu::{Case, Control, CpuModel, Outcome};

pub struct EmuBackend {
    model: CpuModel,
}

impl EmuBackend {
    pub fn new(model: CpuModel) -> EmuBackend {
        EmuBackend { model }
    }
}

/// A short, stable form of an emulator limit (backticked details dropped).
pub fn skip_reason(u: &xsave_emu::Unsupported) -> Skip {
    let mut s = String::from("emu: ");
    let mut inside = false;
    for ch in u.0.chars() {
        if ch == '`' {
            inside = !inside;
            continue;
        }
        if !inside {
            s.push(ch);
        }
    }
    Skip(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl Backend for EmuBackend {
    fn name(&self) -> String {
        format!("emu:{}", self.model.name)
    }
    fn model(&self) -> &CpuModel {
        &self.model
    }
    fn control(&self) -> Control {
        Control::user(&self.model)
    }
    fn is_real(&self) -> bool {
        false
    }
    fn observes_supervisor(&self) -> bool {
        true
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip> {
        xsave_emu::predict(&self.model, case).map_err(|u| skip_reason(&u))
    }
}
