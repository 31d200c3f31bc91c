//! What a campaign counts a mismatch as: outside the envelope, the signature
//! (backend, rule broken, instruction), one per rule the outcome breaks; inside
//! the envelope but off the model, the latitude the implementation took.
//!
//! [`judge`] is the one place that reads the envelope's verdict; everything
//! downstream (campaign, known findings, report) works on [`Judgement`].

use crate::compare::{verdict, Comparison, Verdict};
use serde::Serialize;
use xsave_emu::exec::decode;
use xsave_emu::provenance::Site;
use xsave_emu::{Case, CpuModel, Outcome};

/// A rule an outcome breaks, with the fields that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The rule's stable id (`xsavec.ud-not-advertised`).
    pub rule: String,
    /// Fields that show it ("fault", "XMM3[4..8]").
    pub fields: Vec<String>,
    /// The step of the case it applied at (the initial load, instruction k).
    #[serde(skip)]
    pub site: Option<Site>,
}

/// A mismatch as the envelope judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "judgement", rename_all = "snake_case")]
pub enum Judgement {
    /// Outside the envelope: every rule broken (at least one).
    Breaks { rules: Vec<Broken> },
    /// Inside the envelope but off the model: the latitude taken, one name each.
    Latitude { taken: Vec<String> },
    /// The envelope could not be computed for the case.
    Unjudged { reason: String },
}

/// Judges a mismatch (`cmp` non-empty) of `obs` against `model`'s envelope.
pub fn judge(model: &CpuModel, case: &Case, cmp: &Comparison, obs: &Outcome) -> Judgement {
    from_verdict(&verdict(model, case, cmp, obs))
}

/// What a campaign calls a difference inside the envelope that names no
/// latitude: the model's prediction follows a quirk of its silicon, the
/// observed outcome the architecture's other choice.
pub const MODEL_PATH: &str = "model-quirk-not-followed";

/// The judgement a verdict gives: the rules broken (each with its fields), or
/// the latitude taken ([`MODEL_PATH`] where none is named).
pub fn from_verdict(v: &Verdict) -> Judgement {
    match v {
        Verdict::MatchesModel => Judgement::Latitude { taken: Vec::new() },
        Verdict::InsideEnvelope { latitude } if latitude.is_empty() => Judgement::Latitude {
            taken: vec![MODEL_PATH.to_string()],
        },
        Verdict::InsideEnvelope { latitude } => Judgement::Latitude {
            taken: latitude.iter().map(|l| l.to_string()).collect(),
        },
        Verdict::OutsideEnvelope { broken } => Judgement::Breaks {
            rules: broken
                .iter()
                .map(|b| Broken {
                    rule: b.rule.to_string(),
                    fields: b.fields.clone(),
                    site: b.site,
                })
                .collect(),
        },
        Verdict::Unjudged { reason } => Judgement::Unjudged {
            reason: reason.clone(),
        },
    }
}

/// What a signature calls the runner's load of the case's initial image (its
/// XRSTOR64, or XRSTORS64 for a compacted image at CPL 0, before the case's
/// first instruction).
pub const INITIAL_LOAD: &str = "initial load";

/// The instruction a mismatch is charged to where the envelope names no step
/// ([`Broken::site`]): the first faulting instruction of either outcome, else
/// the last XSAVE-family instruction of the case, else its last instruction;
/// its mnemonic in lower case without the `64` of REX.W forms (`xsave64` ->
/// `xsave`); [`INITIAL_LOAD`] for a fault there.
pub fn instruction(case: &Case, reference: &Outcome, obs: &Outcome) -> String {
    let insns = decode(&case.code);
    let faulting = [reference.fault, obs.fault]
        .into_iter()
        .flatten()
        .map(|f| f.insn)
        .min();
    let ins = match faulting {
        Some(None) => return INITIAL_LOAD.into(),
        Some(Some(k)) => insns.get(k),
        None => insns
            .iter()
            .rev()
            .find(|i| is_xsave_family(&mnemonic(i)))
            .or(insns.last()),
    };
    ins.map_or_else(|| "-".into(), mnemonic)
}

/// The case's instructions as [`instruction`] names them, space-separated
/// (what a judgement's steps are named by).
pub fn mnemonics(case: &Case) -> String {
    decode(&case.code)
        .iter()
        .map(mnemonic)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mnemonic(i: &iced_x86::Instruction) -> String {
    let m = format!("{:?}", i.mnemonic()).to_ascii_lowercase();
    match m.strip_suffix("64") {
        Some(s) if is_xsave_family(s) => s.to_string(),
        _ => m,
    }
}

fn is_xsave_family(m: &str) -> bool {
    matches!(
        m.trim_end_matches("64"),
        "xsave"
            | "xsaveopt"
            | "xsavec"
            | "xsaves"
            | "xrstor"
            | "xrstors"
            | "fxsave"
            | "fxrstor"
            | "xgetbv"
            | "xsetbv"
    )
}

/// One signature of a campaign: a rule one backend breaks on one instruction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Signature {
    pub backend: String,
    pub rule: String,
    pub instruction: String,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} on {}", self.backend, self.rule, self.instruction)
    }
}

/// The instruction at a step of `case`: [`INITIAL_LOAD`], or instruction k's
/// mnemonic as [`instruction`] writes it.
pub fn at_site(case: &Case, site: Site) -> String {
    match site {
        Site::Initial => INITIAL_LOAD.into(),
        Site::Insn(k) => decode(&case.code)
            .get(k)
            .map_or_else(|| "-".into(), mnemonic),
    }
}

/// The instruction a broken rule is charged to: the step the envelope says
/// applied it (the initial load, or the instruction that set the differing
/// value: a difference the initial load made is the initial load's, whatever
/// instructions follow); where it names none, the rule's own instruction where
/// its id names one the case holds, else `default` ([`instruction`]).
pub fn charge_broken(b: &Broken, case: &Case, default: &str) -> String {
    match b.site {
        Some(s) => at_site(case, s),
        None => charge(&b.rule, case, default),
    }
}

/// The instruction a rule without a step is charged to: the rule's own
/// instruction where its id names one the case holds (`xrstor.loads-...` in a
/// case that ends with XSAVEOPT is XRSTOR's), else `default` ([`instruction`]).
pub fn charge(rule: &str, case: &Case, default: &str) -> String {
    let scope = rule.split('.').next().unwrap_or("");
    if scope == default || !(is_xsave_family(scope) || scope == "ldmxcsr") {
        return default.to_string();
    }
    let has = decode(&case.code).iter().any(|i| mnemonic(i) == scope);
    if has { scope } else { default }.to_string()
}

/// The signatures of a judgement (one per rule and instruction; none inside
/// the envelope), each charged to its instruction ([`charge_broken`]).
pub fn signatures(backend: &str, j: &Judgement, case: &Case, default: &str) -> Vec<Signature> {
    let mut v: Vec<Signature> = Vec::new();
    if let Judgement::Breaks { rules } = j {
        for b in rules {
            let s = Signature {
                backend: backend.to_string(),
                rule: b.rule.clone(),
                instruction: charge_broken(b, case, default),
            };
            if !v.contains(&s) {
                v.push(s);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::BrokenRule;
    use xsave_emu::{Control, Fault, FaultAt};

    fn case_with(code: &[u8]) -> (Case, Outcome) {
        let m = CpuModel::builtin("xeon-amx-vm").unwrap();
        let mut c = Case::new(&m, Control::user(&m));
        c.code = code.to_vec();
        let o = xsave_emu::predict(&m, &c).unwrap();
        (c, o)
    }

    #[test]
    fn the_faulting_instruction_is_charged() {
        // xsave64 [rdi]; xrstor [rdi]; xgetbv: the reference faults at 1.
        let (c, mut a) = case_with(&[0x48, 0x0f, 0xae, 0x27, 0x0f, 0xae, 0x2f, 0x0f, 0x01, 0xd0]);
        let mut b = a.clone();
        b.fault = None;
        a.fault = Some(FaultAt {
            fault: Fault::Gp(0),
            insn: Some(1),
        });
        assert_eq!(instruction(&c, &a, &b), "xrstor");
        a.fault = Some(FaultAt {
            fault: Fault::Nm,
            insn: None,
        });
        assert_eq!(instruction(&c, &a, &b), "initial load");
        // No fault: the last XSAVE-family instruction.
        a.fault = None;
        assert_eq!(instruction(&c, &a, &b), "xgetbv");
    }

    #[test]
    fn a_rule_is_charged_to_the_instruction_it_names() {
        // xrstor64 [rdi]; xsaveopt64 [rdi]: the state XRSTOR loaded shows in the save.
        let (c, _) = case_with(&[0x48, 0x0f, 0xae, 0x2f, 0x48, 0x0f, 0xae, 0x37]);
        assert_eq!(
            charge("xrstor.loads-rfbm-by-xstate-bv", &c, "xsaveopt"),
            "xrstor"
        );
        assert_eq!(
            charge("xsave.header-xstate-bv-rmw", &c, "xsaveopt"),
            "xsaveopt"
        );
        assert_eq!(charge("save.x87-format", &c, "xsaveopt"), "xsaveopt");
        assert_eq!(
            charge("xsavec.ud-not-advertised", &c, "xsaveopt"),
            "xsaveopt"
        );
    }

    #[test]
    fn rex_w_forms_share_the_mnemonic() {
        let (c, a) = case_with(&[0x48, 0x0f, 0xc7, 0x27, 0x90]); // xsavec64 [rdi]; nop
        assert_eq!(instruction(&c, &a, &a), "xsavec");
    }

    #[test]
    fn a_violation_is_one_signature_per_rule() {
        let rule = |r: &'static xsave_emu::Rule, f: &str| BrokenRule {
            rule: r.id,
            sentence: r.sentence,
            citation: r.citation,
            fields: vec![f.to_string()],
            site: None,
        };
        let j = from_verdict(&Verdict::OutsideEnvelope {
            broken: vec![
                rule(
                    &xsave_emu::rules::XSAVE_MXCSR_WITH_SSE_OR_AVX,
                    "memory[0x18..0x20]: ...",
                ),
                rule(&xsave_emu::rules::SAVE_X87_FORMAT, "memory[0x6..0x8]: ..."),
            ],
        });
        let (c, _) = case_with(&[0x48, 0x0f, 0xae, 0x27]); // xsave64 [rdi]
        let s = signatures("exec:valgrind", &j, &c, "xsave");
        let ids: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            ids,
            [
                "exec:valgrind: xsave.mxcsr-with-sse-or-avx on xsave",
                "exec:valgrind: save.x87-format on xsave"
            ]
        );
        let inside = from_verdict(&Verdict::InsideEnvelope {
            latitude: vec!["xinuse-1-over-init"],
        });
        assert_eq!(
            inside,
            Judgement::Latitude {
                taken: vec!["xinuse-1-over-init".into()]
            }
        );
        assert!(signatures("x", &inside, &c, "xsave").is_empty());
        let quirk = from_verdict(&Verdict::InsideEnvelope { latitude: vec![] });
        assert_eq!(
            quirk,
            Judgement::Latitude {
                taken: vec![MODEL_PATH.into()]
            }
        );
    }
}
