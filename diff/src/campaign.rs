//! Campaigns: generated cases run on every backend for a time or a count, on
//! several threads, compared with the reference (the first backend, usually
//! the emulator's prediction). A mismatch outside the envelope counts once for
//! each rule it breaks, under the signature (backend, rule, instruction); one
//! inside it counts under the latitude taken. Signatures are checked against
//! the corpus's known findings ([`crate::known`]); only new ones are minimized
//! and written to `--out`, one case per new rule a backend breaks, minimized
//! for the first signature (rule, instruction) that showed it; its header and
//! the report list the rule's other instructions (with `--out-inside`, one
//! case per latitude too).
//!
//! A new finding is written at once as found, then minimized: its candidates
//! run in batches (one emulator process, one Bochs boot for many), up to 16
//! beside each batch of generated cases and whole rounds once the cases are
//! done. With `--time T`, generation stops at T and minimization takes at
//! most 0.15 T of each worker's time (a batch's time beyond what its
//! generated cases alone take) and ends by 1.2 T: no batch gets more
//! candidates than fit before then at the worker's cost per case, and what is
//! left is written as it stands (its smallest case so far, whose outcomes are
//! kept: nothing runs again), so a run with `--out` keeps at least 85% of the
//! cases/s of one without. A stop
//! flag (SIGINT/SIGTERM, see [`crate::interrupt`]) ends a campaign the same
//! way at once: the batch in flight is dropped, findings are written as they
//! stand, and the summary covers what ran. Files are written atomically.
//!
//! Case n of a campaign depends only on (seed, n); `--shard K/N` takes the n
//! with n mod N = K, so shards never overlap, and with `--cases M` the n below
//! M ([`crate::shard::cases_in`]), so N shards run the cases of one run of M.

use crate::backend::{self, Backend, Observed, Skip};
use crate::compare::{compare, Comparison};
use crate::finding::{self, Finding};
use crate::generate::{generate, Target};
use crate::known::{self, BackendTarget, Known};
use crate::minimize::Minimizer;
use crate::report::{self, BackendReport, KnownCheck, SigStat, Status, Tally};
use crate::signature::{self, Judgement, Signature};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
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
    /// Where new findings (rules broken) are written, minimized.
    pub out: Option<PathBuf>,
    /// Also write one case per kind of latitude taken inside the envelope.
    pub out_inside: bool,
    pub progress: bool,
    /// Candidates the minimizer may run per finding.
    pub minimize_budget: usize,
    /// The corpus whose regressions, ring0 and silicon files are the known findings.
    pub corpus: Option<PathBuf>,
    /// Set from outside (SIGINT, SIGTERM) to end the campaign early.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What minimization cost.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MinStats {
    pub findings: u64,
    pub candidates: u64,
    pub batches: u64,
    /// Findings written before minimization reached a fixed point (time or budget).
    pub cut_short: u64,
}

/// A campaign's result.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
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
    /// Ended by SIGINT/SIGTERM (or the stop flag) before its limit.
    pub interrupted: bool,
    /// The corpus folders read for known findings, and how many files name rules.
    pub known_folders: Vec<String>,
    pub known_files: usize,
    /// Per backend: rules broken, latitude taken, known findings checked.
    pub report: Vec<BackendReport>,
    /// Files written.
    pub findings: Vec<String>,
    pub minimization: MinStats,
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

/// The outcomes of many cases on every backend, one batch per backend.
pub fn run_all_batch(rig: &mut Rig, cases: &[Case]) -> Vec<Result<Vec<Outcome>, Skip>> {
    let per: Vec<Vec<Result<Outcome, Skip>>> = rig
        .backends
        .iter_mut()
        .map(|b| b.run_batch(cases))
        .collect();
    (0..cases.len())
        .map(|i| per.iter().map(|v| v[i].clone()).collect())
        .collect()
}

/// What a minimization keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// The backend still breaks this rule on this instruction.
    Rule(Signature),
    /// The backend still takes this latitude (inside the envelope).
    Latitude(String),
}

/// Whether backend `name`'s outcome `obs` of `case` still shows `goal`
/// against `reference`, judged with `model`.
pub fn goal_holds(
    goal: &Goal,
    model: &CpuModel,
    name: &str,
    case: &Case,
    reference: &Outcome,
    obs: &Outcome,
) -> bool {
    let cmp = compare(model, case, reference, obs);
    if cmp.is_match() {
        return false;
    }
    let j = signature::judge(model, case, &cmp, obs);
    match goal {
        Goal::Rule(sig) => signature::signatures(
            name,
            &j,
            case,
            &signature::instruction(case, reference, obs),
        )
        .contains(sig),
        Goal::Latitude(l) => matches!(&j, Judgement::Latitude { taken } if taken.contains(l)),
    }
}

/// Minimizes `case` for backend `bi` of `rig` while `goal` holds, candidates
/// in batches (one run per backend per batch).
pub fn minimize_case(
    rig: &mut Rig,
    bi: usize,
    case: &Case,
    goal: &Goal,
    budget: usize,
    deadline: Option<Instant>,
) -> Minimizer {
    let judge = rig.judge.clone();
    let name = rig.backends[bi].name();
    let mut keep = |cs: &[Case]| -> Vec<bool> {
        run_all_batch(rig, cs)
            .iter()
            .zip(cs)
            .map(|(o, c)| {
                o.as_ref()
                    .is_ok_and(|o| goal_holds(goal, &judge, &name, c, &o[0], &o[bi]))
            })
            .collect()
    };
    crate::minimize::minimize_batched(&judge, case, budget, deadline, &mut keep)
}

/// A finding being minimized by one worker.
struct Pending {
    bi: usize,
    goal: Goal,
    min: Minimizer,
    path: PathBuf,
    /// `seed S as case N`.
    origin: String,
    /// Candidates of the current round not yet run, and whether each one run
    /// so far holds (the round is accepted when all have run).
    queue: std::collections::VecDeque<Case>,
    results: Vec<bool>,
    /// Candidates proposed in the current round.
    round: usize,
    /// Cases known to hold with their (reference, observed) outcomes: the
    /// original and the held candidates of this round and the one before.
    held: Vec<(Case, Outcome, Outcome)>,
    held_before: Vec<(Case, Outcome, Outcome)>,
    original: (Case, Outcome, Outcome),
    /// The minimizer's current case with its outcomes (written without
    /// running it again).
    best: (Case, Outcome, Outcome),
    /// Written without minimizing (the time was up when it was found).
    unminimized: bool,
}

struct Shared {
    next: AtomicU64,
    mismatches: AtomicU64,
    /// No more cases are generated (limit reached, or interrupted).
    gen_stop: AtomicBool,
    interrupt: Arc<AtomicBool>,
    gen_deadline: Option<Instant>,
    min_deadline: Option<Instant>,
    /// Worker time minimization may take, summed over workers (`--time T`:
    /// 0.15 T per worker, so the campaign keeps at least 85% of its cases/s).
    min_budget: Option<Duration>,
    /// Worker time minimization has taken (microseconds): each batch's time
    /// times its share of candidates.
    min_spent: AtomicU64,
    tally: Mutex<Tally>,
    findings: Mutex<Vec<String>>,
    minstats: Mutex<MinStats>,
    known: Known,
    targets: Vec<Option<BackendTarget>>,
}

impl Shared {
    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
    /// Whether minimization may go on: budget and deadline.
    fn min_time_left(&self) -> bool {
        let spent = Duration::from_micros(self.min_spent.load(Ordering::Relaxed));
        self.min_budget.is_none_or(|b| spent < b)
            && self.min_deadline.is_none_or(|d| Instant::now() < d)
    }
}

#[derive(Default)]
struct Local {
    cases: u64,
    generated: u64,
    mismatches: u64,
    skipped: BTreeMap<String, u64>,
}

/// Generated cases per batch: small enough that a batch's cases and predictions
/// (some 80 KiB each on an AMX host) are still in the core's L2 cache when the
/// native runner copies them in and compares its observation (`xsdiff run
/// --backends emu,native --jobs 1`, Intel host, cases per CPU-second: 64: ~90k,
/// 32: ~99k, 16: ~118k, 8: ~117k).
const BATCH: u64 = 16;
/// Minimization candidates run beside a batch of generated cases (as many as
/// the batch's own cases: a backend with a cost per run, a process under
/// valgrind or QEMU, a Bochs boot, shares it); what they cost is the batch's
/// time beyond a batch without them ([`Plain`]).
const CANDIDATES_PER_BATCH: usize = 16;

/// What a batch of generated cases alone takes on this worker (a moving
/// average): a batch with candidates counts its time beyond it against the
/// minimization budget, or its candidates' share of its time until a plain
/// batch has been timed.
#[derive(Default)]
struct Plain(Option<Duration>);

impl Plain {
    fn note(&mut self, d: Duration) {
        self.0 = Some(match self.0 {
            Some(p) => p.mul_f64(0.75) + d.mul_f64(0.25),
            None => d,
        });
    }
    /// The minimization cost of a batch of `n` candidates among `len` cases
    /// that took `d`.
    fn extra(&self, d: Duration, n: usize, len: usize) -> Duration {
        match self.0 {
            Some(p) => d.saturating_sub(p),
            None => d.mul_f64(n as f64 / len.max(1) as f64),
        }
    }
}
const JUDGE_TIMES: u32 = 32;

/// Writes a pending finding as it stands (atomically): when found (not yet
/// minimized) and again when its minimization ends.
fn write_pending(
    p: &Pending,
    rig: &mut Rig,
    names: &[String],
    sh: &Shared,
    how: &str,
) -> Result<(), String> {
    let mut cur = p.min.current().clone();
    let mut how = how.to_string();
    let outs = p
        .held
        .iter()
        .chain(&p.held_before)
        .chain([&p.best, &p.original])
        .find(|(c, _, _)| *c == cur)
        .map(|(_, r, o)| (r.clone(), o.clone()));
    let (reference, observed) = match outs {
        Some(x) => x,
        None => {
            match run_all(rig, &cur) {
                Ok(o) => (o[0].clone(), o[p.bi].clone()),
                Err(s) => {
                    // The case as found is written (its outcomes are known).
                    how = format!("{how}; the smallest case did not run again ({s}): this is the case as found");
                    cur = p.original.0.clone();
                    (p.original.1.clone(), p.original.2.clone())
                }
            }
        }
    };
    let name = &names[p.bi];
    let mut header = match &p.goal {
        Goal::Rule(sig) => {
            let mut h = vec![format!(
                "Finding: {name} breaks {} on {}.",
                sig.rule, sig.instruction
            )];
            if let Some((t, c)) = report::rule_text(&sig.rule) {
                h.push(format!("SDM: {t} ({c})"));
            }
            // The rule's other signatures so far (the report has them all).
            let others: Vec<String> = sh
                .tally
                .lock()
                .unwrap()
                .signatures
                .iter()
                .filter(|(s, _)| s.backend == sig.backend && s.rule == sig.rule && *s != sig)
                .map(|(s, st)| format!("{} ({}, e.g. {})", s.instruction, st.count, st.example))
                .collect();
            if !others.is_empty() {
                h.push(format!("Also broken on: {}.", others.join("; ")));
            }
            h
        }
        Goal::Latitude(l) => vec![format!(
            "Inside the envelope: {name} takes the latitude `{l}`."
        )],
    };
    header.push(format!("Found by `xsdiff run` with {}; {how}.", p.origin));
    let backend_model = rig.backends[p.bi]
        .is_real()
        .then(|| rig.backends[p.bi].model().clone());
    let f = Finding {
        reference: &names[0],
        backend: name,
        backend_model: backend_model.as_ref(),
        target: sh.targets[p.bi].as_ref(),
        header,
    };
    let text = finding::text(&f, &rig.judge, &cur, &reference, &observed);
    finding::write_atomic(&p.path, &text).map_err(|e| format!("{}: {e}", p.path.display()))
}

/// Writes a finding whose minimization has ended and records what it cost.
fn finish(
    p: Pending,
    rig: &mut Rig,
    names: &[String],
    sh: &Shared,
    pb: &ProgressBar,
) -> Result<(), String> {
    let how = if p.unminimized {
        "not minimized (the time limit had passed)".to_string()
    } else if p.min.cut_short() || !p.min.is_done() {
        format!(
            "minimization stopped early ({} candidates in {} batches)",
            p.min.tried, p.min.rounds
        )
    } else {
        format!(
            "minimized ({} candidates in {} batches)",
            p.min.tried, p.min.rounds
        )
    };
    write_pending(&p, rig, names, sh, &how)?;
    {
        let mut m = sh.minstats.lock().unwrap();
        m.findings += 1;
        m.candidates += p.min.tried as u64;
        m.batches += p.min.rounds as u64;
        m.cut_short += (p.unminimized || p.min.cut_short()) as u64;
    }
    pb.println(format!("finding: {} ({how})", p.path.display()));
    Ok(())
}

fn worker(cfg: &Config, sh: &Shared, pb: &ProgressBar) -> Result<Local, String> {
    let mut rig = open_rig(&cfg.backends, cfg.cpu.as_deref())?;
    let mut st = Local::default();
    let names: Vec<String> = rig.backends.iter().map(|b| b.name()).collect();
    let (k, n) = cfg.shard;
    let mut judged: HashMap<String, (Judgement, u32)> = HashMap::new();
    let mut active: Vec<Pending> = Vec::new();
    let mut plain = Plain::default();
    let mut cases: Vec<Case> = Vec::new();
    loop {
        if sh.interrupted() {
            sh.gen_stop.store(true, Ordering::Relaxed);
            break;
        }
        cases.clear();
        let mut first = 0;
        let mut count = 0;
        if !sh.gen_stop.load(Ordering::Relaxed) {
            if sh.gen_deadline.is_some_and(|d| Instant::now() >= d) {
                sh.gen_stop.store(true, Ordering::Relaxed);
            } else {
                first = sh.next.fetch_add(BATCH, Ordering::Relaxed);
                count = match cfg.limit {
                    Limit::Cases(total) if first >= total => {
                        sh.gen_stop.store(true, Ordering::Relaxed);
                        0
                    }
                    Limit::Cases(total) => BATCH.min(total - first),
                    Limit::Time(_) => BATCH,
                };
                for i in first..first + count {
                    cases.push(generate(&rig.target, cfg.seed, k + n * i));
                }
            }
        }
        // Minimization candidates join the batch: a few beside generated cases,
        // all a round has once no more are generated; within the time left for
        // minimization (`Shared::min_budget`), else what is pending is written
        // as it stands.
        let generating = !cases.is_empty();
        let mut room = if generating {
            CANDIDATES_PER_BATCH
        } else {
            usize::MAX
        };
        // No more candidates than the time left before the minimization
        // deadline runs at this worker's cost per case (a plain batch's time
        // over its cases), so that the last batch ends by the deadline.
        if let (Some(d), Some(p)) = (sh.min_deadline, plain.0) {
            let per_case = p.div_f64(BATCH as f64).max(Duration::from_micros(1));
            let left = d.saturating_duration_since(Instant::now());
            let fits = (left.as_secs_f64() / per_case.as_secs_f64()) as usize;
            room = room.min(fits.saturating_sub(cases.len()));
        }
        if !sh.min_time_left() || (!generating && room == 0) {
            room = 0;
            if !generating {
                for p in &mut active {
                    p.min.stop();
                }
            }
        }
        let mut owners: Vec<(usize, usize, usize)> = Vec::new();
        let mut i = 0;
        while i < active.len() {
            let p = &mut active[i];
            if p.queue.is_empty() && p.results.len() == p.round {
                if p.round > 0 {
                    let r = std::mem::take(&mut p.results);
                    p.min.accept(&r);
                    p.held_before = std::mem::take(&mut p.held);
                    if let Some(b) = p.held_before.iter().find(|x| x.0 == *p.min.current()) {
                        p.best = b.clone();
                    }
                }
                p.queue = if room > 0 || !generating {
                    p.min.propose().into()
                } else {
                    Default::default()
                };
                p.round = p.queue.len();
                if p.round == 0 && (p.min.is_done() || !generating) {
                    let p = active.remove(i);
                    finish(p, &mut rig, &names, sh, pb)?;
                    continue;
                }
            }
            let take = room.min(p.queue.len());
            if take > 0 {
                owners.push((i, cases.len(), take));
                cases.extend(p.queue.drain(..take));
                room -= take;
            }
            i += 1;
        }
        if cases.is_empty() {
            break;
        }
        // The reference first; the others are told what it gave, so a backend
        // may trust an observation that agrees (what the loop below does not
        // count as a mismatch) without confirming it, and say so (`agreed`: no
        // second comparison below), or say that it equals the reference
        // (`Observed::Same`: nothing copied, nothing to compare).
        let t0 = Instant::now();
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
        if sh.interrupted() {
            // The batch may have lost its processes to the same signal: not counted.
            break;
        }
        let observed = |ci: usize, oi: usize| -> Option<&Outcome> {
            let reference = reference_outs[ci].as_ref().ok()?;
            match others[oi][ci].as_ref().ok()? {
                Observed::Same | Observed::Outcome { agreed: true, .. } => None,
                Observed::Outcome { outcome, .. } if outcome == reference => None,
                Observed::Outcome { outcome, .. } => Some(outcome),
            }
        };
        for ci in 0..count as usize {
            let case = &cases[ci];
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
            let reference = reference_outs[ci].as_ref().expect("not skipped");
            for oi in 0..others.len() {
                let bi = oi + 1;
                let Some(obs) = observed(ci, oi) else {
                    continue;
                };
                let cmp = compare(&rig.judge, case, reference, obs);
                if cmp.is_match() {
                    continue;
                }
                st.mismatches += 1;
                sh.mismatches.fetch_add(1, Ordering::Relaxed);
                let j = judged_once(&mut judged, bi, &rig.judge, case, &cmp, obs);
                let idx = k + n * (first + ci as u64);
                let origin = format!("seed {} as case {idx}", cfg.seed);
                let example = format!("seed {} case {idx}", cfg.seed);
                let insn = signature::instruction(case, reference, obs);
                let mut start: Vec<(Goal, String)> = Vec::new();
                {
                    let mut t = sh.tally.lock().unwrap();
                    match &j {
                        Judgement::Breaks { .. } => {
                            *t.outside.entry(names[bi].clone()).or_default() += 1;
                            for sig in signature::signatures(&names[bi], &j, case, &insn) {
                                // The first signature of a (backend, rule): its
                                // finding is the rule's (one case per new rule).
                                let first_of_rule = !t
                                    .signatures
                                    .keys()
                                    .any(|s| s.backend == sig.backend && s.rule == sig.rule);
                                let status = match &sh.targets[bi] {
                                    Some(tg) => match sh.known.explaining(tg, &sig).as_slice() {
                                        [] => Status::New,
                                        [f, rest @ ..] => Status::Known {
                                            file: f.path.clone(),
                                            others: rest.iter().map(|f| f.path.clone()).collect(),
                                        },
                                    },
                                    None => Status::New,
                                };
                                let e = t.signatures.entry(sig.clone()).or_insert(SigStat {
                                    count: 0,
                                    example: match &status {
                                        Status::Known { file, .. } => file.clone(),
                                        Status::New => example.clone(),
                                    },
                                    status,
                                });
                                e.count += 1;
                                if first_of_rule && e.status == Status::New {
                                    let what = sig.rule.clone();
                                    start.push((Goal::Rule(sig), what));
                                }
                            }
                        }
                        Judgement::Latitude { taken } => {
                            *t.inside.entry(names[bi].clone()).or_default() += 1;
                            for l in taken {
                                let e = t
                                    .latitude
                                    .entry((names[bi].clone(), l.clone()))
                                    .or_insert((0, example.clone()));
                                e.0 += 1;
                                if e.0 == 1 && cfg.out_inside {
                                    let what = format!("latitude-{l}");
                                    start.push((Goal::Latitude(l.clone()), what));
                                }
                            }
                        }
                        Judgement::Unjudged { reason } => {
                            *t.unjudged
                                .entry((names[bi].clone(), reason.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                for (goal, what) in start {
                    let Some(dir) = &cfg.out else {
                        if let Goal::Rule(sig) = &goal {
                            pb.println(format!(
                                "new: {sig} ({example}; give --out DIR to keep it)"
                            ));
                        }
                        continue;
                    };
                    let late = sh.min_deadline.is_some_and(|d| Instant::now() >= d);
                    let mut min =
                        Minimizer::new(&rig.judge, case, cfg.minimize_budget, sh.min_deadline);
                    if late {
                        min.stop();
                    }
                    let p = Pending {
                        bi,
                        goal,
                        min,
                        path: finding::path_for(dir, &names[bi], &what),
                        origin: origin.clone(),
                        queue: Default::default(),
                        results: Vec::new(),
                        round: 0,
                        held: Vec::new(),
                        held_before: Vec::new(),
                        original: (case.clone(), reference.clone(), obs.clone()),
                        best: (case.clone(), reference.clone(), obs.clone()),
                        unminimized: late,
                    };
                    // Written at once, minimized later: a campaign killed in
                    // between still leaves the finding.
                    write_pending(&p, &mut rig, &names, sh, "not minimized yet")?;
                    let path = p.path.display().to_string();
                    {
                        let mut t = sh.tally.lock().unwrap();
                        match &p.goal {
                            Goal::Rule(sig) => {
                                if let Some(s) = t.signatures.get_mut(sig) {
                                    s.example = path.clone();
                                }
                            }
                            Goal::Latitude(l) => {
                                if let Some(e) = t.latitude.get_mut(&(names[bi].clone(), l.clone()))
                                {
                                    e.1 = path.clone();
                                }
                            }
                        }
                    }
                    sh.findings.lock().unwrap().push(path);
                    active.push(p);
                }
            }
        }
        for &(pi, from, len) in &owners {
            let p = &mut active[pi];
            let oi = p.bi - 1;
            for ci in from..from + len {
                let ok = match (reference_outs[ci].as_ref(), observed(ci, oi)) {
                    (Ok(r), Some(o)) => {
                        goal_holds(&p.goal, &rig.judge, &names[p.bi], &cases[ci], r, o)
                            .then(|| p.held.push((cases[ci].clone(), r.clone(), o.clone())))
                            .is_some()
                    }
                    _ => false,
                };
                p.results.push(ok);
            }
        }
        if owners.is_empty() {
            if count as usize == cases.len() {
                plain.note(t0.elapsed());
            }
        } else {
            // What the candidates added to the batch (their runs and their
            // judging), counted against the minimization budget.
            let n: usize = owners.iter().map(|o| o.2).sum();
            let extra = plain.extra(t0.elapsed(), n, cases.len());
            sh.min_spent
                .fetch_add(extra.as_micros() as u64, Ordering::Relaxed);
        }
        pb.inc(count);
        let mm = sh.mismatches.load(Ordering::Relaxed);
        if mm > 0 {
            let t = sh.tally.lock().unwrap();
            let new = t
                .signatures
                .values()
                .filter(|s| s.status == Status::New)
                .count();
            pb.set_message(format!(
                "{mm} mismatches, {} signatures ({new} new)",
                t.signatures.len()
            ));
        }
    }
    // What is still being minimized is written as it stands.
    for mut p in active.drain(..) {
        p.min.stop();
        finish(p, &mut rig, &names, sh, pb)?;
    }
    Ok(st)
}

/// The judgement of a mismatch; the envelope is costly, so once a difference
/// class has been judged the same way JUDGE_TIMES times on this thread for
/// cases of the same instructions (a judgement names the steps it charges by
/// their index), its judgement is reused.
fn judged_once(
    cache: &mut HashMap<String, (Judgement, u32)>,
    bi: usize,
    model: &CpuModel,
    case: &Case,
    cmp: &Comparison,
    obs: &Outcome,
) -> Judgement {
    let key = format!("{bi}|{}|{}", cmp.signature(), signature::mnemonics(case));
    match cache.get(&key) {
        Some((j, n)) if *n >= JUDGE_TIMES => j.clone(),
        _ => {
            let j = signature::judge(model, case, cmp, obs);
            let e = cache.entry(key).or_insert((j.clone(), 0));
            if e.0 == j {
                e.1 += 1;
            } else {
                *e = (j.clone(), 0);
            }
            j
        }
    }
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
    // This shard's part of `--cases M`.
    let cfg = &Config {
        limit: match cfg.limit {
            Limit::Cases(m) => Limit::Cases(crate::shard::cases_in(m, cfg.shard)),
            t => t,
        },
        ..cfg.clone()
    };
    let start = Instant::now();
    // Open once on this thread to fail early, to name things and to check the
    // known findings of each target.
    let mut rig = open_rig(&cfg.backends, cfg.cpu.as_deref())?;
    let names: Vec<String> = rig.backends.iter().map(|b| b.name()).collect();
    let mut summary = Summary {
        backends: names.clone(),
        reference: names[0].clone(),
        model: rig.judge.name.clone(),
        seed: cfg.seed,
        shard: format!("{}/{}", cfg.shard.0, cfg.shard.1),
        ..Summary::default()
    };
    let targets: Vec<Option<BackendTarget>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == 0 {
                None
            } else {
                known::backend_target(n)
            }
        })
        .collect();
    let mut known = match cfg.corpus.clone().or_else(known::default_corpus) {
        Some(c) => Known::load(&c)?,
        None => Known::default(),
    };
    let mut checks: Vec<(String, KnownCheck)> = Vec::new();
    for (bi, t) in targets.iter().enumerate() {
        if let Some(t) = t {
            for c in known::check(&mut known, t, rig.backends[bi].as_mut()) {
                checks.push((names[bi].clone(), c));
            }
        }
    }
    summary.known_folders = known.folders.clone();
    summary.known_files = known.files.len();
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
    let (gen_deadline, min_deadline) = match cfg.limit {
        Limit::Time(d) => (Some(start + d), Some(start + d.mul_f64(1.2))),
        Limit::Cases(_) => (None, None),
    };
    let sh = Shared {
        next: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        gen_stop: AtomicBool::new(false),
        interrupt: cfg.stop.clone().unwrap_or_default(),
        gen_deadline,
        min_deadline,
        min_budget: match cfg.limit {
            Limit::Time(d) => Some(d.mul_f64(0.15 * cfg.jobs.max(1) as f64)),
            Limit::Cases(_) => None,
        },
        min_spent: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
        findings: Mutex::new(Vec::new()),
        minstats: Mutex::new(MinStats::default()),
        known,
        targets,
    };
    let results: Vec<Result<Local, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cfg.jobs.max(1))
            .map(|_| {
                let sh = &sh;
                let pb = &pb;
                s.spawn(move || {
                    let r = worker(cfg, sh, pb);
                    if r.is_err() {
                        sh.gen_stop.store(true, Ordering::Relaxed);
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
    summary.interrupted = sh.interrupted();
    let target_names: Vec<Option<String>> = sh
        .targets
        .iter()
        .map(|t| t.as_ref().map(|t| t.to_string()))
        .collect();
    let tally = sh.tally.lock().unwrap().clone();
    summary.report = report::build(&names, &target_names, &tally, &checks);
    let mut findings = sh.findings.lock().unwrap().clone();
    findings.sort();
    summary.findings = findings;
    summary.minimization = sh.minstats.lock().unwrap().clone();
    Ok(summary)
}

impl Summary {
    /// The title of the report: what ran, how long.
    pub fn title(&self) -> String {
        format!(
            "xsdiff run: {} against {} (model {}), seed {}, shard {}",
            self.backends[1..].join(", "),
            self.reference,
            self.model,
            self.seed,
            self.shard
        )
    }

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
        if self.interrupted {
            s.push_str("interrupted: the summary covers the cases run until then\n");
        }
        if !self.skipped.is_empty() {
            s.push_str("skipped:\n");
            for (r, n) in &self.skipped {
                s.push_str(&format!("  {n:>9}  {r}\n"));
            }
        }
        let outside: u64 = self.report.iter().map(|r| r.outside).sum();
        let inside: u64 = self.report.iter().map(|r| r.inside).sum();
        let unjudged: u64 = self.report.iter().flat_map(|r| r.unjudged.values()).sum();
        s.push_str(&format!("mismatches: {}", self.mismatches));
        if self.mismatches > 0 {
            s.push_str(&format!(
                " ({outside} outside the envelope, {inside} inside it but off the model{})",
                if unjudged > 0 {
                    format!(", {unjudged} not judged")
                } else {
                    String::new()
                }
            ));
        }
        s.push('\n');
        if self.known_folders.is_empty() {
            s.push_str("known findings: no corpus read (give --corpus DIR)\n");
        } else {
            s.push_str(&format!(
                "known findings: {} case files naming rules in {}\n",
                self.known_files,
                self.known_folders.join(", ")
            ));
        }
        s.push_str(&report::text(&self.report));
        let m = &self.minimization;
        if m.findings > 0 {
            s.push_str(&format!(
                "minimization: {} findings, {} candidates in {} batches{}\n",
                m.findings,
                m.candidates,
                m.batches,
                if m.cut_short > 0 {
                    format!(
                        ", {} stopped early by the time limit or budget",
                        m.cut_short
                    )
                } else {
                    String::new()
                }
            ));
        }
        for f in &self.findings {
            s.push_str(&format!("finding: {f}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cost_what_they_add_to_a_batch() {
        let ms = Duration::from_millis;
        // Before a plain batch is timed: the candidates' share of the batch.
        let mut p = Plain::default();
        assert_eq!(p.extra(ms(1200), 8, 24), ms(400));
        // Then: the batch's time beyond a plain batch (a moving average).
        p.note(ms(1000));
        assert_eq!(p.extra(ms(1500), 8, 24), ms(500));
        assert_eq!(p.extra(ms(900), 8, 24), ms(0));
        p.note(ms(2000));
        assert_eq!(p.0, Some(ms(1250)));
    }
}
