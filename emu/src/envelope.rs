//! The envelope: every outcome the SDM allows for a case. The emulator runs the
//! case under [`Policy::Architectural`](crate::exec::Policy) and records, as it
//! goes, the latitude the SDM leaves: bytes a save may or may not write (init and
//! modified optimizations, partial writes before a fault), XSTATE_BV bits of
//! components in init configuration, XINUSE bits that may stay 1, the FSW.ES/B
//! pair. [`check`] says whether an observed outcome lies inside, and if not
//! which field breaks it.

use crate::case::Case;
use crate::exec::{run, Policy, Unsupported};
use crate::memory::Memory;
use crate::model::CpuModel;
use crate::outcome::Outcome;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latitude {
    /// Arena byte -> values it may hold besides the predicted one.
    pub mem_alt: BTreeMap<u64, Vec<u8>>,
    /// Address of an XSTATE_BV qword written by a save -> bits that may be either value.
    pub header_free: BTreeMap<u64, u64>,
    /// An x87 load happened: FSW bits 7 (ES) and 15 (B) may have been recomputed.
    pub fsw_es_b: bool,
}

impl Latitude {
    pub fn alt(&mut self, addr: u64, vals: &[u8]) {
        for (k, &v) in vals.iter().enumerate() {
            let e = self.mem_alt.entry(addr + k as u64).or_default();
            if !e.contains(&v) {
                e.push(v);
            }
        }
    }
    /// Bytes a save may write as `new` or leave as they are in `mem`.
    pub fn alt_or_old(&mut self, mem: &Memory, addr: u64, new: &[u8]) {
        for (k, &v) in new.iter().enumerate() {
            let a = addr + k as u64;
            if a >= mem.base && a < mem.end() {
                let old = mem.bytes[(a - mem.base) as usize];
                self.alt(a, &[v, old]);
            }
        }
    }
    pub fn header_bits(&mut self, addr: u64, bits: u64) {
        *self.header_free.entry(addr).or_default() |= bits;
    }
}

/// Why an outcome lies outside the envelope: the first field that breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub detail: String,
}

/// The prediction for `model` (quirks included).
pub fn predict(model: &CpuModel, case: &Case) -> Result<Outcome, Unsupported> {
    run(model, case, Policy::Predict).map(|(o, _)| o)
}

/// The architectural outcome and the latitude around it.
pub fn envelope(model: &CpuModel, case: &Case) -> Result<(Outcome, Latitude), Unsupported> {
    run(model, case, Policy::Architectural)
}

/// Whether `obs` is inside the envelope of `case` on `model`.
pub fn check(
    model: &CpuModel,
    case: &Case,
    obs: &Outcome,
) -> Result<Result<(), Violation>, Unsupported> {
    let (arch, lat) = envelope(model, case)?;
    Ok(check_against(model, case, &arch, &lat, obs))
}

fn violation(field: impl Into<String>, detail: impl Into<String>) -> Result<(), Violation> {
    Err(Violation {
        field: field.into(),
        detail: detail.into(),
    })
}

pub fn check_against(
    model: &CpuModel,
    case: &Case,
    arch: &Outcome,
    lat: &Latitude,
    obs: &Outcome,
) -> Result<(), Violation> {
    if arch.fault != obs.fault {
        return violation(
            "fault",
            format!("SDM: {:?}, observed: {:?}", arch.fault, obs.fault),
        );
    }
    if arch.gprs != obs.gprs {
        return violation("gprs", "general registers differ");
    }
    if arch.supervisor != obs.supervisor {
        return violation(
            "supervisor",
            format!(
                "SDM: {:02x?}, observed: {:02x?}",
                arch.supervisor, obs.supervisor
            ),
        );
    }
    // Memory: each byte is the predicted value or one of its alternatives,
    // except XSTATE_BV qwords, judged bit by bit below.
    let base = case.memory.base;
    let mut header_bytes = BTreeMap::new();
    for (&a, &bits) in &lat.header_free {
        for k in 0..8 {
            header_bytes.insert(a + k, (bits >> (8 * k)) as u8);
        }
    }
    for (k, (&p, &o)) in arch.memory.iter().zip(&obs.memory).enumerate() {
        if p == o {
            continue;
        }
        let a = base + k as u64;
        if let Some(&free) = header_bytes.get(&a) {
            if (p ^ o) & !free == 0 {
                continue;
            }
        }
        if lat.mem_alt.get(&a).is_some_and(|v| v.contains(&o)) {
            continue;
        }
        return violation(
            format!("memory[{:#x}]", k),
            format!("SDM allows {p:#04x}, observed {o:#04x}"),
        );
    }
    // Final registers: the capture image, except FSW.ES/B where recomputed, the
    // XSTATE_BV bits (judged as XINUSE) and x87 pointers a model leaves open.
    let xcr0 = case.control.xcr0;
    let init_free = !arch_not_init(model, case, arch) & xcr0;
    for (k, (&p, &o)) in arch.final_image.iter().zip(&obs.final_image).enumerate() {
        if p == o {
            continue;
        }
        if lat.fsw_es_b && k == 2 && (p ^ o) & 0x80 == (p ^ o) {
            continue;
        }
        if lat.fsw_es_b && k == 3 && (p ^ o) & 0x80 == (p ^ o) {
            continue;
        }
        if (512..520).contains(&k) {
            let free = (init_free >> (8 * (k - 512))) as u8;
            if (p ^ o) & !free == 0 {
                continue;
            }
        }
        if model.quirks.x87_pointers_uncontrolled && (6..24).contains(&k) {
            continue;
        }
        return violation(
            format!("final[{k}]"),
            format!("SDM allows {p:#04x}, observed {o:#04x}"),
        );
    }
    match (arch.xinuse, obs.xinuse) {
        (Some(p), Some(o)) => {
            // XINUSE[i] = 1 is always allowed; 0 only for a component in init configuration.
            if (p ^ o) & !init_free != 0 {
                return violation(
                    "xinuse",
                    format!("SDM allows {p:#x} (free bits {init_free:#x}), observed {o:#x}"),
                );
            }
        }
        (p, o) if p != o => return violation("xinuse", format!("{p:?} vs {o:?}")),
        _ => {}
    }
    Ok(())
}

/// Components of XCR0 not in init configuration in the architectural final
/// state, read back from the capture image (MXCSR != 1F80H counts for SSE only
/// through XGETBV(1), SDM1 §13.6).
fn arch_not_init(model: &CpuModel, case: &Case, arch: &Outcome) -> u64 {
    let img = &arch.final_image;
    let mut m = 0u64;
    let zero = |r: &[u8]| r.iter().all(|&b| b == 0);
    let x87_init = u16::from_le_bytes([img[0], img[1]]) == 0x037F
        && zero(&img[2..6])
        && zero(&img[8..24])
        && zero(&img[32..160]);
    if !x87_init {
        m |= 1;
    }
    if !zero(&img[160..416]) {
        m |= 2;
    }
    let mxcsr = u32::from_le_bytes(img[24..28].try_into().unwrap());
    if case.control.xcr0 & 2 != 0 && mxcsr != crate::state::MXCSR_INIT {
        m |= 2;
    }
    for s in
        crate::layout::standard(model, crate::Xfeatures::from_bits_retain(case.control.xcr0)).slots
    {
        let q = crate::component::COMPONENTS[s.index]
            .init_qword0
            .to_le_bytes();
        let b = &img[s.offset as usize..(s.offset + s.size) as usize];
        if b.iter()
            .enumerate()
            .any(|(k, &v)| v != if k < 8 { q[k] } else { 0 })
        {
            m |= 1 << s.index;
        }
    }
    m
}
