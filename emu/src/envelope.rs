//! The envelope: every outcome the SDM allows for a case. The emulator runs the
//! case under [`Policy::Architectural`] and records, as it goes, the latitude
//! the SDM leaves ([`crate::latitude`]) and the rule behind every value
//! ([`crate::provenance`]). [`check`] judges an observed outcome against it:
//! every rule it breaks, with the fields that show it, and the latitude it
//! takes where it is inside.
//!
//! The architectural run takes the model's own path through the choices its
//! quirks name (each one a choice the SDM leaves open) and records the other
//! choices as latitude: a model without quirks (qemu-max-7.2) gives the SDM
//! alone; for a silicon model the envelope is centred on that silicon.

use crate::case::Case;
use crate::exec::run_forced;
use crate::fault::{Fault, FaultAt};
use crate::latitude::{self, Freedoms, Latitude};
use crate::machine::{Policy, Unsupported};
use crate::model::CpuModel;
use crate::outcome::Outcome;
use crate::provenance::{Provenance, Site, Source};
use crate::rules::{self, Rule};
use std::collections::BTreeMap;
use std::fmt;

/// A rule and where it applied ([`Broken::site`]).
type At = (&'static Rule, Option<Site>);

/// One field that shows a rule broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// "fault", "gprs.rax", "memory[0x240..0x250]", "final[160..176] (SSE)",
    /// "XSTATE_BV bit 2 at memory[0x200]", "xinuse".
    pub field: String,
    /// What the SDM allows and what was observed.
    pub detail: String,
}

/// A rule an outcome breaks, where in the case it applied, and the fields
/// that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub rule: &'static Rule,
    /// The step of the case whose result shows it first: the initial load of
    /// the case's image, or the instruction that set the differing value
    /// (None: no step set it, e.g. state no instruction touched).
    pub site: Option<Site>,
    pub fields: Vec<Field>,
}

/// The verdict of [`check`]: every rule broken (none: inside the envelope),
/// and the latitude taken where the outcome differs from the architectural
/// run but is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    pub broken: Vec<Broken>,
    pub latitude: Vec<&'static Latitude>,
}

impl Judgement {
    /// Inside the envelope: no rule broken.
    pub fn inside(&self) -> bool {
        self.broken.is_empty()
    }
    /// The ids of the rules broken, in the order found.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.broken.iter().map(|b| b.rule.id).collect()
    }
    /// The ids of the latitude taken.
    pub fn latitude_ids(&self) -> Vec<&'static str> {
        self.latitude.iter().map(|l| l.id).collect()
    }
    /// The first field of the first rule broken.
    pub fn first(&self) -> Option<&Field> {
        self.broken.first().and_then(|b| b.fields.first())
    }
    fn breaks(&mut self, (rule, site): At, field: String, detail: String) {
        let f = Field { field, detail };
        match self
            .broken
            .iter_mut()
            .find(|b| b.rule.id == rule.id && b.site == site)
        {
            Some(b) => b.fields.push(f),
            None => self.broken.push(Broken {
                rule,
                site,
                fields: vec![f],
            }),
        }
    }
    fn took(&mut self, l: &'static Latitude) {
        if !self.latitude.iter().any(|x| x.id == l.id) {
            self.latitude.push(l);
        }
    }
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside() {
            write!(f, "inside the envelope")?;
            if !self.latitude.is_empty() {
                write!(f, " (latitude: {})", self.latitude_ids().join(", "))?;
            }
            return Ok(());
        }
        write!(f, "outside the envelope:")?;
        for b in &self.broken {
            write!(f, " {}:", b.rule.id)?;
            for x in &b.fields {
                write!(f, " {} ({});", x.field, x.detail)?;
            }
        }
        Ok(())
    }
}

/// The prediction for `model` (quirks included). Only the outcome is taken
/// from the run (the empty latitude and provenance of a prediction are not
/// moved through [`run_canonical`]).
pub fn predict(model: &CpuModel, case: &Case) -> Result<Outcome, Unsupported> {
    let mut o = crate::exec::run_then(model, case, Policy::Predict, None, |o, _, _| o)?;
    canonical_fault(model, case, &mut o);
    Ok(o)
}

/// [`run_forced`] with a #PF on a non-canonical address raised as the CPU does
/// ([`crate::non_canonical`]).
fn run_canonical(
    model: &CpuModel,
    case: &Case,
    policy: Policy,
    forced: Option<FaultAt>,
) -> Result<(Outcome, Freedoms, Provenance), Unsupported> {
    let (mut o, lat, mut prov) = run_forced(model, case, policy, forced)?;
    if canonical_fault(model, case, &mut o) {
        prov.fault = Some(&rules::MEM_GP_NON_CANONICAL);
    }
    Ok((o, lat, prov))
}

/// Makes `o`'s fault the one the CPU raises for a non-canonical address
/// ([`crate::non_canonical::fault_for`]); whether it changed.
fn canonical_fault(model: &CpuModel, case: &Case, o: &mut Outcome) -> bool {
    let Some(f) = o.fault else {
        return false;
    };
    let g = crate::non_canonical::fault_for(model, case, f);
    o.fault = Some(g);
    g != f
}

/// The architectural outcome and the latitude around it.
pub fn envelope(model: &CpuModel, case: &Case) -> Result<(Outcome, Freedoms), Unsupported> {
    run_canonical(model, case, Policy::Architectural, None).map(|(o, l, _)| (o, l))
}

fn show(f: &Option<FaultAt>) -> String {
    match f {
        None => "none".into(),
        Some(FaultAt { fault, insn: None }) => format!("{fault} at the initial XRSTOR"),
        Some(FaultAt {
            fault,
            insn: Some(k),
        }) => format!("{fault} at instruction {k}"),
    }
}

/// Judges `obs`, an outcome of `case` on an implementation of `model`'s
/// architecture: every rule it breaks, or the latitude it takes.
pub fn check(model: &CpuModel, case: &Case, obs: &Outcome) -> Result<Judgement, Unsupported> {
    let mut j = Judgement::default();
    // A #PF outside the case's pages: its P bit is the OS's (foreign_page.rs),
    // judged as the model's.
    let normalized;
    let obs = match obs.fault {
        Some(f) if crate::foreign_page::present_bit_unknown(case, &f.fault) => {
            let mut o = obs.clone();
            o.fault = Some(crate::foreign_page::with_model_present_bit(case, f));
            if o.fault != obs.fault {
                j.took(&latitude::PF_P_BIT_OUTSIDE_CASE);
            }
            normalized = o;
            &normalized
        }
        _ => obs,
    };
    let (arch, lat, prov) = run_canonical(model, case, Policy::Architectural, None)?;
    if arch.fault == obs.fault {
        rest(model, case, &arch, &lat, &prov, obs, &mut j);
        return Ok(j);
    }
    let field = || {
        (
            "fault".to_string(),
            format!("SDM: {}, observed: {}", show(&arch.fault), show(&obs.fault)),
        )
    };
    let same_insn = matches!((arch.fault, obs.fault), (Some(a), Some(o)) if a.insn == o.insn);
    // Another fault the SDM allows before any access: #AC for #GP(0) (or the
    // reverse) on a misaligned area, the non-canonical fault for the alignment
    // fault (or the reverse).
    if same_insn {
        let o = obs.fault.expect("same_insn");
        let alt = o
            .insn
            .and_then(|k| lat.alt_faults.get(&k))
            .and_then(|v| v.iter().find(|(f, _)| *f == o.fault));
        if let Some(&(_, l)) = alt {
            j.took(l);
            rest(model, case, &arch, &lat, &prov, obs, &mut j);
            return Ok(j);
        }
    }
    match obs.fault {
        Some(o @ FaultAt { insn: Some(k), .. }) => {
            let later = arch.fault.is_none_or(|a| a.insn.is_some_and(|ak| ak >= k));
            if !later {
                // Faulted past the instruction the SDM stops at.
                let (f, d) = field();
                let site = arch.fault.map(|a| Site::of_fault(a.insn));
                j.breaks(
                    (prov.fault.unwrap_or(&rules::FAULT_ONLY_AS_LISTED), site),
                    f,
                    d,
                );
                return Ok(j);
            }
            let region = lat.pf_regions.get(&k);
            match o.fault {
                Fault::Pf { err, addr } => {
                    if region.is_some_and(|r| r.allows(&case.memory, case.control.cpl, err, addr)) {
                        // A #PF on any byte the instruction may access (SDM1
                        // §13.13), where the architectural run went on or stopped
                        // at this instruction or later.
                        j.took(&latitude::PF_ANY_BYTE);
                    } else if region.is_some_and(|r| !r.contains(addr)) {
                        let (f, d) = field();
                        j.breaks((&rules::MEM_PF_WITHIN_REGION, Some(Site::Insn(k))), f, d);
                    } else {
                        let (f, d) = field();
                        j.breaks((&rules::MEM_PF, Some(Site::Insn(k))), f, d);
                    }
                }
                _ => {
                    let rule = match arch.fault {
                        // The fault the SDM raises at this instruction, not raised.
                        Some(a) if a.insn == Some(k) => {
                            prov.fault.unwrap_or(&rules::FAULT_ONLY_AS_LISTED)
                        }
                        _ => &rules::FAULT_ONLY_AS_LISTED,
                    };
                    let (f, d) = field();
                    j.breaks((rule, Some(Site::Insn(k))), f, d);
                }
            }
            // The rest, against a run stopped there (the instruction's own
            // effects become latitude).
            let (arch, lat, prov) = run_canonical(model, case, Policy::Architectural, Some(o))?;
            rest(model, case, &arch, &lat, &prov, obs, &mut j);
        }
        _ => {
            // No fault where the SDM raises one (or a fault at the initial
            // XRSTOR): the rule behind the SDM's fault; the rest follows from it.
            let at = match (arch.fault, obs.fault) {
                (Some(a), _) => (
                    prov.fault.unwrap_or(&rules::FAULT_ONLY_AS_LISTED),
                    Some(Site::of_fault(a.insn)),
                ),
                (None, o) => (
                    &rules::FAULT_ONLY_AS_LISTED,
                    o.map(|o| Site::of_fault(o.insn)),
                ),
            };
            let (f, d) = field();
            j.breaks(at, f, d);
        }
    }
    Ok(j)
}

/// A run of neighbouring bytes broken by one rule: the first offset, what
/// the SDM allows, what was observed.
struct Run {
    at: At,
    start: usize,
    sdm: Vec<u8>,
    observed: Vec<u8>,
}

/// Byte-level breaks, merged into one field per run.
#[derive(Default)]
struct ByteRuns {
    runs: Vec<Run>,
}

impl ByteRuns {
    fn push(&mut self, at: At, k: usize, p: u8, o: u8) {
        if let Some(r) = self.runs.last_mut() {
            if r.at.0.id == at.0.id && r.at.1 == at.1 && r.start + r.sdm.len() == k {
                r.sdm.push(p);
                r.observed.push(o);
                return;
            }
        }
        self.runs.push(Run {
            at,
            start: k,
            sdm: vec![p],
            observed: vec![o],
        });
    }
    fn into(self, j: &mut Judgement, name: impl Fn(usize, usize) -> String) {
        let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for r in self.runs {
            j.breaks(
                r.at,
                name(r.start, r.start + r.sdm.len()),
                format!("SDM allows {}, observed {}", hex(&r.sdm), hex(&r.observed)),
            );
        }
    }
}

/// The component whose bytes hold final-image offset `k` (None: not a
/// component's, see [`final_rule`]).
fn final_component(model: &CpuModel, case: &Case, k: usize) -> Option<usize> {
    match k {
        0..24 | 32..160 => Some(0),
        160..416 => Some(1),
        576.. => {
            crate::layout::standard(model, crate::Xfeatures::from_bits_retain(case.control.xcr0))
                .slots
                .iter()
                .find(|s| (s.offset as usize..(s.offset + s.size) as usize).contains(&k))
                .map(|s| s.index)
        }
        _ => None,
    }
}

/// The state byte ([`latitude::StateByte`]) final-image offset `k` shows.
fn final_state_byte(model: &CpuModel, case: &Case, k: usize) -> Option<latitude::StateByte> {
    match k {
        0..160 => Some((0, k as u32)),
        160..416 => Some((1, k as u32 - 160)),
        576.. => {
            crate::layout::standard(model, crate::Xfeatures::from_bits_retain(case.control.xcr0))
                .slots
                .iter()
                .find(|s| (s.offset as usize..(s.offset + s.size) as usize).contains(&k))
                .map(|s| (s.index, k as u32 - s.offset))
        }
        _ => None,
    }
}

/// Each final-image byte's part: component i (0 = x87, 1 = the XMM
/// registers) as i, MXCSR as 64, any other byte as 65 + its offset.
fn final_parts(model: &CpuModel, case: &Case, len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len)
        .map(|k| match k {
            0..24 | 32..160 => 0,
            24..28 => 64,
            160..416 => 1,
            _ => 65 + k,
        })
        .collect();
    let lay = crate::layout::standard(model, crate::Xfeatures::from_bits_retain(case.control.xcr0));
    for s in &lay.slots {
        let end = ((s.offset + s.size) as usize).min(len);
        for p in &mut v[(s.offset as usize).min(end)..end] {
            *p = s.index;
        }
    }
    v
}

/// The rule behind final-image byte `k`.
fn final_rule(model: &CpuModel, case: &Case, prov: &Provenance, k: usize) -> At {
    if let Some(i) = final_component(model, case, k) {
        return prov.of_component(i);
    }
    match k {
        24..28 => prov
            .mxcsr
            .map_or((&rules::STATE_UNCHANGED, None), |(r, s)| (r, Some(s))),
        28..32 => (&rules::SAVE_MXCSR_MASK, None),
        512..576 => (&rules::XSAVE_HEADER_RMW, None),
        _ => (&rules::SAVE_WRITES_ONLY_SAVED, None),
    }
}

/// Judges everything but the fault (equal, or already judged) against the
/// architectural run `arch`.
fn rest(
    model: &CpuModel,
    case: &Case,
    arch: &Outcome,
    lat: &Freedoms,
    prov: &Provenance,
    obs: &Outcome,
    j: &mut Judgement,
) {
    for (k, ((&p, &o), &free)) in arch
        .gprs
        .iter()
        .zip(&obs.gprs)
        .zip(&lat.gpr_free)
        .enumerate()
    {
        if (p ^ o) & !free != 0 {
            j.breaks(
                prov.of_gpr(k)
                    .map_or((&rules::GPRS_UNCHANGED, None), |(r, s)| (r, Some(s))),
                format!("gprs.{}", crate::case::GPR_NAMES[k]),
                format!("SDM allows {p:#x} (free bits {free:#x}), observed {o:#x}"),
            );
        } else if p != o {
            j.took(&latitude::XINUSE_1_OVER_INIT);
        }
    }
    // The state first (into `state`, added after the arena's verdict): a save
    // that copied a differing state byte as each side held it is not charged
    // with it; the rule that set the state is ([`Follows`]).
    let mut state = Judgement::default();
    let mut follows = Follows::default();
    if arch.supervisor != obs.supervisor {
        supervisor(model, case, arch, lat, prov, obs, &mut state, &mut follows);
    }
    final_image(model, case, arch, lat, prov, obs, &mut state, &mut follows);
    memory(model, case, arch, lat, prov, obs, &follows, j);
    for b in state.broken {
        for f in b.fields {
            j.breaks((b.rule, b.site), f.field, f.detail);
        }
    }
    for l in state.latitude {
        j.took(l);
    }
    let xcr0 = case.control.xcr0;
    match (arch.xinuse, obs.xinuse) {
        (Some(p), Some(o)) => {
            // XGETBV(1) = XCR0 AND XINUSE, bit 1 forced by MXCSR != 1F80H (SDM1
            // §13.6): a bit may read 1 over init contents, 0 only over them.
            let free = !not_init(model, case, &obs.final_image, true) & xcr0;
            if o & !xcr0 != 0 {
                j.breaks(
                    (&rules::XGETBV_RETURNS_XCR, None),
                    "xinuse".into(),
                    format!("XGETBV(1) bits outside XCR0 {xcr0:#x}: observed {o:#x}"),
                );
            }
            if (p & !o) & !free != 0 {
                j.breaks(
                    (&rules::XINUSE_ZERO_ONLY_IN_INIT, None),
                    "xinuse".into(),
                    format!("SDM allows {p:#x} (may clear {free:#x}), observed {o:#x}"),
                );
            }
            if o & !p & xcr0 != 0 {
                j.took(&latitude::XINUSE_1_OVER_INIT);
            }
        }
        (p, o) if p != o => j.breaks(
            (&rules::XGETBV_GP_INVALID_XCR, None),
            "xinuse".into(),
            format!(
                "XGETBV(1) available: SDM {}, observed {}",
                p.is_some(),
                o.is_some()
            ),
        ),
        _ => {}
    }
}

/// State bytes (capture-image offsets, supervisor-state offsets) judged
/// outside the envelope under the rule that set them. A save's byte that
/// copied one of them, holding what each side holds at the end, follows from
/// it: the save did its part (SDM: a save writes the state as it is), and the
/// difference is charged once, to the step that set the state (the initial
/// load of a wrongly restored image, not each save after it).
///
/// The state is observed through the implementation's own standard-form
/// XSAVE (the capture), so one wrong state and one wrong component save
/// routine (shared by the case's save and the capture) explain the same
/// bytes. The saves are cleared only where the state was set by a compacted
/// restore (XRSTORS, compacted XRSTOR: a path the standard capture does not
/// share), and STMXCSR only copies MXCSR: elsewhere both rules are named.
#[derive(Default)]
struct Follows {
    /// Capture bytes set by a compacted restore.
    final_image: std::collections::BTreeSet<usize>,
    /// Every capture byte judged broken (for STMXCSR's copy of MXCSR).
    final_any: std::collections::BTreeSet<usize>,
    supervisor: std::collections::BTreeSet<usize>,
    /// User components with a capture byte among `final_image`: an XSTATE_BV
    /// bit a save wrote from XINUSE as each side holds it follows from them.
    components: u64,
}

impl Follows {
    /// Whether arena byte `a` (architectural value `p`, observed `o`) is a
    /// copy of a state byte judged broken, as each side holds it.
    fn covers(
        &self,
        model: &CpuModel,
        case: &Case,
        prov: &Provenance,
        (arch, obs): (&Outcome, &Outcome),
        a: u64,
        (p, o): (u8, u8),
    ) -> bool {
        let Some(w) = prov.write_of(a) else {
            return false;
        };
        let k = (a - w.first) as usize;
        let (set, img_a, img_o, at) = match w.source {
            Some(Source::Legacy(off)) if w.rule.id == rules::INSN_SEMANTICS.id => (
                &self.final_any,
                &arch.final_image,
                &obs.final_image,
                off as usize + k,
            ),
            Some(Source::Legacy(off)) => (
                &self.final_image,
                &arch.final_image,
                &obs.final_image,
                off as usize + k,
            ),
            Some(Source::Comp(i)) if model.component(i).is_some_and(|c| c.supervisor) => {
                let mut at = 0usize;
                for x in crate::Xfeatures::from_bits_retain(case.control.xss).indices() {
                    if x == i {
                        break;
                    }
                    if let Some(c) = model.component(x).filter(|c| c.supervisor) {
                        at += c.size as usize;
                    }
                }
                (&self.supervisor, &arch.supervisor, &obs.supervisor, at + k)
            }
            Some(Source::Comp(i)) => {
                let lay = crate::layout::standard(
                    model,
                    crate::Xfeatures::from_bits_retain(case.control.xcr0),
                );
                let Some(slot) = lay.slots.iter().find(|s| s.index == i) else {
                    return false;
                };
                (
                    &self.final_image,
                    &arch.final_image,
                    &obs.final_image,
                    slot.offset as usize + k,
                )
            }
            None => return false,
        };
        if (512..520).contains(&at) {
            // XSTATE_BV: each differing bit a component judged broken, saved
            // as each side's XINUSE (the capture's XSTATE_BV) holds it.
            let bits = ((p ^ o) as u64) << (8 * (at - 512));
            let same = |img: &[u8], v: u8| img.get(at).is_some_and(|&x| (x ^ v) & (p ^ o) == 0);
            return bits & !self.components == 0 && same(img_a, p) && same(img_o, o);
        }
        set.contains(&at) && img_a.get(at) == Some(&p) && img_o.get(at) == Some(&o)
    }
    /// Whether a coupled choice's component is judged broken and the save's
    /// bit is the observed XINUSE (capture XSTATE_BV) bit: the save wrote
    /// what the state held.
    fn covers_coupled(&self, obs: &Outcome, bit: u32, observed_bit: Option<bool>) -> bool {
        let held = obs
            .final_image
            .get(512 + bit as usize / 8)
            .map(|&b| b >> (bit % 8) & 1 == 1);
        bit < 64
            && self.components >> bit & 1 == 1
            && observed_bit.is_some()
            && held == observed_bit
    }
}

/// Supervisor state, component by component; after an XRSTORS fault each
/// element (8 bytes, an MSR) may instead come from a partial restore
/// ([`Freedoms::supervisor_alts`], SDM1 §13.12).
#[allow(clippy::too_many_arguments)]
fn supervisor(
    model: &CpuModel,
    case: &Case,
    arch: &Outcome,
    lat: &Freedoms,
    prov: &Provenance,
    obs: &Outcome,
    j: &mut Judgement,
    follows: &mut Follows,
) {
    if arch.supervisor.len() != obs.supervisor.len() {
        j.breaks(
            (&rules::STATE_UNCHANGED, None),
            "supervisor".into(),
            format!(
                "{} bytes, observed {}",
                arch.supervisor.len(),
                obs.supervisor.len()
            ),
        );
        return;
    }
    let mut at = 0usize;
    for i in crate::Xfeatures::from_bits_retain(case.control.xss).indices() {
        let Some(c) = model.component(i).filter(|c| c.supervisor) else {
            continue;
        };
        let r = at..(at + c.size as usize).min(arch.supervisor.len());
        at = r.end;
        let element_allowed = |e: std::ops::Range<usize>| {
            lat.supervisor_alts
                .iter()
                .any(|alt| alt.get(e.clone()) == obs.supervisor.get(e.clone()))
        };
        let mut partial = false;
        let fits = (r.start..r.end).step_by(8).all(|e0| {
            let e = e0..(e0 + 8).min(r.end);
            if arch.supervisor[e.clone()] == obs.supervisor[e.clone()] {
                true
            } else {
                if prov.of_component(i).0.id == rules::XRSTOR_LOADS_COMPACTED.id {
                    follows.supervisor.extend(r.clone());
                }
                partial = true;
                element_allowed(e)
            }
        });
        if fits {
            if partial {
                j.took(&latitude::PARTIAL_RESTORE);
            }
        } else {
            if prov.of_component(i).0.id == rules::XRSTOR_LOADS_COMPACTED.id {
                follows.supervisor.extend(r.clone());
            }
            j.breaks(
                prov.of_component(i),
                format!(
                    "supervisor {}",
                    crate::component::component_name(i).unwrap_or("?")
                ),
                format!(
                    "SDM: {:02x?}, observed: {:02x?}",
                    &arch.supervisor[r.clone()],
                    &obs.supervisor[r]
                ),
            );
        }
    }
}

/// The arena: each byte the architectural value or an alternative; XSTATE_BV
/// bits of XSAVE free where XINUSE may be 1; the coupled choices of the saves
/// with the init (and modified) optimization judged jointly.
#[allow(clippy::too_many_arguments)]
fn memory(
    model: &CpuModel,
    case: &Case,
    arch: &Outcome,
    lat: &Freedoms,
    prov: &Provenance,
    obs: &Outcome,
    follows: &Follows,
    j: &mut Judgement,
) {
    let copied = |a: u64, p: u8, o: u8| follows.covers(model, case, prov, (arch, obs), a, (p, o));
    let base = case.memory.base;
    let at = |a: u64| -> Option<usize> {
        a.checked_sub(base)
            .map(|o| o as usize)
            .filter(|&o| o < obs.memory.len().min(arch.memory.len()))
    };
    // Bytes and header bits the coupled choices judge.
    let mut coupled_bytes = std::collections::HashSet::new();
    let mut coupled_bits: BTreeMap<u64, u64> = BTreeMap::new();
    for c in &lat.coupled {
        for &(a, _, _) in &c.bytes {
            coupled_bytes.insert(a);
        }
        if c.header_live {
            *coupled_bits.entry(c.header).or_default() |= 1 << c.bit;
        }
    }
    let mut header_free: BTreeMap<u64, u8> = BTreeMap::new();
    for (&h, &bits) in lat.header_free.iter().chain(coupled_bits.iter()) {
        for k in 0..8 {
            *header_free.entry(h.wrapping_add(k)).or_default() |= (bits >> (8 * k)) as u8;
        }
    }
    let mut runs = ByteRuns::default();
    let n = arch.memory.len().min(obs.memory.len());
    for k in 0..n {
        let (p, o) = (arch.memory[k], obs.memory[k]);
        let a = base.wrapping_add(k as u64);
        if p == o || coupled_bytes.contains(&a) {
            continue;
        }
        if let Some(&free) = header_free.get(&a) {
            if (p ^ o) & !free == 0 {
                // Judged by its coupled choice, or an XSAVE bit free alone.
                if lat.header_free.keys().any(|&h| (h..h + 8).contains(&a)) {
                    j.took(&latitude::XINUSE_1_OVER_INIT);
                }
                continue;
            }
        }
        if let Some(l) = lat.mem_allows(a, o) {
            j.took(l);
            continue;
        }
        if copied(a, p, o) {
            continue;
        }
        runs.push(
            prov.byte(a)
                .map_or((&rules::SAVE_WRITES_ONLY_SAVED, None), |(r, s)| {
                    (r, Some(s))
                }),
            k,
            p,
            o,
        );
    }
    runs.into(j, |s, e| {
        if e == s + 1 {
            format!("memory[{s:#x}]")
        } else {
            format!("memory[{s:#x}..{e:#x}]")
        }
    });
    if arch.memory.len() != obs.memory.len() {
        j.breaks(
            (&rules::SAVE_WRITES_ONLY_SAVED, None),
            "memory".into(),
            format!("{} bytes, observed {}", arch.memory.len(), obs.memory.len()),
        );
    }
    for c in &lat.coupled {
        let (w_ok, u_ok) = c.bytes.iter().fold((true, true), |(w, u), &(a, new, old)| {
            let o = at(a).map(|k| obs.memory[k]);
            let wrote = o == Some(new)
                || o.is_some_and(|o| lat.mem_allows(a, o).is_some() || copied(a, new, o));
            (w && wrote, u && o == Some(old))
        });
        let bit_of = |m: &[u8]| {
            at(c.header).filter(|&k| k + 8 <= m.len()).map(|k| {
                u64::from_le_bytes(m[k..k + 8].try_into().expect("8 bytes")) >> c.bit & 1 == 1
            })
        };
        let bit = if c.header_live {
            bit_of(&obs.memory)
        } else {
            None
        };
        let fits =
            |&(b, w): &(bool, bool)| bit.is_none_or(|x| x == b) && if w { w_ok } else { u_ok };
        if (w_ok || u_ok) && follows.covers_coupled(obs, c.bit, bit) {
            // The component is judged broken where it was set; the save
            // wrote it (or not) as the observed XINUSE says.
            continue;
        }
        if let Some(&(b, w)) = c.choices.iter().find(|ch| fits(ch)) {
            let arch_bit = if c.header_live {
                bit_of(&arch.memory)
            } else {
                None
            };
            let arch_w = c
                .bytes
                .iter()
                .all(|&(a, new, _)| at(a).is_some_and(|k| arch.memory[k] == new));
            if arch_bit.is_some_and(|x| x != b) || (arch_w != w && w_ok != u_ok) {
                j.took(if b && !w {
                    &latitude::MODIFIED_OPTIMIZATION
                } else {
                    &latitude::XINUSE_1_OVER_INIT
                });
            }
            continue;
        }
        let name = crate::component::component_name(c.bit as usize).unwrap_or("?");
        let shown = |w: bool| {
            if w {
                "written"
            } else if u_ok {
                "left as it was"
            } else {
                "neither written nor left as it was"
            }
        };
        let bytes_fit = c.choices.iter().any(|&(_, w)| if w { w_ok } else { u_ok });
        let (first, last) = c
            .bytes
            .iter()
            .fold((u64::MAX, 0), |(f, l), &(a, _, _)| (f.min(a), l.max(a)));
        let detail = format!(
            "XSTATE_BV[{}] = {} with {name}'s bytes {}; the SDM allows {}",
            c.bit,
            bit.map_or("?".into(), |b| (b as u8).to_string()),
            shown(w_ok && !u_ok),
            c.choices
                .iter()
                .map(|&(b, w)| format!(
                    "({}, {})",
                    b as u8,
                    if w { "written" } else { "not written" }
                ))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        if bytes_fit {
            j.breaks(
                (c.header_rule, Some(c.site)),
                format!(
                    "XSTATE_BV bit {} ({name}) at memory[{:#x}]",
                    c.bit,
                    c.header.wrapping_sub(base)
                ),
                detail,
            );
        } else {
            j.breaks(
                (c.save_rule, Some(c.site)),
                format!(
                    "{name} at memory[{:#x}..{:#x}]",
                    first.wrapping_sub(base),
                    last.wrapping_sub(base) + 1
                ),
                detail,
            );
        }
    }
}

/// The final registers: the capture image, except FSW.ES/B where recomputed,
/// FIP canonicalized, the XSTATE_BV bits (judged as XINUSE), partial updates
/// the SDM allows before a fault, x87 pointers a model leaves open, and state
/// bytes loaded from arena bytes with alternatives ([`Freedoms::state_alt`]).
#[allow(clippy::too_many_arguments)]
fn final_image(
    model: &CpuModel,
    case: &Case,
    arch: &Outcome,
    lat: &Freedoms,
    prov: &Provenance,
    obs: &Outcome,
    j: &mut Judgement,
    follows: &mut Follows,
) {
    let xcr0 = case.control.xcr0;
    if arch.final_image.len() != obs.final_image.len() {
        j.breaks(
            (&rules::STATE_UNCHANGED, None),
            "final".into(),
            format!(
                "image of {} bytes, observed {}",
                arch.final_image.len(),
                obs.final_image.len()
            ),
        );
        return;
    }
    let fip = |img: &[u8]| u64::from_le_bytes(img[8..16].try_into().unwrap_or([0; 8]));
    let fip_ok = arch.final_image.len() >= 16
        && latitude::fip_variants(fip(&arch.final_image)).contains(&fip(&obs.final_image));
    // XSAVE writes XSTATE_BV[i] = XINUSE[i]: 1 is always allowed, 0 only for a
    // component in its init configuration (judged on the observed state).
    let obs_init = !not_init(model, case, &obs.final_image, false) & xcr0;
    // Bytes a latitude of their own admits, whatever the rest shows.
    let own_latitude = |k: usize, p: u8, o: u8| -> Option<&'static Latitude> {
        if lat.fsw_es_b && (k == 2 || k == 3) && (p ^ o) & 0x80 == (p ^ o) {
            Some(&latitude::FSW_ES_B)
        } else if fip_ok && (8..16).contains(&k) {
            Some(&latitude::FIP_CANONICAL)
        } else if model.quirks.x87_pointers_uncontrolled && (6..24).contains(&k) {
            Some(&latitude::X87_POINTERS)
        } else {
            None
        }
    };
    // A state byte loaded from an arena byte that may hold other values
    // (Freedoms::state_alt): those values, on the architectural state only.
    let state_latitude = |k: usize, o: u8| -> Option<&'static Latitude> {
        if lat.state_alt.is_empty() {
            return None;
        }
        final_state_byte(model, case, k).and_then(|(i, j)| lat.state_allows(i, j, o))
    };
    // A partial restore: the parts (components, MXCSR) whose bytes all come
    // from one image the SDM allows after the fault.
    let parts = final_parts(model, case, obs.final_image.len());
    let mut from_alt = std::collections::BTreeSet::new();
    if !lat.final_alts.is_empty() {
        let mut off: BTreeMap<usize, bool> = BTreeMap::new();
        for (k, (&p, &o)) in arch.final_image.iter().zip(&obs.final_image).enumerate() {
            if p != o
                && !(512..520).contains(&k)
                && own_latitude(k, p, o).is_none()
                && state_latitude(k, o).is_none()
            {
                off.insert(parts[k], true);
            }
        }
        for alt in &lat.final_alts {
            let mut fits: BTreeMap<usize, bool> = off.keys().map(|&q| (q, true)).collect();
            for (k, &o) in obs.final_image.iter().enumerate() {
                if let Some(f) = fits.get_mut(&parts[k]) {
                    let p = arch.final_image[k];
                    let a = alt.get(k).copied().unwrap_or(p);
                    // FSW.ES/B recomputed and FIP canonicalized apply to the
                    // alternative's values as to the architectural ones.
                    *f &= o == a
                        || (512..520).contains(&k)
                        || own_latitude(k, p, o).is_some()
                        || own_latitude(k, a, o).is_some();
                }
            }
            from_alt.extend(fits.into_iter().filter(|&(_, f)| f).map(|(q, _)| q));
        }
    }
    let mut runs = ByteRuns::default();
    for (k, (&p, &o)) in arch.final_image.iter().zip(&obs.final_image).enumerate() {
        if p == o {
            continue;
        }
        if let Some(l) = own_latitude(k, p, o) {
            j.took(l);
            continue;
        }
        if (512..520).contains(&k) {
            let sh = 8 * (k - 512);
            let (p, o) = ((p as u64) << sh, (o as u64) << sh);
            if o & !xcr0 != 0 {
                runs.push(
                    (&rules::XSAVE_HEADER_RMW, None),
                    k,
                    (p >> sh) as u8,
                    (o >> sh) as u8,
                );
            } else if (p & !o) & !obs_init != 0 {
                runs.push(
                    (&rules::XINUSE_ZERO_ONLY_IN_INIT, None),
                    k,
                    (p >> sh) as u8,
                    (o >> sh) as u8,
                );
            } else {
                j.took(&latitude::XINUSE_1_OVER_INIT);
            }
            continue;
        }
        if from_alt.contains(&parts[k]) {
            j.took(&latitude::PARTIAL_RESTORE);
            continue;
        }
        if let Some(l) = state_latitude(k, o) {
            j.took(l);
            continue;
        }
        follows.final_any.insert(k);
        if final_rule(model, case, prov, k).0.id == rules::XRSTOR_LOADS_COMPACTED.id {
            follows.final_image.insert(k);
            if parts[k] < 64 {
                follows.components |= 1 << parts[k];
            }
        }
        runs.push(final_rule(model, case, prov, k), k, p, o);
    }
    runs.into(j, |s, e| {
        let what = match final_component(model, case, s) {
            Some(i) => crate::component::component_name(i)
                .unwrap_or("?")
                .to_string(),
            None => match s {
                24..28 => "MXCSR".into(),
                28..32 => "MXCSR_MASK".into(),
                512..520 => "XSTATE_BV".into(),
                _ => "reserved".into(),
            },
        };
        format!("final[{s}..{e}] ({what})")
    });
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
