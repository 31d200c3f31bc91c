//! Backends: one trait over everything that runs a case. Each backend says
//! which model its CPU presents and the control state cases run with there;
//! a case it cannot run comes back as a [`Skip`] with a short, stable reason
//! that campaigns count.

pub mod emu;
pub mod exec;
pub mod native;
pub mod ring0;
#[cfg(feature = "unicorn")]
pub mod unicorn;

use xsave_emu::{Case, Control, CpuModel, Outcome};

/// Why a backend did not run a case (a counted reason, not a finding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub trait Backend {
    /// `emu:zen5`, `native`, `exec:qemu-x86_64 -cpu max`.
    fn name(&self) -> String;
    /// The model of the CPU this backend presents.
    fn model(&self) -> &CpuModel;
    /// The control state cases run with on this backend.
    fn control(&self) -> Control;
    /// Whether this backend executes on something other than the emulator.
    fn is_real(&self) -> bool {
        true
    }
    /// Whether an outcome's supervisor state is what this backend observed
    /// (the emulator, a ring-0 host); a ring-3 runner reports the state it
    /// cannot read as its starting value.
    fn observes_supervisor(&self) -> bool {
        false
    }
    /// Whether [`Backend::model`]'s layout is what this backend enumerates in
    /// CPUID leaf 0DH (the emulator's model table, this CPU, a guest's CPUID
    /// under QEMU or Bochs), rather than a built-in model chosen for it.
    fn enumerates_layout(&self) -> bool {
        true
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip>;
    /// Runs several cases (a process-backed backend batches them).
    fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Outcome, Skip>> {
        cases.iter().map(|c| self.run(c)).collect()
    }
    /// Runs several cases whose outcomes another backend gave (`expected`, one
    /// per case); `agrees(case, expected, observed)` is the caller's comparison.
    /// A backend may trust an observation that agrees more cheaply than one that
    /// does not (native: one run instead of two that confirm each other; an
    /// observation that disagrees is still confirmed), and may report an
    /// observation equal to the expected outcome as [`Observed::Same`] without
    /// building it. By default, [`Backend::run_batch`] with nothing compared.
    fn run_batch_expecting(
        &mut self,
        cases: &[Case],
        expected: &[Result<Outcome, Skip>],
        agrees: &dyn Fn(&Case, &Outcome, &Outcome) -> bool,
    ) -> Vec<Result<Observed, Skip>> {
        let _ = (expected, agrees);
        self.run_batch(cases)
            .into_iter()
            .map(|r| {
                r.map(|outcome| Observed::Outcome {
                    outcome,
                    agreed: false,
                })
            })
            .collect()
    }
}

/// What [`Backend::run_batch_expecting`] observed for one case.
// `Same` is small and `Outcome` is not: boxing the outcome would cost an
// allocation per observed case to save stack bytes in a Vec of one batch.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Equal to the expected outcome in every field (so not copied).
    Same,
    /// The observed outcome; `agreed`: the caller's comparison accepted it
    /// (false: not compared, or not accepted).
    Outcome { outcome: Outcome, agreed: bool },
}

impl Observed {
    /// The observed outcome, given the expected one it was checked against.
    pub fn into_outcome(self, expected: &Outcome) -> Outcome {
        match self {
            Observed::Same => expected.clone(),
            Observed::Outcome { outcome, .. } => outcome,
        }
    }
}

/// Opens a backend from its command-line spelling: `emu`, `emu:MODEL`,
/// `native`, `exec:CMD ARGS...`, `unicorn`, `kvm`, `bochs[:VERSION][:CPU]`
/// (VERSION 2.7, 3.0, head or /path/to/bochs; CPU a Bochs cpu model, default
/// tigerlake), `qemu-system`.
/// `emu` without a model takes `default_model`.
pub fn open(
    spec: &str,
    default_model: Option<&CpuModel>,
) -> Result<Box<dyn Backend + Send>, String> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "emu" => {
            let model = if arg.is_empty() {
                default_model
                    .cloned()
                    .ok_or_else(|| "emu needs a model: emu:MODEL or --cpu MODEL".to_string())?
            } else {
                crate::models::resolve(arg)?
            };
            Ok(Box::new(emu::EmuBackend::new(model)))
        }
        "native" => Ok(Box::new(native::NativeBackend::new()?)),
        "exec" => Ok(Box::new(exec::ExecBackend::new(arg)?)),
        #[cfg(feature = "unicorn")]
        "unicorn" => Ok(Box::new(unicorn::UnicornBackend::new(arg)?)),
        "kvm" => Ok(Box::new(ring0::Ring0Backend::new(xsave_native::ring0::Host::Kvm)?)),
        "bochs" => {
            let t = xsave_native::ring0::bochs::Target::parse(arg)?;
            Ok(Box::new(ring0::Ring0Backend::new(
                xsave_native::ring0::Host::Bochs(t),
            )?))
        }
        "qemu-system" => Ok(Box::new(ring0::Ring0Backend::new(
            xsave_native::ring0::Host::QemuSystem,
        )?)),
        _ => Err(format!(
            "unknown backend `{spec}` (expected emu, emu:MODEL, native, exec:CMD..., unicorn, kvm, bochs[:VERSION][:CPU], qemu-system)"
        )),
    }
}
