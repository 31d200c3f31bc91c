//! Ring 0: XSAVES/XRSTORS and CET supervisor state in a bootable case image
//! ([`image`]), run on three hosts: KVM ([`kvm`]), Bochs ([`bochs`]) and QEMU
//! system emulation ([`qemu`]).
//!
//! Outcomes follow the emulator's run semantics (xsave_emu::case) with a ring-0
//! capture: XGETBV(1), XSAVE64 of everything into a zeroed standard area (the
//! `final_image`, exactly the emulator's capture), and XSAVES64 of XCR0 |
//! IA32_XSS into a zeroed compacted area, from which `Outcome::supervisor` is
//! taken; the CET MSRs are also read with RDMSR and both views compared
//! ([`Ring0Run::view_mismatches`]).

pub mod batch;
pub mod bochs;
pub mod image;
pub mod kvm;
pub mod layout;
pub mod process;
pub mod qemu;

pub use batch::{Info, KernelFault, Ring0Run};
pub use layout::IMAGE_MAP_END;

/// What a ring-0 run returns: what the image found out about the host at boot
/// (None if no boot got that far), and per case a run or a refusal.
pub type Ring0Runs = (Option<Info>, Vec<Result<Ring0Run, Refusal>>);

use crate::Refusal;
use std::time::Duration;
use xsave_emu::{Case, Outcome};

/// Where the ring-0 image runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A KVM micro-VM (silicon, where KVM exposes XSAVES and IA32_XSS).
    Kvm,
    /// A Bochs (2.7, 3.0, head or any binary) with one of its CPU models.
    Bochs(bochs::Target),
    /// qemu-system-x86_64 with TCG, `-cpu max`.
    QemuSystem,
}

impl Host {
    /// The backend spec: `kvm`, `bochs:3.0:sapphire_rapids`, `qemu-system`.
    pub fn name(&self) -> String {
        match self {
            Host::Kvm => "kvm".into(),
            Host::Bochs(t) => t.spec(),
            Host::QemuSystem => "qemu-system".into(),
        }
    }

    /// Why this host cannot run here, if it cannot (KVM: probed on opening).
    pub fn missing(&self) -> Option<String> {
        match self {
            Host::Kvm => (!std::path::Path::new("/dev/kvm").exists())
                .then(|| "/dev/kvm is absent".to_string()),
            Host::Bochs(t) => t.missing(),
            Host::QemuSystem => qemu::missing(),
        }
    }
}

/// Most cases per boot (the payload area bounds it further).
pub const MAX_PER_BOOT: usize = 200;
/// Deadline of one emulator boot.
pub const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// The CPU model QEMU is run with.
pub const QEMU_CPU: &str = "max";

/// What the host offers for ring-0 cases, or exactly why it cannot run them.
pub fn probe(host: &Host) -> Result<String, String> {
    match host {
        Host::Kvm => kvm::probe(),
        Host::Bochs(_) | Host::QemuSystem => {
            let info = boot_info(host)?;
            Ok(describe(host, &info))
        }
    }
}

/// Boots the image with no case and returns what it found out (CPUID).
pub fn boot_info(host: &Host) -> Result<Info, String> {
    let (info, _) = boot_emulator(host, &[])?;
    Ok(info)
}

fn describe(host: &Host, info: &Info) -> String {
    let d1 = info.leaf(0xD, 1);
    let d0 = info.leaf(0xD, 0);
    let l7 = info.leaf(7, 0);
    let what = match host {
        Host::Bochs(t) => format!(
            "Bochs {} ({}), cpu model {}",
            t.version_label(),
            t.program().display(),
            t.cpu
        ),
        Host::QemuSystem => format!(
            "{} TCG, -cpu {QEMU_CPU}",
            qemu::version().unwrap_or_else(|| "QEMU".into())
        ),
        Host::Kvm => "KVM".into(),
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    format!(
        "{what}: XCR0 support {:#x}; CPUID.(0DH,1): EAX={:#x} (XSAVEOPT {}, XSAVEC {}, XGETBV1 {}, XSAVES {}), \
         IA32_XSS support {:#x}; CET: SHSTK {}, IBT {}",
        (d0[0] as u64) | (d0[3] as u64) << 32,
        d1[0],
        yes(d1[0] & 1 != 0),
        yes(d1[0] & 2 != 0),
        yes(d1[0] & 4 != 0),
        yes(d1[0] & 8 != 0),
        (d1[2] as u64) | (d1[3] as u64) << 32,
        yes(l7[2] >> 7 & 1 != 0),
        yes(l7[3] >> 20 & 1 != 0),
    )
}

/// One boot of an emulator host with `cases` (all of which must fit in one boot).
fn boot_emulator(host: &Host, cases: &[&Case]) -> Result<(Info, Vec<batch::Record>), String> {
    let img = image::build().map_err(|e| format!("assembling the image: {e}"))?;
    let mut loaded = batch::load(&img, cases, 0, false)?;
    if matches!(host, Host::Bochs(_)) {
        loaded.set_var(layout::V_INVD_AFTER_CODE, 1);
    }
    let text = match host {
        Host::Bochs(t) => t.boot(&loaded, BOOT_LIMIT)?,
        Host::QemuSystem => qemu::boot(&loaded, QEMU_CPU, BOOT_LIMIT)?,
        Host::Kvm => return Err("not an emulator".into()),
    };
    let (info, recs) = batch::parse_hex_output(&text, cases)?;
    if recs.len() != cases.len() {
        return Err(format!("{} records for {} cases", recs.len(), cases.len()));
    }
    Ok((info, recs))
}

/// The CPU model of `host`, from the CPUID its guest read at boot and the
/// IA32_XSS bits WRMSR accepted ([`Info::model`]); a Bochs model also gets
/// Bochs's quirks ([`bochs::QUIRKS`]) and is named `bochs-VERSION-CPU`.
pub fn host_model(host: &Host, info: &Info) -> xsave_emu::CpuModel {
    match host {
        Host::Bochs(t) => {
            let mut m = info.model(&t.model_name());
            for q in bochs::QUIRKS {
                assert!(m.quirks.set(q), "bochs::QUIRKS names an unknown quirk {q}");
            }
            let what = format!("Bochs {}, cpu model {}", t.version_label(), t.cpu);
            m.description = if m.description.is_empty() {
                what
            } else {
                format!("{what}; {}", m.description)
            };
            m
        }
        Host::Kvm => info.model("kvm"),
        Host::QemuSystem => info.model("qemu-system"),
    }
}

/// Runs `cases` on `host`, with every ring-0 detail; also returns what the
/// image found out about the host at boot.
pub fn run_detailed(host: &Host, cases: &[Case]) -> Result<Ring0Runs, String> {
    if *host == Host::Kvm {
        return kvm::run(cases);
    }
    let mut out: Vec<Option<Result<Ring0Run, Refusal>>> = vec![None; cases.len()];
    let mut runnable = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        match batch::refuse(c) {
            Some(r) => out[k] = Some(Err(r)),
            None => runnable.push(k),
        }
    }
    let refs: Vec<&Case> = runnable.iter().map(|&k| &cases[k]).collect();
    let groups = batch::pack(&refs, MAX_PER_BOOT);
    // Boots run two at a time (the machines have 2 cores).
    let mut info = None;
    for pair in groups.chunks(2) {
        let results: Vec<Result<(Info, Vec<batch::Record>), String>> = std::thread::scope(|s| {
            let hs: Vec<_> = pair
                .iter()
                .map(|g| {
                    let cs: Vec<&Case> = g.iter().map(|&i| refs[i]).collect();
                    s.spawn(move || boot_emulator(host, &cs))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("boot thread panicked".into()))
                })
                .collect()
        });
        for (g, r) in pair.iter().zip(results) {
            let (inf, recs) = r?;
            let model = host_model(host, &inf);
            for (&i, rec) in g.iter().zip(&recs) {
                let k = runnable[i];
                let r = batch::to_run(&model, &cases[k], rec).map_err(|e| {
                    format!("case {k} ({} of a boot of {}): {e}", rec.q[0], g.len())
                })?;
                out[k] = Some(r);
            }
            info = Some(inf);
        }
    }
    Ok((
        info,
        out.into_iter().map(|o| o.expect("every case")).collect(),
    ))
}

/// Runs `cases` on `host`: an outcome per case, or why the host will not run it.
pub fn run(host: &Host, cases: &[Case]) -> Result<Vec<Result<Outcome, Refusal>>, String> {
    let (_, runs) = run_detailed(host, cases)?;
    Ok(runs.into_iter().map(|r| r.map(|x| x.outcome)).collect())
}
