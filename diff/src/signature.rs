//! What a campaign counts a mismatch as: outside the envelope, the signature
//! (backend, rule broken, instruction), one per rule the outcome breaks; inside
//! the envelope but off the model, the latitude the implementation took.
//!
//! [`judge`] is the one place that reads the envelope's verdict; everything
//! downstream (campaign, known findings, report) works on [`Judgement`].

use crate::compare::{verdict, Comparison, Verdict};
use serde::Serialize;
use xsave_emu::exec::decode;
use xsave_emu::{Case, CpuModel, Outcome};

/// A rule an outcome breaks, with the fields that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The rule's stable id (`xsavec.ud-not-advertised`).
    pub rule: String,
    /// Fields that show it ("fault", "XMM3[4..8]").
    pub fields: Vec<String>,
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
    from_verdict(&verdict(model, case, cmp, obs), cmp)
}

/// The judgement a verdict gives: the rules the envelope names
/// (`xsave_emu::rules` ids), or the latitude it names (`xsave_emu::latitude`
/// ids; where it names none, the difference is the model's own path and the
/// comparison's classes stand for it).
pub fn from_verdict(v: &Verdict, cmp: &Comparison) -> Judgement {
    match v {
        Verdict::MatchesModel => Judgement::Latitude { taken: Vec::new() },
        Verdict::InsideEnvelope { latitude } if latitude.is_empty() => Judgement::Latitude {
            taken: vec![cmp.signature()],
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
                })
                .collect(),
        },
        Verdict::Unjudged { reason } => Judgement::Unjudged {
            reason: reason.clone(),
        },
    }
}

/// The instruction a mismatch is charged to: the first faulting instruction of
/// either outcome, else the last XSAVE-family instruction of the case, else its
/// last instruction; its mnemonic in lower case without the `64` of REX.W
/// forms (`xsave64` -> `xsave`); `init` for a fault in the initial restore.
pub fn instruction(case: &Case, reference: &Outcome, obs: &Outcome) -> String {
    let insns = decode(&case.code);
    let faulting = [reference.fault, obs.fault]
        .into_iter()
        .flatten()
        .map(|f| f.insn)
        .min();
    let ins = match faulting {
        Some(None) => return "init".into(),
        Some(Some(k)) => insns.get(k),
        None => insns
            .iter()
            .rev()
            .find(|i| is_xsave_family(&mnemonic(i)))
            .or(insns.last()),
    };
    ins.map_or_else(|| "-".into(), mnemonic)
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

/// The signatures of a judgement (one per rule broken; none inside the envelope).
pub fn signatures(backend: &str, j: &Judgement, instruction: &str) -> Vec<Signature> {
    match j {
        Judgement::Breaks { rules } => rules
            .iter()
            .map(|b| Signature {
                backend: backend.to_string(),
                rule: b.rule.clone(),
                instruction: instruction.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(instruction(&c, &a, &b), "init");
        // No fault: the last XSAVE-family instruction.
        a.fault = None;
        assert_eq!(instruction(&c, &a, &b), "xgetbv");
    }

    #[test]
    fn rex_w_forms_share_the_mnemonic() {
        let (c, a) = case_with(&[0x48, 0x0f, 0xc7, 0x27, 0x90]); // xsavec64 [rdi]; nop
        assert_eq!(instruction(&c, &a, &a), "xsavec");
    }

    #[test]
    fn a_violation_is_one_signature_per_rule() {
        // Two rules broken (issue 13: a signature is (backend, rule, instruction)).
        let broken = |rule: &'static str, field: &str| crate::compare::BrokenRule {
            rule,
            sentence: "",
            citation: "",
            fields: vec![field.into()],
        };
        let j = from_verdict(
            &Verdict::OutsideEnvelope {
                broken: vec![
                    broken("xsave.mxcsr-with-sse-or-avx", "memory[0x18..0x20]: ..."),
                    broken("save.x87-format", "memory[0x6..0x8]: ..."),
                ],
            },
            &Comparison::default(),
        );
        let s = signatures("exec:valgrind", &j, "xsave");
        assert_eq!(
            s,
            [
                Signature {
                    backend: "exec:valgrind".into(),
                    rule: "xsave.mxcsr-with-sse-or-avx".into(),
                    instruction: "xsave".into()
                },
                Signature {
                    backend: "exec:valgrind".into(),
                    rule: "save.x87-format".into(),
                    instruction: "xsave".into()
                }
            ]
        );
        assert_eq!(
            s[0].to_string(),
            "exec:valgrind: xsave.mxcsr-with-sse-or-avx on xsave"
        );
        let inside = from_verdict(
            &Verdict::InsideEnvelope {
                latitude: vec!["xinuse-1-over-init"],
            },
            &Comparison::default(),
        );
        assert_eq!(
            inside,
            Judgement::Latitude {
                taken: vec!["xinuse-1-over-init".into()]
            }
        );
        assert!(signatures("x", &inside, "xsave").is_empty());
    }
}
