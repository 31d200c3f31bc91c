//! `xsdiff merge OUT INPUT...`: the outputs of one campaign's shards, run on
//! many machines, merged into one summary.
//!
//! An input is a folder written by `xsdiff run --out DIR` (its
//! [`SUMMARY_FILE`] and finding files) or a JSON summary (`xsdiff run --format
//! json > FILE`). The shards must be of one campaign: the same backends,
//! reference, model, seed, targets and N, each shard at most once.
//!
//! Counts are summed (cases, skips, mismatches, per signature, per latitude,
//! seconds: machine-seconds). Each new rule keeps the smallest finding case
//! among the shards' ([`case_size`]), copied into OUT (the example of the
//! signatures that had one; the others keep their `seed S case N`); known or new is decided
//! again against the corpus given to `merge` ([`crate::known`]). OUT receives
//! the merged summary as JSON ([`SUMMARY_FILE`]), text (`summary.txt`) and
//! Markdown (`summary.md`, [`crate::report::markdown`]); a merged OUT is itself
//! an input of a later merge.

use crate::campaign::{MinStats, Summary};
use crate::casefile::CaseFile;
use crate::finding::write_atomic;
use crate::known::{BackendTarget, Known};
use crate::report::{self, KnownCheck, SigStat, Status, Tally};
use crate::signature::Signature;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The machine-readable summary `xsdiff run --out DIR` writes in DIR.
pub const SUMMARY_FILE: &str = "summary.json";

/// One campaign output read.
#[derive(Debug, Clone)]
pub struct Input {
    /// What was named on the command line.
    pub path: PathBuf,
    /// The folder its finding files are looked up in.
    pub dir: PathBuf,
    pub summary: Summary,
}

/// Reads an input: a folder holding [`SUMMARY_FILE`], or a JSON summary.
pub fn read_input(path: &Path) -> Result<Input, String> {
    let (file, dir) = if path.is_dir() {
        (path.join(SUMMARY_FILE), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        if path.is_dir() {
            format!(
                "{}: no {SUMMARY_FILE} ({e}); `xsdiff run --out DIR` writes it",
                path.display()
            )
        } else {
            format!("{}: {e}", file.display())
        }
    })?;
    let summary: Summary = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not an xsdiff run summary: {e}", file.display()))?;
    Ok(Input {
        path: path.to_path_buf(),
        dir,
        summary,
    })
}

/// The shards a summary covers: `2/8` -> ({2}, 8), `0,1,3/8` -> ({0,1,3}, 8).
pub fn parse_shards(s: &str) -> Option<(BTreeSet<u64>, u64)> {
    let (ks, n) = s.split_once('/')?;
    let n: u64 = n.parse().ok()?;
    let ks: BTreeSet<u64> = ks
        .split(',')
        .map(|k| k.parse().ok())
        .collect::<Option<_>>()?;
    (n > 0 && ks.iter().all(|&k| k < n)).then_some((ks, n))
}

/// How small a case file is: the lines of its case (control, initial image,
/// arena, GPRs, code), then their bytes. None if it does not parse.
pub fn case_size(path: &Path) -> Option<(usize, usize)> {
    let f = CaseFile::load(path).ok()?;
    let items = [&f.control, &f.init, &f.arena, &f.gprs];
    let lines = items.iter().map(|v| v.len()).sum::<usize>() + f.code.len();
    let bytes = items
        .iter()
        .flat_map(|v| v.iter())
        .map(|i| i.key.len() + i.value.len())
        .sum::<usize>()
        + f.code.iter().map(|(_, b)| b.len()).sum::<usize>();
    Some((lines, bytes))
}

/// `seed 1 case 17` -> 17.
fn case_number(example: &str) -> Option<u64> {
    example.rsplit_once(" case ")?.1.parse().ok()
}

/// An example's finding file as it is now: the file of that name in the
/// input's folder, else the path as written (run in the same place).
fn finding_file(input: &Input, example: &str) -> Option<PathBuf> {
    let p = Path::new(example);
    if p.extension().is_none_or(|x| x != "case") {
        return None;
    }
    let here = input.dir.join(p.file_name()?);
    if here.is_file() {
        Some(here)
    } else if p.is_file() {
        Some(p.to_path_buf())
    } else {
        None
    }
}

/// Where a count was seen, to choose the example kept.
#[derive(Default)]
struct Examples {
    /// Finding files (path, size).
    files: Vec<(PathBuf, (usize, usize))>,
    /// Other examples (`seed 1 case 17`).
    others: Vec<String>,
}

impl Examples {
    fn add(&mut self, input: &Input, example: &str) {
        match finding_file(input, example) {
            Some(p) => {
                if let Some(sz) = case_size(&p) {
                    self.files.push((p, sz));
                }
            }
            None if !example.is_empty() => self.others.push(example.to_string()),
            None => {}
        }
    }

    /// The smallest finding file (ties: the first name), else the example of
    /// the lowest case number.
    fn choose(&self) -> Choice {
        if let Some((p, _)) = self
            .files
            .iter()
            .min_by(|a, b| a.1.cmp(&b.1).then(a.0.file_name().cmp(&b.0.file_name())))
        {
            return Choice::File(p.clone());
        }
        Choice::Text(
            self.others
                .iter()
                .min_by_key(|e| (case_number(e).unwrap_or(u64::MAX), (*e).clone()))
                .cloned()
                .unwrap_or_default(),
        )
    }
}

enum Choice {
    File(PathBuf),
    Text(String),
}

/// `qemu-x86_64 10.0.2` -> program and version, as [`BackendTarget`] prints them.
fn parse_target(s: &str) -> BackendTarget {
    match s.split_once(' ') {
        Some((p, v)) => BackendTarget {
            program: p.to_string(),
            version: Some(v.to_string()),
        },
        None => BackendTarget {
            program: s.to_string(),
            version: None,
        },
    }
}

/// Charges each known file to its instruction, as a campaign does when it
/// checks the file on its target: with the file's first record (what an
/// implementation did) against the model's prediction, else the prediction
/// alone. A file that does not build or run on its model keeps none.
pub fn charge_known(known: &mut Known) {
    for f in &mut known.files {
        let Ok(model) = crate::models::resolve(&f.file.model) else {
            continue;
        };
        let Ok(case) = f.file.build(&model) else {
            continue;
        };
        let Ok(predicted) = xsave_emu::predict(&model, &case) else {
            continue;
        };
        let observed = f
            .file
            .records
            .first()
            .and_then(|(_, sec)| f.file.expected(sec, &model, &case).ok())
            .map(|e| e.against(&predicted))
            .unwrap_or_else(|| predicted.clone());
        let insn = crate::signature::instruction(&case, &predicted, &observed);
        let cmp = crate::compare::compare(&model, &case, &predicted, &observed);
        let judged = match (!cmp.is_match())
            .then(|| crate::signature::judge(&model, &case, &cmp, &observed))
        {
            Some(crate::signature::Judgement::Breaks { rules }) => rules,
            _ => Vec::new(),
        };
        f.instruction = Some(crate::known::file_instruction(
            f.rules(),
            &case,
            &judged,
            &insn,
        ));
    }
}

/// Merges `inputs` against `known` into `out` (created; finding files copied)
/// and returns the merged summary. Nothing is written if the inputs are not
/// shards of one campaign.
pub fn merge(out: &Path, inputs: &[Input], known: &Known) -> Result<Summary, String> {
    let first = inputs.first().ok_or("merge: no inputs")?;
    let f = &first.summary;
    let (_, n) = parse_shards(&f.shard)
        .ok_or_else(|| format!("{}: shard `{}` is not K/N", first.path.display(), f.shard))?;
    let mut shards: BTreeMap<u64, &Path> = BTreeMap::new();
    let mut targets: BTreeMap<String, Option<String>> = BTreeMap::new();
    for i in inputs {
        let s = &i.summary;
        let differ = |what: &str, a: &str, b: &str| {
            Err(format!(
                "{} and {}: not shards of one campaign ({what} {a} vs {b})",
                first.path.display(),
                i.path.display()
            ))
        };
        if s.backends != f.backends {
            return differ("backends", &f.backends.join(","), &s.backends.join(","));
        }
        if s.reference != f.reference {
            return differ("reference", &f.reference, &s.reference);
        }
        if s.model != f.model {
            return differ("model", &f.model, &s.model);
        }
        if s.seed != f.seed {
            return differ("seed", &f.seed.to_string(), &s.seed.to_string());
        }
        let (ks, sn) = parse_shards(&s.shard)
            .ok_or_else(|| format!("{}: shard `{}` is not K/N", i.path.display(), s.shard))?;
        if sn != n {
            return differ("shard count", &n.to_string(), &sn.to_string());
        }
        for k in ks {
            if let Some(p) = shards.insert(k, &i.path) {
                return Err(format!(
                    "shard {k}/{n} is in both {} and {}",
                    p.display(),
                    i.path.display()
                ));
            }
        }
        for r in &s.report {
            match targets.get(&r.backend) {
                Some(t) if *t != r.target => {
                    return differ(
                        &format!("target of {}", r.backend),
                        t.as_deref().unwrap_or("none"),
                        r.target.as_deref().unwrap_or("none"),
                    )
                }
                _ => {
                    targets.insert(r.backend.clone(), r.target.clone());
                }
            }
        }
    }

    let mut m = Summary {
        backends: f.backends.clone(),
        reference: f.reference.clone(),
        model: f.model.clone(),
        seed: f.seed,
        shard: format!(
            "{}/{n}",
            shards
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        known_folders: known.folders.clone(),
        known_files: known.files.len(),
        minimization: MinStats::default(),
        ..Summary::default()
    };
    let mut tally = Tally::default();
    let mut sig_examples: BTreeMap<Signature, Examples> = BTreeMap::new();
    let mut lat_examples: BTreeMap<(String, String), Examples> = BTreeMap::new();
    let mut checks: Vec<(String, KnownCheck)> = Vec::new();
    for i in inputs {
        let s = &i.summary;
        m.cases += s.cases;
        m.generated += s.generated;
        m.seconds += s.seconds;
        m.mismatches += s.mismatches;
        m.interrupted |= s.interrupted;
        for (r, c) in &s.skipped {
            *m.skipped.entry(r.clone()).or_default() += c;
        }
        m.minimization.findings += s.minimization.findings;
        m.minimization.candidates += s.minimization.candidates;
        m.minimization.batches += s.minimization.batches;
        m.minimization.cut_short += s.minimization.cut_short;
        for r in &s.report {
            let b = &r.backend;
            *tally.outside.entry(b.clone()).or_default() += r.outside;
            *tally.inside.entry(b.clone()).or_default() += r.inside;
            for row in &r.rules {
                for insn in &row.instructions {
                    let sig = Signature {
                        backend: b.clone(),
                        rule: row.rule.clone(),
                        instruction: insn.instruction.clone(),
                    };
                    sig_examples
                        .entry(sig.clone())
                        .or_default()
                        .add(i, &insn.example);
                    tally
                        .signatures
                        .entry(sig)
                        .or_insert(SigStat {
                            count: 0,
                            status: Status::New,
                            example: String::new(),
                        })
                        .count += insn.count;
                }
            }
            for l in &r.latitude {
                let key = (b.clone(), l.latitude.clone());
                lat_examples
                    .entry(key.clone())
                    .or_default()
                    .add(i, &l.example);
                tally.latitude.entry(key).or_insert((0, String::new())).0 += l.count;
            }
            for (why, c) in &r.unjudged {
                *tally.unjudged.entry((b.clone(), why.clone())).or_default() += c;
            }
            for k in &r.known {
                let c = (b.clone(), k.clone());
                if !checks.contains(&c) {
                    checks.push(c);
                }
            }
        }
    }
    m.cases_per_sec = m.generated as f64 / m.seconds.max(1e-9);

    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written: Vec<String> = Vec::new();
    let mut keep = |c: Choice| -> Result<String, String> {
        match c {
            Choice::Text(t) => Ok(t),
            Choice::File(p) => {
                let dest = out.join(p.file_name().expect("a finding file has a name"));
                if dest != p {
                    std::fs::copy(&p, &dest)
                        .map_err(|e| format!("{} -> {}: {e}", p.display(), dest.display()))?;
                }
                let d = dest.display().to_string();
                written.push(d.clone());
                Ok(d)
            }
        }
    };
    // One finding per new rule of a backend: the smallest of the files any
    // of its signatures kept (a run writes one per rule, so the shards' files
    // of a rule share its name).
    let mut rule_files: BTreeMap<(String, String), Examples> = BTreeMap::new();
    for (sig, ex) in &sig_examples {
        let e = rule_files
            .entry((sig.backend.clone(), sig.rule.clone()))
            .or_default();
        e.files.extend(ex.files.iter().cloned());
    }
    for (sig, st) in tally.signatures.iter_mut() {
        let hit: Vec<String> = targets
            .get(&sig.backend)
            .cloned()
            .flatten()
            .map(|t| {
                let t = parse_target(&t);
                known
                    .explaining(&t, sig)
                    .iter()
                    .map(|f| f.path.clone())
                    .collect()
            })
            .unwrap_or_default();
        match hit.split_first() {
            Some((file, others)) => {
                st.example = file.clone();
                st.status = Status::Known {
                    file: file.clone(),
                    others: others.to_vec(),
                };
            }
            None => {
                st.status = Status::New;
                let own = &sig_examples[sig];
                st.example = keep(if own.files.is_empty() {
                    own.choose()
                } else {
                    rule_files[&(sig.backend.clone(), sig.rule.clone())].choose()
                })?;
            }
        }
    }
    for (key, (_, example)) in tally.latitude.iter_mut() {
        *example = keep(lat_examples[key].choose())?;
    }
    written.sort();
    written.dedup();
    m.findings = written;
    let target_names: Vec<Option<String>> = m
        .backends
        .iter()
        .map(|b| targets.get(b).cloned().flatten())
        .collect();
    m.report = report::build(&m.backends, &target_names, &tally, &checks);

    let json = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())?;
    for (name, text) in [
        (SUMMARY_FILE, format!("{json}\n")),
        ("summary.txt", text(&m, inputs.len())),
        (
            "summary.md",
            report::markdown(&title(&m, inputs.len()), &m.report),
        ),
    ] {
        let p = out.join(name);
        write_atomic(&p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(m)
}

/// The merged report's title.
pub fn title(m: &Summary, inputs: usize) -> String {
    format!("{} (merged from {inputs} outputs)", m.title())
}

/// The merged summary as text: which shards (and which are missing), then the
/// campaign's summary.
pub fn text(m: &Summary, inputs: usize) -> String {
    let mut s = format!(
        "merged {inputs} outputs: shards {}; seconds are summed over the shards\n",
        m.shard
    );
    if let Some((ks, n)) = parse_shards(&m.shard) {
        let missing: Vec<String> = (0..n)
            .filter(|k| !ks.contains(k))
            .map(|k| k.to_string())
            .collect();
        if !missing.is_empty() {
            s.push_str(&format!(
                "missing shards: {} of {n}: the summary covers part of the campaign\n",
                missing.join(", ")
            ));
        }
    }
    s.push_str(&m.text());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_lists_parse() {
        assert_eq!(parse_shards("2/8"), Some(([2].into(), 8)));
        assert_eq!(parse_shards("0,1,3/4"), Some(([0, 1, 3].into(), 4)));
        assert_eq!(parse_shards("4/4"), None);
        assert_eq!(parse_shards("1/0"), None);
        assert_eq!(parse_shards("x/4"), None);
    }

    const VG: &str = "exec:valgrind --tool=none -q";

    /// A shard's summary with the signatures `sigs` (rule, instruction, count,
    /// example) of valgrind against the emulator.
    fn shard(k: u64, sigs: &[(&str, &str, u64, &str)]) -> Input {
        let backends = vec!["emu:valgrind-3.19".to_string(), VG.to_string()];
        let mut t = Tally::default();
        for &(rule, insn, count, example) in sigs {
            t.signatures.insert(
                Signature {
                    backend: VG.into(),
                    rule: rule.into(),
                    instruction: insn.into(),
                },
                SigStat {
                    count,
                    status: Status::New,
                    example: example.into(),
                },
            );
            *t.outside.entry(VG.into()).or_default() += count;
        }
        let mismatches = sigs.iter().map(|s| s.2).sum();
        let summary = Summary {
            report: report::build(&backends, &[None, Some("valgrind 3.19.0".into())], &t, &[]),
            backends,
            reference: "emu:valgrind-3.19".into(),
            model: "valgrind-3.19".into(),
            seed: 1,
            shard: format!("{k}/2"),
            cases: 100 + k,
            generated: 110,
            seconds: 2.0,
            skipped: [("emu: instruction is not modelled".to_string(), 10 - k)].into(),
            mismatches,
            ..Summary::default()
        };
        Input {
            path: PathBuf::from(format!("shard-{k}")),
            dir: PathBuf::from(format!("shard-{k}")),
            summary,
        }
    }

    #[test]
    fn counts_add_up_and_known_is_decided_by_the_merging_corpus() {
        let known = Known {
            files: vec![crate::known::KnownFile {
                path: "corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case".into(),
                file: CaseFile::parse(
                    "xsave-case 1\nmodel valgrind-3.19\nrules xrstor.gp-mxcsr-reserved\ntarget valgrind 3.19.0\n",
                    "k.case",
                )
                .unwrap(),
                instruction: Some("xrstor".into()),
                fixed_on: Vec::new(),
                confirmed_on: Vec::new(),
            }],
            folders: vec!["corpus/regressions".into()],
        };
        let inputs = [
            shard(
                0,
                &[
                    ("xrstor.gp-mxcsr-reserved", "xrstor", 7, "seed 1 case 4"),
                    ("xsavec.ud-not-advertised", "xsavec", 3, "seed 1 case 10"),
                ],
            ),
            shard(
                1,
                &[("xsavec.ud-not-advertised", "xsavec", 5, "seed 1 case 9")],
            ),
        ];
        let out = std::env::temp_dir().join(format!("xsdiff-merge-unit-{}", std::process::id()));
        let m = merge(&out, &inputs, &known).unwrap();
        assert_eq!(m.shard, "0,1/2");
        assert_eq!((m.cases, m.generated, m.mismatches), (201, 220, 15));
        assert_eq!(m.seconds, 4.0);
        assert_eq!(m.cases_per_sec, 55.0);
        assert_eq!(
            m.skipped,
            [("emu: instruction is not modelled".to_string(), 19)].into()
        );
        assert_eq!(m.known_files, 1);
        let r = &m.report[0];
        assert_eq!(r.target.as_deref(), Some("valgrind 3.19.0"));
        assert_eq!(r.outside, 15);
        let rows: Vec<(&str, &str, u64, &Status, &str)> = r
            .rules
            .iter()
            .flat_map(|x| {
                x.instructions.iter().map(move |i| {
                    (
                        x.rule.as_str(),
                        i.instruction.as_str(),
                        i.count,
                        &i.status,
                        i.example.as_str(),
                    )
                })
            })
            .collect();
        let file = "corpus/regressions/valgrind-xrstor-mxcsr-reserved-no-gp.case";
        assert_eq!(
            rows,
            [
                (
                    "xsavec.ud-not-advertised",
                    "xsavec",
                    8,
                    &Status::New,
                    "seed 1 case 9"
                ),
                (
                    "xrstor.gp-mxcsr-reserved",
                    "xrstor",
                    7,
                    &Status::Known {
                        file: file.into(),
                        others: Vec::new()
                    },
                    file
                ),
            ]
        );
        let json = std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.report, m.report);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn targets_and_case_numbers_read_back() {
        assert_eq!(
            parse_target("qemu-x86_64 10.0.2"),
            BackendTarget {
                program: "qemu-x86_64".into(),
                version: Some("10.0.2".into())
            }
        );
        assert_eq!(parse_target("unicorn").version, None);
        assert_eq!(case_number("seed 1 case 17"), Some(17));
        assert_eq!(case_number("D/a.case"), None);
    }
}
