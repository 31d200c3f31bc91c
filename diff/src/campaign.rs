//! Campaigns: generated cases run on every backend for a time or a count, on
//! several threads, compared with the reference (the first backend, usually
//! the emulator's prediction). Mismatches are deduplicated by signature; the
//! first of each is minimized and written to the output folder at once
//! (atomically: a temporary file renamed), so an interrupted campaign loses
//! nothing. Case n of a campaign depends only on (seed, n); `--shard K/N`
//! takes the n with n mod N = K, so shards never overlap.

use crate::backend::{self, Backend, Observed, Skip};
use crate::casefile::{write_case, write_outcome};
use crate::compare::{compare, render, verdict, Comparison, Verdict};
use crate::generate::{generate, Target};
use crate::minimize::minimize;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xsave_emu::{Case, CpuModel, Outcome};

/// When a campaign stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Time(Duration),
    Cases(u64),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backends: Vec<String>,
    /// The model the emulator judges with (`host` or a built-in name).
    pub cpu: Option<String>,
    pub limit: Limit,
    pub seed: u64,
    /// (K, N): this shard takes case numbers n with n mod N = K.
    pub shard: (u64, u64),
    pub jobs: usize,
    pub out: Option<PathBuf>,
    pub progress: bool,
    /// Predicate calls allowed to the minimizer per finding.
    pub minimize_budget: usize,
}

/// A campaign's result.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub backends: Vec<String>,
    pub reference: String,
    pub model: String,
    pub seed: u64,
    pub shard: String,
    /// Cases run on every backend and compared.
    pub cases: u64,
    /// Cases generated (compared or skipped).
    pub generated: u64,
    pub seconds: f64,
    pub cases_per_sec: f64,
    /// Skipped cases by reason.
    pub skipped: BTreeMap<String, u64>,
    pub mismatches: u64,
    /// Mismatches by signature.
    pub signatures: BTreeMap<String, u64>,
    /// Files written (one per signature).
    pub findings: Vec<String>,
}

struct Shared {
    next: AtomicU64,
    mismatches: AtomicU64,
    stop: AtomicBool,
    signatures: Mutex<BTreeMap<String, u64>>,
    findings: Mutex<Vec<String>>,
}

/// The backends of one thread, the reference first.
pub struct Rig {
    pub backends: Vec<Box<dyn Backend + Send>>,
    pub judge: CpuModel,
    pub target: Target,
}

/// Opens the backends of `specs` (real ones first, so that a bare `emu` can
/// take the model they present), with `cpu` as the judging model if given.
pub fn open_rig(specs: &[String], cpu: Option<&str>) -> Result<Rig, String> {
    let cpu_model = cpu.map(crate::models::resolve).transpose()?;
    let mut opened: Vec<Option<Box<dyn Backend + Send>>> = specs.iter().map(|_| None).collect();
    let mut first_real: Option<CpuModel> = None;
    for (k, s) in specs.iter().enumerate() {
        if !s.starts_with("emu") {
            let b = backend::open(s, None)?;
            first_real.get_or_insert_with(|| b.model().clone());
            opened[k] = Some(b);
        }
    }
    let default = cpu_model.clone().or_else(|| first_real.clone());
    let default = match default {
        Some(m) => m,
        None => crate::models::resolve("host")?,
    };
    for (k, s) in specs.iter().enumerate() {
        if opened[k].is_none() {
            opened[k] = Some(backend::open(s, Some(&default))?);
        }
    }
    let backends: Vec<Box<dyn Backend + Send>> = opened.into_iter().map(|b| b.unwrap()).collect();
    if backends.is_empty() {
        return Err("no backends".into());
    }
    let judge = if backends[0].is_real() {
        default.clone()
    } else {
        backends[0].model().clone()
    };
    let gen_from = backends
        .iter()
        .find(|b| b.is_real())
        .unwrap_or(&backends[0]);
    let target = Target {
        model: gen_from.model().clone(),
        control: gen_from.control(),
    };
    Ok(Rig {
        backends,
        judge,
        target,
    })
}

/// The outcome of one case on every backend, or the first skip.
pub fn run_all(rig: &mut Rig, case: &Case) -> Result<Vec<Outcome>, Skip> {
    rig.backends.iter_mut().map(|b| b.run(case)).collect()
}

/// The signature of a mismatch of backend `name` against the reference.
pub fn signature(name: &str, v: &Verdict, cmp: &Comparison) -> String {
    format!("{name}: {} | {}", v.short(), cmp.signature())
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes `text` to `path` atomically (a temporary file renamed over it).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The case file of a finding: the minimized case, what the reference
/// predicted as `[expect]`, and what a real backend showed as a record of
/// its model (or in the header).
pub fn finding_text(rig: &mut Rig, bi: usize, case: &Case, sig: &str, origin: &str) -> String {
    let outs = run_all(rig, case);
    let judge = rig.judge.clone();
    let mut comments = vec![format!("Finding: {sig}"), origin.to_string()];
    let mut sections = String::new();
    if let Ok(outs) = &outs {
        let cmp = compare(&judge, case, &outs[0], &outs[bi]);
        comments.push(format!(
            "{} vs {} ({}):",
            rig.backends[0].name(),
            rig.backends[bi].name(),
            verdict(&judge, case, &cmp, &outs[bi]).short()
        ));
        for l in render(&cmp, "ref", "obs").lines() {
            comments.push(l.trim().to_string());
        }
        sections.push_str(&write_outcome("expect", &judge, case, &outs[0]));
        let b = &rig.backends[bi];
        if b.name() == "native" {
            sections.push_str(&write_outcome(
                &format!("record {}", b.model().name),
                &judge,
                case,
                &outs[bi],
            ));
        }
    }
    // Written against the built-in model of that name when there is one, so that
    // control state this run had and the model's defaults lack (IA32_XFD = 0
    // under AMX permission) is written out.
    let (model_name, file_model) = match CpuModel::builtin(&judge.name) {
        Some(b) => (judge.name.clone(), b),
        None => ("host".to_string(), judge.clone()),
    };
    let mut text = write_case(&comments, &model_name, &file_model, case);
    text.push_str(&sections);
    text
}

#[derive(Default)]
struct Local {
    cases: u64,
    generated: u64,
    mismatches: u64,
    skipped: BTreeMap<String, u64>,
}

/// Cases per batch: generated, predicted, then run on the other backends. Small
/// enough that a batch's cases and predictions (some 80 KiB each on an AMX host)
/// are still in the core's L2 cache when the native runner copies them in and
/// compares its observation (`xsdiff run --backends emu,native --jobs 1`, Intel
/// host, cases per CPU-second: 64: ~90k, 32: ~99k, 16: ~118k, 8: ~117k).
const BATCH: u64 = 16;
const JUDGE_TIMES: u32 = 32;

fn worker(cfg: &Config, sh: &Shared, pb: &ProgressBar, start: Instant) -> Result<Local, String> {
    let mut rig = open_rig(&cfg.backends, cfg.cpu.as_deref())?;
    let mut st = Local::default();
    let names: Vec<String> = rig.backends.iter().map(|b| b.name()).collect();
    let (k, n) = cfg.shard;
    let mut cases: Vec<Case> = Vec::with_capacity(BATCH as usize);
    let mut judged: std::collections::HashMap<String, (Verdict, u32)> = Default::default();
    while !sh.stop.load(Ordering::Relaxed) {
        let first = sh.next.fetch_add(BATCH, Ordering::Relaxed);
        let count = match cfg.limit {
            Limit::Cases(total) => {
                if first >= total {
                    break;
                }
                BATCH.min(total - first)
            }
            Limit::Time(d) => {
                if start.elapsed() >= d {
                    sh.stop.store(true, Ordering::Relaxed);
                    break;
                }
                BATCH
            }
        };
        cases.clear();
        for i in first..first + count {
            cases.push(generate(&rig.target, cfg.seed, k + n * i));
        }
        // The reference first; the others are told what it gave, so a backend
        // may trust an observation that agrees (what the loop below does not
        // count as a mismatch) without confirming it, and say so (`agreed`: no
        // second comparison below), or say that it equals the reference
        // (`Observed::Same`: nothing copied, nothing to compare).
        let judge = &rig.judge;
        let agrees =
            |c: &Case, r: &Outcome, o: &Outcome| o == r || compare(judge, c, r, o).is_match();
        let mut backends = rig.backends.iter_mut();
        let reference_outs = backends
            .next()
            .expect("a rig has backends")
            .run_batch(&cases);
        let others: Vec<Vec<Result<Observed, Skip>>> = backends
            .map(|b| b.run_batch_expecting(&cases, &reference_outs, &agrees))
            .collect();
        for (ci, case) in cases.iter().enumerate() {
            st.generated += 1;
            let skipped = std::iter::once(reference_outs[ci].as_ref().err())
                .chain(others.iter().map(|o| o[ci].as_ref().err()))
                .flatten()
                .next();
            if let Some(s) = skipped {
                *st.skipped.entry(s.0.clone()).or_default() += 1;
                continue;
            }
            st.cases += 1;
            let reference = reference_outs[ci].as_ref().unwrap();
            for (oi, other) in others.iter().enumerate() {
                let bi = oi + 1;
                let obs = match other[ci].as_ref().unwrap() {
                    Observed::Same => continue,
                    Observed::Outcome { agreed: true, .. } => continue,
                    Observed::Outcome { outcome, .. } if outcome == reference => continue,
                    Observed::Outcome { outcome, .. } => outcome,
                };
                let cmp = compare(&rig.judge, case, reference, obs);
                if cmp.is_match() {
                    continue;
                }
                st.mismatches += 1;
                sh.mismatches.fetch_add(1, Ordering::Relaxed);
                // The envelope is costly: once a difference class has been judged
                // the same way JUDGE_TIMES times on this thread, its verdict is reused.
                let key = format!("{bi}|{}", cmp.signature());
                let v = match judged.get(&key) {
                    Some((v, n)) if *n >= JUDGE_TIMES => v.clone(),
                    _ => {
                        let v = verdict(&rig.judge, case, &cmp, obs);
                        let e = judged.entry(key).or_insert((v.clone(), 0));
                        if e.0.short() == v.short() {
                            e.1 += 1;
                        } else {
                            *e = (v.clone(), 0);
                        }
                        v
                    }
                };
                let sig = signature(&names[bi], &v, &cmp);
                let new = {
                    let mut m = sh.signatures.lock().unwrap();
                    let e = m.entry(sig.clone()).or_default();
                    *e += 1;
                    *e == 1
                };
                if new {
                    let idx = k + n * (first + ci as u64);
                    let origin = format!(
                        "Found by `xsdiff run` with seed {} as case {idx}; minimized.",
                        cfg.seed
                    );
                    if let Some(dir) = &cfg.out {
                        let min = minimize_finding(&mut rig, bi, case, &sig, cfg.minimize_budget);
                        let text = finding_text(&mut rig, bi, &min, &sig, &origin);
                        let slug: String = names[bi]
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                            .collect();
                        let path = dir.join(format!("{slug}-{:016x}.case", fnv(&sig)));
                        write_atomic(&path, &text)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        sh.findings.lock().unwrap().push(path.display().to_string());
                        pb.println(format!("finding: {sig}\n  -> {}", path.display()));
                    } else {
                        pb.println(format!(
                            "finding: {sig} (case {idx}; give --out DIR to keep it)"
                        ));
                    }
                }
            }
        }
        pb.inc(count);
        let mm = sh.mismatches.load(Ordering::Relaxed);
        if mm > 0 {
            pb.set_message(format!(
                "{mm} mismatches, {} signatures",
                sh.signatures.lock().map_or(0, |m| m.len())
            ));
        }
    }
    Ok(st)
}

/// Shrinks a mismatching case while backend `bi` keeps the same signature.
pub fn minimize_finding(rig: &mut Rig, bi: usize, case: &Case, sig: &str, budget: usize) -> Case {
    let judge = rig.judge.clone();
    let name = rig.backends[bi].name();
    let mut keep = |c: &Case| -> bool {
        let Ok(outs) = run_all(rig, c) else {
            return false;
        };
        let cmp = compare(&judge, c, &outs[0], &outs[bi]);
        !cmp.is_match() && signature(&name, &verdict(&judge, c, &cmp, &outs[bi]), &cmp) == sig
    };
    minimize(&judge, case, budget, &mut keep)
}

/// Runs a campaign.
pub fn run(cfg: &Config) -> Result<Summary, String> {
    if cfg.shard.1 == 0 || cfg.shard.0 >= cfg.shard.1 {
        return Err(format!(
            "bad shard {}/{}: expected K/N with K < N",
            cfg.shard.0, cfg.shard.1
        ));
    }
    if let Some(d) = &cfg.out {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    // Open once on this thread to fail early and to name things.
    let rig = open_rig(&cfg.backends, cfg.cpu.as_deref())?;
    let mut summary = Summary {
        backends: rig.backends.iter().map(|b| b.name()).collect(),
        reference: rig.backends[0].name(),
        model: rig.judge.name.clone(),
        seed: cfg.seed,
        shard: format!("{}/{}", cfg.shard.0, cfg.shard.1),
        ..Summary::default()
    };
    drop(rig);
    let pb = match cfg.limit {
        Limit::Cases(n) if cfg.progress => ProgressBar::new(n),
        _ if cfg.progress => ProgressBar::new_spinner(),
        _ => ProgressBar::hidden(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {pos} cases ({per_sec}) {wide_bar} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let sh = Arc::new(Shared {
        next: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        signatures: Mutex::new(BTreeMap::new()),
        findings: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let results: Vec<Result<Local, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cfg.jobs.max(1))
            .map(|_| {
                let sh = &sh;
                let pb = &pb;
                s.spawn(move || {
                    let r = worker(cfg, sh, pb, start);
                    if r.is_err() {
                        sh.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    for r in results {
        let l = r?;
        summary.cases += l.cases;
        summary.generated += l.generated;
        summary.mismatches += l.mismatches;
        for (k, v) in l.skipped {
            *summary.skipped.entry(k).or_default() += v;
        }
    }
    summary.seconds = secs;
    summary.cases_per_sec = summary.generated as f64 / secs.max(1e-9);
    summary.signatures = sh.signatures.lock().unwrap().clone();
    summary.findings = sh.findings.lock().unwrap().clone();
    Ok(summary)
}

impl Summary {
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} cases in {:.1} s ({:.0} cases/s), {} compared, backends {} (reference {}, model {}), seed {}, shard {}\n",
            self.generated,
            self.seconds,
            self.cases_per_sec,
            self.cases,
            self.backends.join(","),
            self.reference,
            self.model,
            self.seed,
            self.shard
        );
        if !self.skipped.is_empty() {
            s.push_str("skipped:\n");
            for (r, n) in &self.skipped {
                s.push_str(&format!("  {n:>9}  {r}\n"));
            }
        }
        let mut by_verdict: BTreeMap<&str, u64> = BTreeMap::new();
        for (sig, n) in &self.signatures {
            let v = sig
                .split(": ")
                .nth(1)
                .and_then(|r| r.split(" | ").next())
                .unwrap_or("");
            *by_verdict.entry(v).or_default() += n;
        }
        let tally: Vec<String> = by_verdict.iter().map(|(v, n)| format!("{n} {v}")).collect();
        s.push_str(&format!(
            "mismatches: {}{}\n",
            self.mismatches,
            if tally.is_empty() {
                String::new()
            } else {
                format!(" ({})", tally.join(", "))
            }
        ));
        for (sig, n) in &self.signatures {
            s.push_str(&format!("  {n:>9}  {sig}\n"));
        }
        for f in &self.findings {
            s.push_str(&format!("finding: {f}\n"));
        }
        s
    }
}
