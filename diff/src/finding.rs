//! A finding as a case file: the minimized case, the rules it breaks and the
//! target that breaks them (`rules`, `target` lines), what the reference
//! predicted as `[expect]`, the differences in its header comment, and what a
//! real backend showed as a record of its model. Written atomically (a
//! temporary file renamed over the name), so an interrupted campaign never
//! leaves half a file.

use crate::casefile::{write_case_meta, write_outcome, Meta, TargetLine};
use crate::compare::{compare, render};
use crate::known::BackendTarget;
use crate::signature::{judge, Judgement};
use std::path::{Path, PathBuf};
use xsave_emu::{Case, CpuModel, Outcome};

/// Writes `text` to `path` atomically (a temporary file renamed over it).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// `exec:qemu-x86_64 -cpu max` -> `exec-qemu-x86_64--cpu-max`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The file a finding goes to in `dir`: named after the backend, the rule and
/// the instruction (or the latitude taken).
pub fn path_for(dir: &Path, backend: &str, what: &str) -> PathBuf {
    dir.join(format!("{}-{}.case", slug(backend), slug(what)))
}

/// What a finding file records about where it came from.
pub struct Finding<'a> {
    /// The reference backend's name and the observed backend's.
    pub reference: &'a str,
    pub backend: &'a str,
    /// The real backend's model, for its `[record MODEL]` section.
    pub backend_model: Option<&'a CpuModel>,
    pub target: Option<&'a BackendTarget>,
    /// First comment lines: what it shows, where it was found.
    pub header: Vec<String>,
}

/// The case file of a finding, from the case and its two outcomes, judged
/// with `judge_model`.
pub fn text(
    f: &Finding,
    judge_model: &CpuModel,
    case: &Case,
    reference: &Outcome,
    observed: &Outcome,
) -> String {
    let cmp = compare(judge_model, case, reference, observed);
    let j = judge(judge_model, case, &cmp, observed);
    let mut comments = f.header.clone();
    let verdict = match &j {
        Judgement::Breaks { .. } => "outside the envelope",
        Judgement::Latitude { .. } => "inside the envelope but off the model",
        Judgement::Unjudged { .. } => "not judged",
    };
    comments.push(format!("{} vs {} ({verdict}):", f.reference, f.backend));
    for l in render(&cmp, "ref", "obs").lines() {
        comments.push(l.trim().to_string());
    }
    let meta = match &j {
        Judgement::Breaks { rules } => Meta {
            rules: rules
                .iter()
                .map(|b| b.rule.clone())
                .filter(|r| crate::casefile::is_rule_id(r))
                .collect(),
            rules_line: 0,
            targets: f
                .target
                .and_then(|t| {
                    Some(TargetLine {
                        line: 0,
                        program: t.program.clone(),
                        version: t.version.clone()?,
                    })
                })
                .into_iter()
                .collect(),
        },
        _ => Meta::default(),
    };
    // Written against the built-in model of that name when there is one, so that
    // control state this run had and the model's defaults lack (IA32_XFD = 0
    // under AMX permission) is written out.
    let (model_name, file_model) = match CpuModel::builtin(&judge_model.name) {
        Some(b) => (judge_model.name.clone(), b),
        None => ("host".to_string(), judge_model.clone()),
    };
    let mut text = write_case_meta(&comments, &model_name, &meta, &file_model, case);
    text.push_str(&write_outcome("expect", judge_model, case, reference));
    if let Some(m) = f.backend_model {
        text.push_str(&write_outcome(
            &format!("record {}", m.name),
            judge_model,
            case,
            observed,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_backend_then_rule_and_instruction() {
        let p = path_for(
            Path::new("D"),
            "exec:qemu-x86_64 -cpu max",
            "xsavec.ud-not-advertised-xsavec",
        );
        assert_eq!(
            p,
            Path::new("D/exec-qemu-x86_64--cpu-max-xsavec.ud-not-advertised-xsavec.case")
        );
    }

    #[test]
    fn an_atomic_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("xsdiff-finding-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.case");
        write_atomic(&p, "one").unwrap();
        write_atomic(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.case"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
