//! The report an emulator developer reads: per backend, the SDM rules it
//! breaks (rule id, the rule's sentence, how often, on which instructions, an
//! example case file, known or new), the latitude it takes inside the envelope
//! (counted, not findings), and the known findings of its target checked
//! again. As text (the summary), JSON (`--format json`) and Markdown
//! (`--report FILE.md`, to paste into a bug tracker).

use crate::signature::Signature;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Whether a signature is in the corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// A corpus file names the rule for this backend's target (`file`; `others`
    /// name it too).
    Known {
        file: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        others: Vec<String>,
    },
    New,
}

/// What a campaign saw of one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigStat {
    pub count: u64,
    pub status: Status,
    /// A case file showing it (the known file, or the finding written), else
    /// where the campaign met it first (`seed 1 case 17`).
    pub example: String,
}

/// One kind of latitude an implementation took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatitudeRow {
    pub latitude: String,
    /// What the SDM allows, from the latitude table.
    pub sentence: Option<String>,
    pub count: u64,
    pub example: String,
}

/// A known file of this backend's target, run again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownCheck {
    pub file: String,
    pub rules: Vec<String>,
    /// The file's target lines (`qemu-x86_64 10.0.2`).
    pub targets: Vec<String>,
    #[serde(flatten)]
    pub verdict: CheckVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum CheckVerdict {
    /// Every rule the file names still breaks.
    StillBreaks,
    /// None of them breaks any more: fixed upstream? (or a stale file).
    FixedUpstream {
        now: String,
    },
    /// Some break, others not.
    Partly {
        not_broken: Vec<String>,
    },
    NotChecked {
        reason: String,
    },
}

impl CheckVerdict {
    fn text(&self) -> String {
        match self {
            CheckVerdict::StillBreaks => "still breaks".into(),
            CheckVerdict::FixedUpstream { now } => format!("fixed upstream? ({now})"),
            CheckVerdict::Partly { not_broken } => {
                format!("partly: no longer breaks {}", not_broken.join(", "))
            }
            CheckVerdict::NotChecked { reason } => format!("not checked: {reason}"),
        }
    }
}

/// One instruction a rule was broken on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsnRow {
    pub instruction: String,
    pub count: u64,
    #[serde(flatten)]
    pub status: Status,
    pub example: String,
}

/// One rule a backend breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRow {
    pub rule: String,
    /// The rule's sentence and citation, from the rule table.
    pub sentence: Option<String>,
    pub citation: Option<String>,
    pub count: u64,
    pub instructions: Vec<InsnRow>,
}

impl RuleRow {
    /// `known`, `new`, or `new on xsave; known on xrstor`.
    pub fn status(&self) -> String {
        let known: Vec<&str> = self
            .instructions
            .iter()
            .filter(|i| matches!(i.status, Status::Known { .. }))
            .map(|i| i.instruction.as_str())
            .collect();
        let new: Vec<&str> = self
            .instructions
            .iter()
            .filter(|i| i.status == Status::New)
            .map(|i| i.instruction.as_str())
            .collect();
        match (known.is_empty(), new.is_empty()) {
            (false, true) => "known".into(),
            (true, _) => "new".into(),
            (false, false) => format!("new on {}; known on {}", new.join(", "), known.join(", ")),
        }
    }

    /// Every known file that names this rule, in order of first mention.
    pub fn known_files(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for i in &self.instructions {
            if let Status::Known { file, others } = &i.status {
                for f in std::iter::once(file).chain(others) {
                    if !v.contains(&f.as_str()) {
                        v.push(f);
                    }
                }
            }
        }
        v
    }

    /// The example of the most frequent instruction, the known file first.
    pub fn example(&self) -> &str {
        self.instructions
            .iter()
            .find(|i| matches!(i.status, Status::Known { .. }))
            .or(self.instructions.first())
            .map_or("", |i| i.example.as_str())
    }
}

/// The report of one backend compared with the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendReport {
    pub backend: String,
    /// The implementation it runs (`qemu-x86_64 10.0.2`), if it is an emulator.
    pub target: Option<String>,
    /// Mismatches outside the envelope (each counted once per rule it breaks in `rules`).
    pub outside: u64,
    pub rules: Vec<RuleRow>,
    /// Mismatches inside the envelope but off the model.
    pub inside: u64,
    pub latitude: Vec<LatitudeRow>,
    /// Mismatches the envelope could not judge, by reason.
    pub unjudged: BTreeMap<String, u64>,
    pub known: Vec<KnownCheck>,
}

/// The sentence and citation of a rule id, where the rule table has it.
pub fn rule_text(id: &str) -> Option<(String, String)> {
    xsave_emu::RULES
        .iter()
        .find(|r| r.id == id)
        .map(|r| (r.sentence.to_string(), r.citation.to_string()))
}

/// The sentence of a latitude id, where the latitude table has it.
pub fn latitude_text(id: &str) -> Option<String> {
    match id {
        crate::signature::MODEL_PATH => Some(
            "The model predicts its silicon's choice (a quirk); this outcome takes another one the SDM allows."
                .into(),
        ),
        _ => xsave_emu::latitude::by_id(id).map(|l| format!("{} ({})", l.sentence, l.citation)),
    }
}

/// What a campaign counted, per backend.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub signatures: BTreeMap<Signature, SigStat>,
    /// (backend, latitude) -> count and example.
    pub latitude: BTreeMap<(String, String), (u64, String)>,
    /// Mismatches outside the envelope and inside it, by backend.
    pub outside: BTreeMap<String, u64>,
    pub inside: BTreeMap<String, u64>,
    /// (backend, reason) -> count.
    pub unjudged: BTreeMap<(String, String), u64>,
}

/// The reports of `backends` (the reference first, which has none).
pub fn build(
    backends: &[String],
    targets: &[Option<String>],
    tally: &Tally,
    known: &[(String, KnownCheck)],
) -> Vec<BackendReport> {
    let mut out = Vec::new();
    for (bi, b) in backends.iter().enumerate().skip(1) {
        let mut rules: BTreeMap<&str, RuleRow> = BTreeMap::new();
        for (sig, st) in tally.signatures.iter().filter(|(s, _)| s.backend == *b) {
            let row = rules.entry(sig.rule.as_str()).or_insert_with(|| {
                let t = rule_text(&sig.rule);
                RuleRow {
                    rule: sig.rule.clone(),
                    sentence: t.as_ref().map(|t| t.0.clone()),
                    citation: t.map(|t| t.1),
                    count: 0,
                    instructions: Vec::new(),
                }
            });
            row.count += st.count;
            row.instructions.push(InsnRow {
                instruction: sig.instruction.clone(),
                count: st.count,
                status: st.status.clone(),
                example: st.example.clone(),
            });
        }
        let mut rules: Vec<RuleRow> = rules.into_values().collect();
        for r in &mut rules {
            r.instructions.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then(a.instruction.cmp(&b.instruction))
            });
        }
        rules.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
        let mut latitude: Vec<LatitudeRow> = tally
            .latitude
            .iter()
            .filter(|((bb, _), _)| bb == b)
            .map(|((_, l), (n, e))| LatitudeRow {
                latitude: l.clone(),
                sentence: latitude_text(l),
                count: *n,
                example: e.clone(),
            })
            .collect();
        latitude.sort_by(|a, b| b.count.cmp(&a.count).then(a.latitude.cmp(&b.latitude)));
        out.push(BackendReport {
            backend: b.clone(),
            target: targets.get(bi).cloned().flatten(),
            outside: tally.outside.get(b).copied().unwrap_or(0),
            rules,
            inside: tally.inside.get(b).copied().unwrap_or(0),
            latitude,
            unjudged: tally
                .unjudged
                .iter()
                .filter(|((bb, _), _)| bb == b)
                .map(|((_, r), n)| (r.clone(), *n))
                .collect(),
            known: known
                .iter()
                .filter(|(bb, _)| bb == b)
                .map(|(_, k)| k.clone())
                .collect(),
        });
    }
    out
}

fn instructions(r: &RuleRow) -> String {
    r.instructions
        .iter()
        .map(|i| format!("{} {}", i.instruction, i.count))
        .collect::<Vec<_>>()
        .join(", ")
}

fn heading(r: &BackendReport) -> String {
    match &r.target {
        Some(t) => format!("{} ({t})", r.backend),
        None => r.backend.clone(),
    }
}

/// The report as text, for the summary.
pub fn text(reports: &[BackendReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let _ = writeln!(
            s,
            "{}: {} outside the envelope ({} rules broken), {} inside it but off the model",
            heading(r),
            r.outside,
            r.rules.len(),
            r.inside
        );
        if !r.rules.is_empty() {
            let w = r
                .rules
                .iter()
                .map(|x| x.rule.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let st = r
                .rules
                .iter()
                .map(|x| x.status().len())
                .max()
                .unwrap_or(6)
                .max(12);
            let _ = writeln!(
                s,
                "  {:<w$}  {:>7}  {:<st$}  example",
                "rule", "count", "known or new"
            );
            for x in &r.rules {
                let _ = writeln!(
                    s,
                    "  {:<w$}  {:>7}  {:<st$}  {}",
                    x.rule,
                    x.count,
                    x.status(),
                    x.example()
                );
                let _ = writeln!(s, "      on {}", instructions(x));
                let known = x.known_files();
                if known.len() > 1 {
                    let _ = writeln!(s, "      known from {}", known.join(", "));
                }
                if let Some(t) = &x.sentence {
                    let _ = writeln!(
                        s,
                        "      SDM: {t} ({})",
                        x.citation.as_deref().unwrap_or("")
                    );
                }
            }
        }
        if !r.latitude.is_empty() {
            let _ = writeln!(s, "  latitude taken inside the envelope (not findings):");
            for l in &r.latitude {
                let _ = writeln!(
                    s,
                    "    {:>7}  {}  (e.g. {})",
                    l.count, l.latitude, l.example
                );
            }
        }
        for (why, n) in &r.unjudged {
            let _ = writeln!(s, "  {n:>9}  not judged: {why}");
        }
        if !r.known.is_empty() {
            let _ = writeln!(s, "  known findings of this target, run again:");
            for k in &r.known {
                let _ = writeln!(
                    s,
                    "    {}: {} [{}]",
                    k.file,
                    k.verdict.text(),
                    k.rules.join(", ")
                );
            }
        }
    }
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown: a heading and a table per backend.
pub fn markdown(title: &str, reports: &[BackendReport]) -> String {
    let mut s = format!("# {}\n", md_cell(title));
    for r in reports {
        let _ = writeln!(s, "\n## {}\n", md_cell(&heading(r)));
        let _ = writeln!(
            s,
            "{} mismatches outside the SDM's envelope ({} rules broken); {} inside it but off the model.\n",
            r.outside,
            r.rules.len(),
            r.inside
        );
        if !r.rules.is_empty() {
            s.push_str("| rule | SDM | count | instructions | known or new | example |\n");
            s.push_str("|---|---|---:|---|---|---|\n");
            for x in &r.rules {
                let sdm = match (&x.sentence, &x.citation) {
                    (Some(t), Some(c)) => format!("{t} ({c})"),
                    (Some(t), None) => t.clone(),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {} | `{}` |",
                    md_cell(&x.rule),
                    md_cell(&sdm),
                    x.count,
                    md_cell(&instructions(x)),
                    md_cell(&match x.known_files().as_slice() {
                        [_, _, ..] => format!("{} ({})", x.status(), x.known_files().join(", ")),
                        _ => x.status(),
                    }),
                    md_cell(x.example())
                );
            }
        }
        if !r.latitude.is_empty() {
            s.push_str(
                "\nLatitude taken inside the envelope (allowed by the SDM, not findings):\n\n",
            );
            s.push_str(
                "| latitude | what the SDM allows | count | example |\n|---|---|---:|---|\n",
            );
            for l in &r.latitude {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | `{}` |",
                    md_cell(&l.latitude),
                    md_cell(l.sentence.as_deref().unwrap_or("")),
                    l.count,
                    md_cell(&l.example)
                );
            }
        }
        if !r.unjudged.is_empty() {
            s.push_str("\nNot judged:\n\n");
            for (why, n) in &r.unjudged {
                let _ = writeln!(s, "- {n}: {}", md_cell(why));
            }
        }
        if !r.known.is_empty() {
            s.push_str("\nKnown findings of this target, run again:\n\n| file | rules | targets | now |\n|---|---|---|---|\n");
            for k in &r.known {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} |",
                    md_cell(&k.file),
                    md_cell(&k.rules.join(", ")),
                    md_cell(&k.targets.join(", ")),
                    md_cell(&k.verdict.text())
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        let mut t = Tally::default();
        let b = "exec:valgrind --tool=none -q".to_string();
        let sig = |rule: &str, insn: &str| Signature {
            backend: b.clone(),
            rule: rule.into(),
            instruction: insn.into(),
        };
        t.signatures.insert(
            sig("xrstor.gp-mxcsr-reserved", "xrstor"),
            SigStat {
                count: 7,
                status: Status::Known {
                    file: "corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case".into(),
                    others: vec!["corpus/regressions/other.case".into()],
                },
                example: "corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case".into(),
            },
        );
        t.signatures.insert(
            sig("xrstor.gp-mxcsr-reserved", "fxrstor"),
            SigStat {
                count: 2,
                status: Status::New,
                example: "D/a.case".into(),
            },
        );
        t.signatures.insert(
            sig("xsavec.ud-not-advertised", "xsavec"),
            SigStat {
                count: 30,
                status: Status::New,
                example: "seed 1 case 4".into(),
            },
        );
        t.outside.insert(b.clone(), 39);
        t.inside.insert(b.clone(), 5);
        t.latitude.insert(
            (b.clone(), "xinuse-1-over-init".into()),
            (5, "seed 1 case 9".into()),
        );
        t
    }

    fn reports() -> Vec<BackendReport> {
        let backends = [
            "emu:valgrind-3.19".to_string(),
            "exec:valgrind --tool=none -q".to_string(),
        ];
        let known = vec![(
            backends[1].clone(),
            KnownCheck {
                file: "corpus/regressions/valgrind-xsetbv-cpl3-ud.case".into(),
                rules: vec!["xsetbv.gp-cpl".into()],
                targets: vec!["valgrind 3.19.0".into()],
                verdict: CheckVerdict::FixedUpstream {
                    now: "no rule broken".into(),
                },
            },
        )];
        build(
            &backends,
            &[None, Some("valgrind 3.19.0".into())],
            &tally(),
            &known,
        )
    }

    #[test]
    fn one_row_per_rule_most_frequent_first() {
        let r = reports();
        assert_eq!(r.len(), 1);
        let rows: Vec<(&str, u64, String)> = r[0]
            .rules
            .iter()
            .map(|x| (x.rule.as_str(), x.count, x.status()))
            .collect();
        assert_eq!(
            rows,
            [
                ("xsavec.ud-not-advertised", 30, "new".to_string()),
                (
                    "xrstor.gp-mxcsr-reserved",
                    9,
                    "new on fxrstor; known on xrstor".to_string()
                ),
            ]
        );
        assert_eq!(
            r[0].rules[1].example(),
            "corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case"
        );
    }

    #[test]
    fn text_and_markdown_name_rules_latitude_and_known_files() {
        let r = reports();
        let t = text(&r);
        assert!(t.starts_with("exec:valgrind --tool=none -q (valgrind 3.19.0): 39 outside the envelope (2 rules broken), 5 inside it but off the model\n"), "{t}");
        assert!(t.contains("  rule                        count  known or new                     example\n  xsavec.ud-not-advertised       30  new                              seed 1 case 4\n      on xsavec 30\n"), "{t}");
        assert!(t.contains("  xrstor.gp-mxcsr-reserved        9  new on fxrstor; known on xrstor  corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case\n      on xrstor 7, fxrstor 2\n"), "{t}");
        assert!(
            t.contains("        5  xinuse-1-over-init  (e.g. seed 1 case 9)\n"),
            "{t}"
        );
        assert!(t.contains("corpus/regressions/valgrind-xsetbv-cpl3-ud.case: fixed upstream? (no rule broken) [xsetbv.gp-cpl]"), "{t}");
        assert!(t.contains("      known from corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case, corpus/regressions/other.case\n"), "{t}");
        assert!(t.contains("      SDM: #UD if CPUID.(EAX=0DH,ECX=1):EAX.XSAVEC[bit 1] = 0. (SDM2 XSAVEC exceptions)\n"), "{t}");
        let m = markdown("xsdiff run", &r);
        assert!(m.contains("| `xinuse-1-over-init` | XINUSE[i] may be 1 while state component i is in its initial configuration"), "{m}");
        assert!(
            m.contains("## exec:valgrind --tool=none -q (valgrind 3.19.0)\n"),
            "{m}"
        );
        assert!(m.contains("| `xrstor.gp-mxcsr-reserved` | #GP(0) if the value to be loaded into MXCSR sets a reserved bit (a bit clear in MXCSR_MASK). (SDM2 XRSTOR, XRSTORS exceptions; SDM1 §13.8.2) | 9 | xrstor 7, fxrstor 2 | new on fxrstor; known on xrstor (corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case, corpus/regressions/other.case) | `corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case` |\n"), "{m}");
        assert!(m.contains("| `corpus/regressions/valgrind-xsetbv-cpl3-ud.case` | xsetbv.gp-cpl | valgrind 3.19.0 | fixed upstream? (no rule broken) |\n"), "{m}");
    }
}
