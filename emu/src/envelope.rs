//! The envelope: every outcome the SDM allows for a case. The emulator runs the
//! case under [`Policy::Architectural`](crate::exec::Policy) and records, as it
//! goes, the latitude the SDM leaves: bytes a save may or may not write (init and
//! modified optimizations, partial writes before a fault), XSTATE_BV bits of
//! components in init configuration, XINUSE bits that may read 1, the FSW.ES/B
//! pair and a canonicalized FIP, a #PF on any byte of the region an instruction
//! operates on (SDM1 §13.13), #GP(0) for #AC, partial user state before a late
//! #GP (SDM silent, reference S2). [`check`] says whether an observed outcome lies
//! inside, and if not which field breaks it.
//!
//! The architectural run takes the model's own path through the choices its
//! quirks name (each one a choice the SDM leaves open) and records the other
//! choices as latitude: a model without quirks (qemu-max-7.2) gives the SDM
//! alone; for a silicon model the envelope is centred on that silicon.

use crate::case::Case;
use crate::exec::{run_forced, Policy, Unsupported};
use crate::fault::Fault;
use crate::fault::FaultAt;
use crate::memory::{Memory, Prot};
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
    /// The region the current (last run) instruction may access (SDM1 §13.13: any
    /// byte of any component it operates on): a #PF may be reported on any byte of
    /// it whose page refuses the access.
    pub pf_region: Option<PfRegion>,
    /// Faults the current instruction may raise instead of the predicted one,
    /// before any access (e.g. #GP(0) for #AC); moved into `alt_faults` by the run.
    pub alt_fault: Vec<Fault>,
    /// Instruction index -> faults it may raise instead of the predicted one.
    pub alt_faults: BTreeMap<usize, Vec<Fault>>,
    /// Instruction index -> the region it may access (see `pf_region`).
    pub pf_regions: BTreeMap<usize, PfRegion>,
    /// States the SDM also allows after a fault (partial updates), turned into
    /// `final_alt` by the run.
    pub partial_states: Vec<crate::state::XState>,
    /// Final-image byte -> values it may hold besides the predicted one.
    pub final_alt: BTreeMap<usize, Vec<u8>>,
    /// GPR -> bits that may be either value (XGETBV(1) of components in init
    /// configuration: XINUSE[i] = 1 is always allowed, SDM1 §13.6).
    pub gpr_free: [u64; 16],
}

/// Bytes an instruction may touch, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfRegion {
    /// First and last byte (inclusive).
    pub first: u64,
    pub last: u64,
    /// The instruction writes the region (a save); it may still read it first.
    pub write: bool,
}

impl PfRegion {
    /// Whether `Pf{err, addr}` is a fault an access to this region may raise.
    pub fn allows(&self, mem: &Memory, cpl: u8, err: u32, addr: u64) -> bool {
        if addr < self.first || addr > self.last {
            return false;
        }
        let prot = mem.prot_at(addr);
        let present = prot != Prot::None;
        let w = err & 2 != 0;
        let expect_u = (cpl == 3) as u32;
        if err & 1 != present as u32 || (err >> 2) & 1 != expect_u || err & !7 != 0 {
            return false;
        }
        match prot {
            Prot::None => !w || self.write,
            Prot::Read => w && self.write,
            Prot::ReadWrite => false,
        }
    }
}

impl Latitude {
    pub fn alt(&mut self, addr: u64, vals: &[u8]) {
        for (k, &v) in vals.iter().enumerate() {
            let e = self.mem_alt.entry(addr.wrapping_add(k as u64)).or_default();
            if !e.contains(&v) {
                e.push(v);
            }
        }
    }
    /// Bytes a save may write as `new` or leave as they are in `mem`.
    pub fn alt_or_old(&mut self, mem: &Memory, addr: u64, new: &[u8]) {
        for (k, &v) in new.iter().enumerate() {
            let a = addr.wrapping_add(k as u64);
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
    run_canonical(model, case, Policy::Predict, None).map(|(o, _)| o)
}

/// [`run_forced`] with a #PF on a non-canonical address raised as the CPU does
/// ([`crate::non_canonical`]).
fn run_canonical(
    model: &CpuModel,
    case: &Case,
    policy: Policy,
    forced: Option<FaultAt>,
) -> Result<(Outcome, Latitude), Unsupported> {
    let (mut o, lat) = run_forced(model, case, policy, forced)?;
    o.fault = o
        .fault
        .map(|f| crate::non_canonical::fault_for(model, case, f));
    Ok((o, lat))
}

/// The architectural outcome and the latitude around it.
pub fn envelope(model: &CpuModel, case: &Case) -> Result<(Outcome, Latitude), Unsupported> {
    run_canonical(model, case, Policy::Architectural, None)
}

/// Whether `obs` is inside the envelope of `case` on `model`.
pub fn check(
    model: &CpuModel,
    case: &Case,
    obs: &Outcome,
) -> Result<Result<(), Violation>, Unsupported> {
    // A #PF outside the case's pages: its P bit is the OS's (foreign_page.rs),
    // judged as the model's.
    let normalized;
    let obs = match obs.fault {
        Some(f) if crate::foreign_page::present_bit_unknown(case, &f.fault) => {
            let mut o = obs.clone();
            o.fault = Some(crate::foreign_page::with_model_present_bit(case, f));
            normalized = o;
            &normalized
        }
        _ => obs,
    };
    let (arch, lat) = envelope(model, case)?;
    if let Some(
        o @ FaultAt {
            fault: Fault::Pf { err, addr },
            insn: Some(k),
        },
    ) = obs.fault
    {
        // A #PF on any byte the instruction may access (SDM1 §13.13), where the
        // architectural run went on (or stopped later, or with another fault of the
        // same instruction that the SDM does not order against #PF): judge the
        // rest of the outcome against a run stopped there.
        let allowed = lat
            .pf_regions
            .get(&k)
            .is_some_and(|r| r.allows(&case.memory, case.control.cpl, err, addr));
        let later = arch.fault.is_none_or(|a| a.insn.is_some_and(|ak| ak >= k));
        if arch.fault != obs.fault && allowed && later {
            let (arch, lat) = run_canonical(model, case, Policy::Architectural, Some(o))?;
            return Ok(check_against(model, case, &arch, &lat, obs));
        }
    }
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
    let pf_alternative = match (arch.fault, obs.fault) {
        (Some(a), Some(o)) if a.insn == o.insn => match (a.fault, o.fault, o.insn) {
            (Fault::Pf { .. }, Fault::Pf { err, addr }, Some(k)) => lat
                .pf_regions
                .get(&k)
                .is_some_and(|r| r.allows(&case.memory, case.control.cpl, err, addr)),
            _ => false,
        },
        _ => false,
    };
    let alt_fault = match (arch.fault, obs.fault) {
        (Some(a), Some(o)) if a.insn == o.insn => o
            .insn
            .and_then(|k| lat.alt_faults.get(&k))
            .is_some_and(|v| v.contains(&o.fault)),
        _ => false,
    };
    if arch.fault != obs.fault && !pf_alternative && !alt_fault {
        return violation(
            "fault",
            format!("SDM: {:?}, observed: {:?}", arch.fault, obs.fault),
        );
    }
    for (k, ((&p, &o), &free)) in arch
        .gprs
        .iter()
        .zip(&obs.gprs)
        .zip(&lat.gpr_free)
        .enumerate()
    {
        if (p ^ o) & !free != 0 {
            return violation(
                format!("gprs.{}", crate::case::GPR_NAMES[k]),
                format!("SDM allows {p:#x} (free bits {free:#x}), observed {o:#x}"),
            );
        }
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
            header_bytes.insert(a.wrapping_add(k), (bits >> (8 * k)) as u8);
        }
    }
    for (k, (&p, &o)) in arch.memory.iter().zip(&obs.memory).enumerate() {
        if p == o {
            continue;
        }
        let a = base.wrapping_add(k as u64);
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
    // Final registers: the capture image, except FSW.ES/B where recomputed, FIP
    // canonicalized, the XSTATE_BV bits (judged as XINUSE), partial updates the
    // SDM allows before a fault, and x87 pointers a model leaves open.
    let xcr0 = case.control.xcr0;
    let fip = |img: &[u8]| u64::from_le_bytes(img[8..16].try_into().unwrap_or([0; 8]));
    let fip_ok = arch.final_image.len() >= 16
        && obs.final_image.len() >= 16
        && fip_variants(fip(&arch.final_image)).contains(&fip(&obs.final_image));
    if arch.final_image.len() != obs.final_image.len() {
        return violation(
            "final",
            format!(
                "image of {} bytes, observed {}",
                arch.final_image.len(),
                obs.final_image.len()
            ),
        );
    }
    // XSAVE writes XSTATE_BV[i] = XINUSE[i]: 1 is always allowed, 0 only for a
    // component in its init configuration (judged on the observed state).
    let obs_init = !not_init(model, case, &obs.final_image, false) & xcr0;
    for (k, (&p, &o)) in arch.final_image.iter().zip(&obs.final_image).enumerate() {
        if p == o {
            continue;
        }
        if lat.fsw_es_b && (k == 2 || k == 3) && (p ^ o) & 0x80 == (p ^ o) {
            continue;
        }
        if fip_ok && (8..16).contains(&k) {
            continue;
        }
        if (512..520).contains(&k) {
            let sh = 8 * (k - 512);
            let (p, o) = ((p as u64) << sh, (o as u64) << sh);
            if o & !xcr0 == 0 && (p & !o) & !obs_init == 0 {
                continue;
            }
        }
        if lat.final_alt.get(&k).is_some_and(|v| v.contains(&o)) {
            continue;
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
            // XGETBV(1) = XCR0 AND XINUSE, bit 1 forced by MXCSR != 1F80H (SDM1
            // §13.6): a bit may read 1 over init contents, 0 only over them.
            let free = !not_init(model, case, &obs.final_image, true) & xcr0;
            if o & !xcr0 != 0 || (p & !o) & !free != 0 {
                return violation(
                    "xinuse",
                    format!("SDM allows {p:#x} (may clear {free:#x}), observed {o:#x}"),
                );
            }
        }
        (p, o) if p != o => return violation("xinuse", format!("{p:?} vs {o:?}")),
        _ => {}
    }
    Ok(())
}

/// FIP as loaded, or canonicalized to 48 or 57 bits (a linear address; the SDM
/// does not say whether XRSTOR keeps non-canonical bits of it).
pub fn fip_variants(v: u64) -> [u64; 3] {
    [
        v,
        ((v << 16) as i64 >> 16) as u64,
        ((v << 7) as i64 >> 7) as u64,
    ]
}

/// Components of XCR0 not in init configuration in a capture image; with
/// `mxcsr_rule`, MXCSR != 1F80H counts for SSE (XGETBV(1), SDM1 §13.6).
fn not_init(model: &CpuModel, case: &Case, img: &[u8], mxcsr_rule: bool) -> u64 {
    if img.len() < crate::layout::EXTENDED_START as usize {
        return !0;
    }
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
    if mxcsr_rule && case.control.xcr0 & 2 != 0 && mxcsr != crate::state::MXCSR_INIT {
        m |= 2;
    }
    for s in
        crate::layout::standard(model, crate::Xfeatures::from_bits_retain(case.control.xcr0)).slots
    {
        let q = crate::component::COMPONENTS[s.index]
            .init_qword0
            .to_le_bytes();
        let Some(b) = img.get(s.offset as usize..(s.offset + s.size) as usize) else {
            m |= 1 << s.index;
            continue;
        };
        if b.iter()
            .enumerate()
            .any(|(k, &v)| v != if k < 8 { q[k] } else { 0 })
        {
            m |= 1 << s.index;
        }
    }
    m
}
