//! Field-level comparison of two outcomes of one case, and the verdict against
//! the reference model: matches the model / inside the envelope but off the
//! model / outside the envelope.

use crate::casefile::{fmt_addr, fmt_fault, hex};
use crate::fields::Catalog;
use serde::Serialize;
use xsave_emu::case::GPR_NAMES;
use xsave_emu::component::component_name;
use xsave_emu::exec::decode;
use xsave_emu::{Case, CpuModel, Outcome};

/// One difference: where, and the value on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// "XMM3[4..8]", "XSTATE_BV bit 2 (AVX)", "fault", "memory arena+0x240..0x250".
    pub field: String,
    /// The class of the difference, for signatures ("final SSE", "fault #GP/none").
    #[serde(skip)]
    pub class: String,
    pub left: String,
    pub right: String,
}

/// The verdict on an observed outcome against the reference model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Equal to the model's prediction (noise aside).
    MatchesModel,
    /// Off the model's prediction but inside what the SDM allows: the
    /// latitude taken (`xsave_emu::latitude` ids; empty when the difference
    /// is the model's own path, not a freedom).
    InsideEnvelope { latitude: Vec<&'static str> },
    /// Outside the SDM's envelope: every rule broken, with the fields that
    /// show it (`xsave_emu::rules`).
    OutsideEnvelope { broken: Vec<BrokenRule> },
    /// The envelope could not be computed (the emulator does not model the case).
    Unjudged { reason: String },
}

/// A rule an outcome breaks ([`xsave_emu::Broken`] as data for reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRule {
    /// The rule's stable id ("xrstor.gp-mxcsr-reserved").
    pub rule: &'static str,
    pub sentence: &'static str,
    pub citation: &'static str,
    /// "field: detail", one per field that shows it.
    pub fields: Vec<String>,
    /// The step of the case it applied at ([`xsave_emu::Broken::site`]).
    #[serde(skip)]
    pub site: Option<xsave_emu::provenance::Site>,
}

impl Verdict {
    pub fn short(&self) -> &'static str {
        match self {
            Verdict::MatchesModel => "matches the model",
            Verdict::InsideEnvelope { .. } => "inside the envelope but off the model",
            Verdict::OutsideEnvelope { .. } => "outside the envelope",
            Verdict::Unjudged { .. } => "not judged",
        }
    }
    /// The ids of the rules broken (outside the envelope), in the order found.
    pub fn rules(&self) -> Vec<&'static str> {
        match self {
            Verdict::OutsideEnvelope { broken } => broken.iter().map(|b| b.rule).collect(),
            _ => Vec::new(),
        }
    }
    /// The ids of the latitude taken (inside the envelope, off the model).
    pub fn latitude(&self) -> &[&'static str] {
        match self {
            Verdict::InsideEnvelope { latitude } => latitude,
            _ => &[],
        }
    }
}

/// The verdict of a judgement of the envelope.
pub fn verdict_of(j: &xsave_emu::Judgement) -> Verdict {
    if j.inside() {
        return Verdict::InsideEnvelope {
            latitude: j.latitude_ids(),
        };
    }
    Verdict::OutsideEnvelope {
        broken: j
            .broken
            .iter()
            .map(|b| BrokenRule {
                rule: b.rule.id,
                sentence: b.rule.sentence,
                citation: b.rule.citation,
                fields: b
                    .fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.detail))
                    .collect(),
                site: b.site,
            })
            .collect(),
    }
}

/// The differences between two outcomes; those the model declares
/// uncontrolled (its quirks) are kept apart as noise.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    pub diffs: Vec<Diff>,
    pub noise: Vec<Diff>,
    /// Differences not counted because the model cannot know them (the P bit of
    /// a #PF outside the case's pages: the OS's page tables,
    /// `xsave_emu::foreign_page`), kept visible in the rendered output.
    pub notes: Vec<Diff>,
}

impl Comparison {
    pub fn is_match(&self) -> bool {
        self.diffs.is_empty()
    }
    /// A stable signature: a fault difference alone (what follows from it is
    /// its consequence), else the sorted, deduplicated classes of the
    /// differences, an XINUSE bit and the XSTATE_BV bit it shows as one class.
    pub fn signature(&self) -> String {
        if let Some(f) = self.diffs.iter().find(|d| d.field == "fault") {
            return f.class.clone();
        }
        // XINUSE and XSTATE_BV bits: one class, named by the lowest differing
        // bit and the direction (the others usually follow from it).
        let mut inuse: Option<(usize, String)> = None;
        let mut v: Vec<String> = Vec::new();
        for d in &self.diffs {
            let c = d.class.as_str();
            if let Some(r) = c
                .strip_prefix("XINUSE ")
                .or_else(|| c.strip_prefix("final XSTATE_BV "))
            {
                let bit: usize = r
                    .strip_prefix("bit ")
                    .and_then(|b| b.split_whitespace().next())
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(64);
                let name = format!("in use {r}: {} vs {}", d.left, d.right);
                if inuse.as_ref().is_none_or(|(b, _)| bit < *b) {
                    inuse = Some((bit, name));
                }
            } else {
                v.push(c.to_string());
            }
        }
        if let Some((_, n)) = inuse {
            v.push(n);
        }
        v.sort_unstable();
        v.dedup();
        v.join("; ")
    }
}

/// What the reference model leaves uncontrolled (its quirks), as byte masks.
struct Noise {
    /// FOP/FIP/FDP in the final image and in saved areas (AMD).
    x87_pointers: bool,
    /// XINUSE/XSTATE_BV bits that read 1 where 0 is predicted (AMD).
    xinuse: bool,
}

fn upper(name: &str) -> String {
    name.to_ascii_uppercase()
}

fn bit_name(i: usize) -> String {
    match component_name(i) {
        Some(n) => format!("bit {i} ({n})"),
        None => format!("bit {i}"),
    }
}

/// One difference per bit where `a` and `b` differ, with the bit's number.
fn bits(what: &str, a: u64, b: u64) -> Vec<(usize, Diff)> {
    let x = a ^ b;
    (0..64)
        .filter(|i| x >> i & 1 == 1)
        .map(|i| {
            let d = Diff {
                field: format!("{what} {}", bit_name(i)),
                class: format!("{what} {}", bit_name(i)),
                left: (a >> i & 1).to_string(),
                right: (b >> i & 1).to_string(),
            };
            (i, d)
        })
        .collect()
}

/// Addresses of the save areas the case's instructions write, from the
/// initial GPRs (enough for noise masks: the cases load their bases first).
pub(crate) fn save_areas(case: &Case) -> Vec<u64> {
    use iced_x86::Mnemonic::*;
    let mut v = Vec::new();
    for ins in decode(&case.code) {
        if matches!(
            ins.mnemonic(),
            Xsave
                | Xsave64
                | Xsaveopt
                | Xsaveopt64
                | Xsavec
                | Xsavec64
                | Xsaves
                | Xsaves64
                | Fxsave
                | Fxsave64
        ) {
            let g = case.gprs;
            let rip = ins.next_ip();
            if let Some(a) = ins.virtual_address(0, 0, |r, _, _| match r {
                iced_x86::Register::RIP => Some(rip),
                r if r.is_gpr64() => Some(g[r.number()]),
                r if r.is_gpr32() => Some(g[r.number()] & 0xffff_ffff),
                _ => Some(0),
            }) {
                v.push(a);
            }
        }
    }
    v
}

/// Compares `left` (the reference, usually the prediction) with `right`.
pub fn compare(model: &CpuModel, case: &Case, left: &Outcome, right: &Outcome) -> Comparison {
    let mut c = Comparison::default();
    if left == right {
        return c;
    }
    let noise = Noise {
        x87_pointers: model.quirks.x87_pointers_uncontrolled,
        xinuse: model.quirks.xinuse_noise,
    };
    let mut d = Vec::new();
    let present_bit_only = match (left.fault, right.fault) {
        (Some(a), Some(b)) => xsave_emu::foreign_page::differ_only_in_present_bit(case, &a, &b),
        _ => false,
    };
    if present_bit_only {
        c.notes.push(Diff {
            field: "fault".into(),
            class: "fault #PF P bit outside the case's pages".into(),
            left: fmt_fault(&left.fault),
            right: fmt_fault(&right.fault),
        });
    } else if left.fault != right.fault {
        let kind = |f: &Option<xsave_emu::FaultAt>| match f {
            None => "none".to_string(),
            Some(f) => crate::casefile::fmt_fault_kind(&f.fault)
                .split('(')
                .next()
                .unwrap_or("")
                .to_string(),
        };
        d.push(Diff {
            field: "fault".into(),
            class: format!(
                "fault {} vs {}{}",
                kind(&left.fault),
                kind(&right.fault),
                match (left.fault, right.fault) {
                    (Some(xsave_emu::FaultAt { insn: None, .. }), _)
                    | (_, Some(xsave_emu::FaultAt { insn: None, .. })) => " at init",
                    _ => "",
                }
            ),
            left: fmt_fault(&left.fault),
            right: fmt_fault(&right.fault),
        });
    }
    for (k, name) in GPR_NAMES.iter().enumerate() {
        if left.gprs[k] != right.gprs[k] {
            d.push(Diff {
                field: upper(name),
                class: format!("gpr {name}"),
                left: fmt_addr(left.gprs[k]),
                right: fmt_addr(right.gprs[k]),
            });
        }
    }
    // Final image, field by field.
    if left.final_image != right.final_image {
        let cat = Catalog::new(model, case.control.xcr0, false);
        let (a, b) = (&left.final_image, &right.final_image);
        if a.len() != b.len() {
            d.push(Diff {
                field: "final image size".into(),
                class: "final image size".into(),
                left: a.len().to_string(),
                right: b.len().to_string(),
            });
        }
        let n = a.len().min(b.len());
        let mut i = 0;
        while i < n {
            if a[i] == b[i] {
                i += 1;
                continue;
            }
            if (512..520).contains(&i) || (520..528).contains(&i) {
                let off = if i < 520 { 512 } else { 520 };
                let q = |x: &[u8]| u64::from_le_bytes(x[off..off + 8].try_into().unwrap());
                let what = if off == 512 { "XSTATE_BV" } else { "XCOMP_BV" };
                for (bit, x) in bits(what, q(a), q(b)) {
                    let noisy = noise.xinuse
                        && what == "XSTATE_BV"
                        && (x.left == "0" || same_component(model, case, left, right, bit));
                    if noisy {
                        c.noise.push(x)
                    } else {
                        d.push(Diff {
                            class: format!("final {}", x.class),
                            ..x
                        })
                    }
                }
                i = off + 8;
                continue;
            }
            match cat.at(i) {
                Some(f) => {
                    let (fo, fl) = (f.offset, f.len);
                    let mut lo = usize::MAX;
                    let mut hi = 0;
                    for k in fo..(fo + fl).min(n) {
                        if a[k] != b[k] {
                            lo = lo.min(k);
                            hi = k + 1;
                        }
                    }
                    let field = if lo == fo && hi == fo + fl {
                        upper(&f.name)
                    } else {
                        format!("{}[{}..{}]", upper(&f.name), lo - fo, hi - fo)
                    };
                    let comp = f.component.and_then(component_name).unwrap_or("header");
                    let x = Diff {
                        field,
                        class: format!("final {comp}"),
                        left: hex(&a[lo..hi]),
                        right: hex(&b[lo..hi]),
                    };
                    if noise.x87_pointers && (6..24).contains(&fo) {
                        c.noise.push(x);
                    } else {
                        d.push(x);
                    }
                    i = (fo + fl).max(i + 1);
                }
                None => {
                    let start = i;
                    while i < n && a[i] != b[i] && cat.at(i).is_none() && !(512..528).contains(&i) {
                        i += 1;
                    }
                    d.push(Diff {
                        field: format!("final[{start}..{i}]"),
                        class: format!("final bytes {}", region(start)),
                        left: hex(&a[start..i]),
                        right: hex(&b[start..i]),
                    });
                }
            }
        }
    }
    match (left.xinuse, right.xinuse) {
        (Some(x), Some(y)) if x != y => {
            for (bit, b) in bits("XINUSE", x, y) {
                if noise.xinuse && (b.left == "0" || same_component(model, case, left, right, bit))
                {
                    c.noise.push(b)
                } else {
                    d.push(b)
                }
            }
        }
        (x, y) if x != y => d.push(Diff {
            field: "XINUSE".into(),
            class: "XINUSE availability".into(),
            left: format!("{x:?}"),
            right: format!("{y:?}"),
        }),
        _ => {}
    }
    if left.supervisor != right.supervisor {
        // By field (`PL1_SSP`, the case-file names upper-cased) where both
        // sides hold the case's IA32_XSS components, else as a whole.
        let fields = crate::fields::supervisor_fields(model, case.control.xss);
        let whole = fields.iter().map(|f| f.offset + f.len).max();
        if whole == Some(left.supervisor.len()) && whole == Some(right.supervisor.len()) {
            for f in &fields {
                let r = f.offset..f.offset + f.len;
                if left.supervisor[r.clone()] != right.supervisor[r.clone()] {
                    d.push(Diff {
                        field: f.name.to_uppercase(),
                        class: "supervisor".into(),
                        left: crate::casefile::fmt_value(&left.supervisor[r.clone()]),
                        right: crate::casefile::fmt_value(&right.supervisor[r]),
                    });
                }
            }
        } else {
            d.push(Diff {
                field: "supervisor state".into(),
                class: "supervisor".into(),
                left: hex(&left.supervisor),
                right: hex(&right.supervisor),
            });
        }
    }
    if left.memory != right.memory {
        let areas = if noise.x87_pointers || noise.xinuse {
            save_areas(case)
        } else {
            Vec::new()
        };
        let base = case.memory.base;
        let noisy = |k: usize, l: u8, r: u8| {
            let addr = base + k as u64;
            areas.iter().any(|&s| {
                (noise.x87_pointers && addr >= s + 6 && addr < s + 24)
                    || (noise.xinuse && addr >= s + 512 && addr < s + 520 && l & !r == 0)
            })
        };
        let (a, b) = (&left.memory, &right.memory);
        let n = a.len().min(b.len());
        let mut i = 0;
        while i < n {
            if a[i] == b[i] {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i + 1;
            let mut j = end;
            while j < n && j - end < 4 && j - start < 64 {
                if a[j] != b[j] {
                    end = j + 1;
                }
                j += 1;
            }
            let all_noise = (start..end).all(|k| a[k] == b[k] || noisy(k, a[k], b[k]));
            let x = Diff {
                field: format!("memory {}..{:#x}", fmt_addr(base + start as u64), end),
                class: "memory".into(),
                left: hex(&a[start..end]),
                right: hex(&b[start..end]),
            };
            if all_noise {
                c.noise.push(x)
            } else {
                d.push(x)
            }
            i = end;
        }
        if a.len() != b.len() {
            d.push(Diff {
                field: "memory size".into(),
                class: "memory size".into(),
                left: a.len().to_string(),
                right: b.len().to_string(),
            });
        }
    }
    c.diffs = d;
    c
}

/// Whether component `i` holds the same contents in both final images (an
/// XINUSE difference over equal contents is the noise some silicon shows).
fn same_component(model: &CpuModel, case: &Case, a: &Outcome, b: &Outcome, i: usize) -> bool {
    let (x, y) = (&a.final_image, &b.final_image);
    let eq =
        |r: std::ops::Range<usize>| r.end <= x.len() && r.end <= y.len() && x[r.clone()] == y[r];
    match i {
        0 => eq(0..24) && eq(32..160),
        1 => eq(160..416),
        64.. => false,
        _ => xsave_emu::layout::standard(
            model,
            xsave_emu::Xfeatures::from_bits_retain(case.control.xcr0),
        )
        .slot(i)
        .is_some_and(|s| eq(s.offset as usize..(s.offset + s.size) as usize)),
    }
}

fn region(off: usize) -> &'static str {
    match off {
        0..=31 => "legacy header",
        32..=159 => "ST padding",
        160..=415 => "XMM",
        416..=511 => "legacy reserved",
        512..=575 => "XSAVE header",
        _ => "extended",
    }
}

/// The verdict on `observed` for `case` on `model`, given its comparison with
/// the model's prediction.
pub fn verdict(model: &CpuModel, case: &Case, cmp: &Comparison, observed: &Outcome) -> Verdict {
    if cmp.is_match() {
        return Verdict::MatchesModel;
    }
    match xsave_emu::check(model, case, observed) {
        Ok(j) => verdict_of(&j),
        Err(u) => Verdict::Unjudged { reason: u.0 },
    }
}

/// The comparison as text, one difference a line.
pub fn render(cmp: &Comparison, left_name: &str, right_name: &str) -> String {
    let mut s = String::new();
    for d in &cmp.diffs {
        s.push_str(&format!(
            "  {}: {} ({left_name}) vs {} ({right_name})\n",
            d.field, d.left, d.right
        ));
    }
    for d in &cmp.noise {
        s.push_str(&format!(
            "  (noise the model allows) {}: {} vs {}\n",
            d.field, d.left, d.right
        ));
    }
    for d in &cmp.notes {
        s.push_str(&format!(
            "  (not compared: the #PF P bit outside the case's pages is the OS's page tables) {}: {} vs {}\n",
            d.field, d.left, d.right
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::{Control, Fault, FaultAt};

    fn outcome(model: &CpuModel) -> (Case, Outcome) {
        let case = Case::new(model, Control::user(model));
        let o = xsave_emu::predict(model, &case).unwrap();
        (case, o)
    }

    #[test]
    fn differences_are_named_by_register_bit_and_fault() {
        let m = CpuModel::builtin("xeon-amx-vm").unwrap();
        let (case, a) = outcome(&m);
        let mut b = a.clone();
        b.final_image[160 + 3 * 16 + 4..160 + 3 * 16 + 8].fill(0xaa); // XMM3 bytes 4..8
        b.final_image[512] |= 1 << 2; // XSTATE_BV[2]
        b.fault = Some(FaultAt {
            fault: Fault::Gp(0),
            insn: Some(0),
        });
        let c = compare(&m, &case, &a, &b);
        let fields: Vec<&str> = c.diffs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["fault", "XMM3[4..8]", "XSTATE_BV bit 2 (AVX)"]);
        assert_eq!(c.diffs[0].left, "none");
        assert_eq!(c.diffs[0].right, "#GP(0x0) at 0");
        // A fault difference alone names the signature.
        assert_eq!(c.signature(), "fault none vs #GP");
    }

    #[test]
    fn xinuse_noise_only_where_the_model_declares_it() {
        // A model that names the quirk (xinuse-noise) accepts an XINUSE bit of a
        // component in init configuration either way; one that does not, never.
        // (The zen5 model named it until the Zen 5 host showed the runs' XINUSE
        // follow the contents: quirk xinuse-by-contents.)
        for (name, noisy) in [("zen5", true), ("zen5", false), ("xeon-amx-vm", false)] {
            let mut m = CpuModel::builtin(name).unwrap();
            m.quirks.xinuse_noise = noisy;
            let (case, mut a) = outcome(&m);
            a.xinuse = Some(a.xinuse.unwrap() | 4);
            a.final_image[512] |= 4;
            let mut b = a.clone();
            b.xinuse = Some(b.xinuse.unwrap() & !4);
            b.final_image[512] &= !4;
            let c = compare(&m, &case, &a, &b);
            assert_eq!(c.is_match(), noisy, "{name}: {c:?}");
            assert_eq!(c.noise.is_empty(), !noisy, "{name}");
        }
    }

    #[test]
    fn the_pf_present_bit_outside_the_case_pages_is_not_compared() {
        // xsave_emu::foreign_page: whether a page outside the arena and the code page
        // is present is the OS's page tables (diff_native on the Intel host: err 5 at
        // a kernel-half address, the model 4): a difference in that bit alone is no
        // mismatch, and the rendered output says why. On an arena page it counts.
        let m = CpuModel::builtin("xeon-amx-vm").unwrap();
        let (case, mut a) = outcome(&m);
        let pf = |err, addr| {
            Some(FaultAt {
                fault: Fault::Pf { err, addr },
                insn: Some(0),
            })
        };
        let k = 0xffff_ffff_0000_0208;
        a.fault = pf(4, k);
        let mut b = a.clone();
        b.fault = pf(5, k);
        let c = compare(&m, &case, &a, &b);
        assert!(c.is_match(), "{c:?}");
        assert_eq!(c.notes.len(), 1);
        let text = render(&c, "emu", "native");
        assert_eq!(
            text,
            "  (not compared: the #PF P bit outside the case's pages is the OS's page tables) \
             fault: #PF(err=0x4, cr2=0xffffffff00000208) at 0 vs #PF(err=0x5, cr2=0xffffffff00000208) at 0\n"
        );
        // Another error-code bit, or an arena address: a difference.
        b.fault = pf(6, k);
        assert_eq!(compare(&m, &case, &a, &b).diffs.len(), 1);
        let arena = case.memory.base + 0x10;
        a.fault = pf(4, arena);
        b.fault = pf(5, arena);
        let c = compare(&m, &case, &a, &b);
        assert_eq!(c.diffs.len(), 1);
        assert!(c.notes.is_empty());
    }
}
