//! The ring-0 hosts of xsave-native (`kvm`, `bochs`, `qemu-system`): cases at
//! CPL 0 with IA32_XSS, so XSAVES/XRSTORS and CET supervisor state can be run.
//! Opening a host probes it; where it cannot run ring-0 cases, opening fails
//! with its exact reason. Cases are batched per boot.

use super::{Backend, Skip};
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::ring0::{self, Host};

pub struct Ring0Backend {
    host: Host,
    model: CpuModel,
}

impl Ring0Backend {
    /// Opens `host`: probes it (a boot for the emulators, whose CPUID and
    /// accepted IA32_XSS bits make the model cases are generated for).
    pub fn new(host: Host) -> Result<Ring0Backend, String> {
        if let Some(m) = host.missing() {
            return Err(format!("{}: {m}", host.name()));
        }
        let model = match host {
            Host::Kvm => {
                ring0::probe(&host).map_err(|e| format!("{}: {e}", host.name()))?;
                xsave_native::host::host_model()?
            }
            _ => {
                let info = ring0::boot_info(&host).map_err(|e| format!("{}: {e}", host.name()))?;
                ring0::host_model(&host, &info)
            }
        };
        Ok(Ring0Backend { host, model })
    }
}

impl Backend for Ring0Backend {
    fn name(&self) -> String {
        self.host.name()
    }
    fn model(&self) -> &CpuModel {
        &self.model
    }
    fn control(&self) -> Control {
        Control::kernel(&self.model)
    }
    fn observes_supervisor(&self) -> bool {
        true
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip> {
        self.run_batch(std::slice::from_ref(case))
            .pop()
            .unwrap_or_else(|| Err(Skip(format!("{}: no outcome", self.host.name()))))
    }
    fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Outcome, Skip>> {
        let h = self.host.name();
        // Cases whose run reaches the image's own memory are not run (see
        // `reaches_image_map`); the others go in one batch.
        let refused: Vec<Option<String>> = cases
            .iter()
            .map(|c| reaches_image_map(&self.model, c))
            .collect();
        let runnable: Vec<Case> = cases
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let mut ran: std::vec::IntoIter<Result<Outcome, Skip>> =
            match ring0::run(&self.host, &runnable) {
                Ok(v) => v
                    .into_iter()
                    .map(|r| r.map_err(|f| Skip(format!("{h}: {}", f.reason))))
                    .collect::<Vec<_>>(),
                Err(e) => {
                    let first = e.lines().next().unwrap_or("").to_string();
                    runnable
                        .iter()
                        .map(|_| Err(Skip(format!("{h}: {first}"))))
                        .collect()
                }
            }
            .into_iter();
        refused
            .into_iter()
            .map(|r| match r {
                Some(why) => Err(Skip(format!("{h}: {why}"))),
                None => ran
                    .next()
                    .unwrap_or_else(|| Err(Skip(format!("{h}: no outcome")))),
            })
            .collect()
    }
}

/// The ring-0 image maps the first GiB of linear addresses onto itself (its
/// code, page tables, stacks, the case payload; `ring0::image`), so an access
/// there reads or writes the image instead of faulting as it does outside a
/// case's pages everywhere else (emu, a Linux process). A case whose predicted
/// run faults with #PF there is not run: its outcome would be the image's
/// memory (a bogus XRSTOR header, say), and a save there could overwrite the
/// image.
fn reaches_image_map(model: &CpuModel, case: &Case) -> Option<String> {
    let p = xsave_emu::predict(model, case).ok()?;
    match p.fault?.fault {
        // One reason for all (a campaign counts skips by reason).
        xsave_emu::Fault::Pf { addr, .. } if addr < ring0::IMAGE_MAP_END => Some(
            "the case's #PF is in the first GiB of linear addresses, which the ring-0 image maps to itself".into(),
        ),
        _ => None,
    }
}
