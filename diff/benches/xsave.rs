//! `cargo bench -p xsave-diff`: the emulator against this CPU, as ratios
//! measured in the same run and printed as a table at the end.
//!
//! 1. `roundtrip`: XSAVEC64 + XRSTOR64 of the full host state (every XCR0
//!    component non-init; TILEDATA only where the kernel grants AMX), emulated
//!    (`xsave_emu` machine, host model) vs on this CPU (`xsave_native::bench_hw`).
//! 2. `cet`: emulated XSAVES64 + XRSTORS64 at CPL 0 on zen5 of a guest fpstate
//!    (RFBM with CET_S) vs a normal fpstate (without CET_S): time and bytes written.
//! 3. `cases`: cases per second on the same generated cases (seed 1, indices
//!    0..N): emu alone, native alone, emu vs native (all, and the non-faulting
//!    ones), the `exec` backend under qemu-x86_64, and unicorn. On a CPU with
//!    AMX the runner's rows are measured twice: first as `xsdiff run` runs by
//!    default (group `cases_xfd_armed`: no AMX permission, so XFD is armed and a
//!    case that loads TILEDATA faults with #NM), then, after the round trip has
//!    asked for AMX permission (which a process cannot give back), as `xsdiff run
//!    --amx` runs (group `cases`: XFD disarmed, TILEDATA loaded, saved and
//!    compared in the cases that use it).
//!
//! Parts that cannot run here (no XSAVEC, no runner, no qemu-x86_64, no unicorn
//! backend) are skipped with the reason printed, in the table too.

use criterion::{black_box, Criterion, Throughput};
use iced_x86::Instruction;
use std::path::PathBuf;
use std::time::Duration;
use xsave_diff::backend::{self, Backend};
use xsave_diff::compare::compare;
use xsave_diff::generate::{generate, Target};
use xsave_emu::case::ARENA_BASE;
use xsave_emu::exec::{decode, Machine};
use xsave_emu::{layout, predict, Case, Control, CpuModel, Memory, Outcome, Policy, Xfeatures};
use xsave_native::runner::{Check, Runner};

/// Generated cases per measurement.
const CASES: u64 = 2000;
/// Cases for the exec backend (one qemu-x86_64 process per batch).
const EXEC_CASES: u64 = 500;
const SEED: u64 = 1;

const XSAVEC64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x27];
const XRSTOR64_RDI: [u8; 4] = [0x48, 0x0f, 0xae, 0x2f];
const XSAVES64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x2f];
const XRSTORS64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x1f];
const RDI: usize = 7;

#[path = "common/full_state.rs"]
mod full_state;
use full_state::full_state;

/// One row of the closing table.
struct Row {
    what: String,
    value: String,
    ratio: String,
    /// Issue 17's goal for this row ("" where there is none), and whether this
    /// run met it.
    goal: String,
}

/// Issue 17's goals, by the start of a row's text: (row, goal as printed, the
/// bound, whether the bound is a minimum, and which figure it bounds: the ratio
/// or the value).
const GOALS: &[(&str, &str, f64, bool, Figure)] = &[
    (
        "XSAVEC+XRSTOR round trip",
        "<= 1.25x",
        1.25,
        false,
        Figure::Ratio,
    ),
    (
        "cases/s, emu vs native, non-faulting",
        ">= 300k/s",
        300e3,
        true,
        Figure::Value,
    ),
    (
        "cases/s, emu vs native (all",
        ">= 150k/s",
        150e3,
        true,
        Figure::Value,
    ),
    ("emu alone / unicorn", ">= 300x", 300.0, true, Figure::Ratio),
];

#[derive(Clone, Copy)]
enum Figure {
    Ratio,
    Value,
}

/// The first number in `s` ("12.5x", "241000 cases/s").
fn number(s: &str) -> Option<f64> {
    let t: String = s
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    t.parse().ok()
}

struct Table {
    dir: PathBuf,
    /// When this run started: estimates older than that are another run's.
    start: std::time::SystemTime,
    rows: Vec<Row>,
}

impl Table {
    fn row(&mut self, what: &str, value: String, ratio: String) {
        let goal = GOALS.iter().find(|g| what.starts_with(g.0)).map_or(
            String::new(),
            |&(_, text, bound, min, fig)| {
                let v = match fig {
                    Figure::Ratio => number(&ratio),
                    Figure::Value => number(&value),
                };
                match v {
                    Some(v) if (min && v >= bound) || (!min && v <= bound) => {
                        format!("{text}: met")
                    }
                    Some(_) => format!("{text}: NOT met"),
                    None => text.to_string(),
                }
            },
        );
        self.rows.push(Row {
            what: what.into(),
            value,
            ratio,
            goal,
        });
    }
    fn skip(&mut self, what: &str, why: &str) {
        println!("skipped {what}: {why}");
        self.row(what, format!("skipped: {why}"), "-".into());
    }
    /// Criterion's median time of one iteration of `group/name`, in ns, if it
    /// was measured in this run (not filtered out).
    fn median_ns(&self, group: &str, name: &str) -> Option<f64> {
        let p = self
            .dir
            .join(group)
            .join(name)
            .join("new")
            .join("estimates.json");
        if std::fs::metadata(&p).ok()?.modified().ok()? < self.start {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    }
    fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.ratio.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let w3 = self
            .rows
            .iter()
            .map(|r| r.goal.len())
            .max()
            .unwrap_or(0)
            .max(4);
        println!();
        println!(
            "| {:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} |",
            "measurement", "value", "ratio", "goal (issue 17)"
        );
        println!(
            "|{}|{}|{}|{}|",
            "-".repeat(w0 + 2),
            "-".repeat(w1 + 2),
            "-".repeat(w2 + 2),
            "-".repeat(w3 + 2)
        );
        for r in &self.rows {
            println!(
                "| {:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} |",
                r.what, r.value, r.ratio, r.goal
            );
        }
        println!(
            "\nNot measured here: diff_native fuzzing (goal >= 50k exec/s on one core): \
             cargo +nightly fuzz run -O -s none diff_native -- -max_total_time=60"
        );
    }
}

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// A machine for `model` under `ctl` with `image` loaded (the runner's initial
/// XRSTOR/XRSTORS), `pages` zeroed arena pages, RFBM in EDX:EAX and RDI at the
/// arena.
fn machine<'m>(
    model: &'m CpuModel,
    ctl: Control,
    image: &[u8],
    pages: usize,
    rfbm: u64,
) -> Machine<'m> {
    let mut m = Machine::new(model, ctl, Memory::new(ARENA_BASE, pages), Policy::Predict);
    let loaded = m.load_initial(image).expect("supported");
    assert_eq!(loaded, Ok(()), "the benchmark's initial image loads");
    m.gprs[0] = rfbm & 0xFFFF_FFFF;
    m.gprs[2] = rfbm >> 32;
    m.gprs[RDI] = ARENA_BASE;
    m
}

fn step_pair(m: &mut Machine, pair: &[Instruction]) {
    for i in pair {
        let r = m.step(i).expect("supported");
        debug_assert_eq!(r, Ok(()));
    }
}

fn bench_roundtrip(c: &mut Criterion, t: &mut Table) {
    const WHAT: &str = "XSAVEC+XRSTOR round trip of the full host state";
    let mut model = match xsave_native::host::host_model() {
        Ok(m) => m,
        Err(e) => return t.skip(WHAT, &e),
    };
    let xcr0 = model.os_xcr0;
    // With AMX permission the kernel disarms XFD at the first TILEDATA use (inside
    // the hardware loop's first XRSTOR): TILEDATA is then part of the state.
    let amx = model.xfd && xsave_native::host::request_amx_permission().is_ok();
    if amx {
        model.os_xfd = 0;
    }
    let armed = model.os_xfd & xcr0;
    let bv = xcr0 & !armed;
    let img = full_state(&model, xcr0, bv);
    let rfbm = xcr0;
    let csize = layout::compacted(&model, Xfeatures::from_bits_retain(rfbm)).size as usize;
    let mut hw = match xsave_native::bench_hw::HwRoundTrip::new(&img, rfbm, csize) {
        Ok(h) => h,
        Err(e) => return t.skip(WHAT, &e),
    };
    let pages = csize.div_ceil(4096);
    let mut m = machine(&model, Control::user(&model), &img, pages, rfbm);
    let pair = decode(&[XSAVEC64_RDI, XRSTOR64_RDI].concat());
    // The two must leave the same compacted area.
    hw.run(1);
    step_pair(&mut m, &pair);
    let agree = m.mem.bytes[..csize] == hw.area()[..csize];
    let mut g = c.benchmark_group("roundtrip");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("emu", |b| b.iter(|| step_pair(&mut m, black_box(&pair))));
    g.bench_function("hw", |b| b.iter_custom(|n| hw.run(n)));
    g.finish();
    let (e, h) = (
        t.median_ns("roundtrip", "emu"),
        t.median_ns("roundtrip", "hw"),
    );
    if let (Some(e), Some(h)) = (e, h) {
        t.row(
            &format!(
                "{WHAT}: emu / hardware ({csize} B compacted, XCR0 {xcr0:#x}, {}; areas {})",
                if amx {
                    "TILEDATA in use"
                } else if armed != 0 {
                    "TILEDATA XFD-armed"
                } else {
                    "no AMX"
                },
                if agree { "identical" } else { "DIFFER" }
            ),
            format!("{e:.0} ns vs {h:.0} ns"),
            format!("{:.2}x", e / h),
        );
    }
}

fn bench_cet(c: &mut Criterion, t: &mut Table) {
    const GUEST: u64 = 0x18e7;
    const NORMAL: u64 = 0x08e7;
    let model = CpuModel::builtin("zen5").expect("built-in");
    let ctl = Control::kernel(&model);
    // The initial image: compacted GUEST, every component non-init, CET_U
    // (U_CET = SH_STK_EN, PL3_SSP) and CET_S (PL0..2_SSP) with aligned canonical values.
    let lay = layout::compacted(&model, Xfeatures::from_bits_retain(GUEST));
    let std = full_state(&model, ctl.xcr0, ctl.xcr0);
    let mut img = vec![0u8; lay.size as usize];
    img[..512].copy_from_slice(&std[..512]);
    let slot_std = layout::standard(&model, Xfeatures::from_bits_retain(ctl.xcr0));
    for s in &lay.slots {
        let o = s.offset as usize;
        match s.index {
            11 => {
                img[o..o + 8].copy_from_slice(&1u64.to_le_bytes());
                img[o + 8..o + 16].copy_from_slice(&0x7000u64.to_le_bytes());
            }
            12 => {
                for (k, v) in [0x1000u64, 0x2000, 0x3000].iter().enumerate() {
                    img[o + 8 * k..o + 8 * k + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            i => {
                let from = slot_std.slot(i).expect("user component").offset as usize;
                img[o..o + s.size as usize].copy_from_slice(&std[from..from + s.size as usize]);
            }
        }
    }
    img[512..520].copy_from_slice(&GUEST.to_le_bytes());
    img[520..528].copy_from_slice(&(GUEST | 1 << 63).to_le_bytes());
    let pair = decode(&[XSAVES64_RDI, XRSTORS64_RDI].concat());
    // Bytes XSAVES writes: those changed over a 00 fill or over an FF fill.
    let written = |rfbm: u64| -> usize {
        let mut changed = vec![false; 4096];
        for fill in [0x00u8, 0xFF] {
            let mut m = machine(&model, ctl, &img, 1, rfbm);
            m.mem.bytes.fill(fill);
            let r = m.step(&pair[0]).expect("supported");
            assert_eq!(r, Ok(()), "XSAVES of the benchmark's fpstate");
            for (k, &b) in m.mem.bytes.iter().enumerate() {
                changed[k] |= b != fill;
            }
        }
        changed.iter().filter(|&&c| c).count()
    };
    let (wg, wn) = (written(GUEST), written(NORMAL));
    let mut mg = machine(&model, ctl, &img, 1, GUEST);
    let mut mn = machine(&model, ctl, &img, 1, NORMAL);
    let mut g = c.benchmark_group("cet");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("guest", |b| b.iter(|| step_pair(&mut mg, black_box(&pair))));
    g.bench_function("normal", |b| {
        b.iter(|| step_pair(&mut mn, black_box(&pair)))
    });
    g.finish();
    t.row(
        "zen5 XSAVES bytes written: guest fpstate (CET_S) / normal",
        format!("{wg} B vs {wn} B"),
        format!("{:.3}", wg as f64 / wn as f64),
    );
    if let (Some(a), Some(b)) = (t.median_ns("cet", "guest"), t.median_ns("cet", "normal")) {
        t.row(
            "zen5 emulated XSAVES+XRSTORS: guest fpstate / normal",
            format!("{a:.0} ns vs {b:.0} ns"),
            format!("{:.2}x", a / b),
        );
    }
}

fn cases_for(target: &Target, n: u64) -> Vec<Case> {
    (0..n).map(|i| generate(target, SEED, i)).collect()
}

/// The exec backend's harness, built (or rebuilt when stale: cargo does nothing
/// when it is up to date) so that its protocol version is this tree's.
fn ensure_harness() -> Result<(), String> {
    let st = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "xsave-native",
            "--bin",
            "xsave-harness",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo to build xsave-harness: {e}"))?;
    if !st.success() {
        return Err("cargo build -p xsave-native --bin xsave-harness failed".into());
    }
    backend::exec::harness_path().map(|_| ())
}

/// The host's AMX state for the case rows: how `xsdiff run` runs (no AMX
/// permission: XFD armed) or `xsdiff run --amx` (permission granted: XFD
/// disarmed at the runner's first TILEDATA use).
#[derive(Clone, Copy, PartialEq)]
enum Amx {
    /// No AMX on this CPU (or no XFD): one configuration only.
    None,
    XfdArmed,
    Permitted,
}

impl Amx {
    fn now() -> Amx {
        let Ok(m) = xsave_native::host::host_model() else {
            return Amx::None;
        };
        if !m.xfd {
            Amx::None
        } else if m.os_xfd != 0 {
            Amx::XfdArmed
        } else {
            Amx::Permitted
        }
    }
    /// The criterion group and what the rows' text says of the configuration.
    fn group(self) -> &'static str {
        match self {
            Amx::XfdArmed => "cases_xfd_armed",
            Amx::None | Amx::Permitted => "cases",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Amx::None => "",
            Amx::XfdArmed => "; XFD armed, as `xsdiff run`",
            Amx::Permitted => "; AMX permitted, as `xsdiff run --amx`",
        }
    }
}

/// The runner's case rows under the process's AMX state now ([`Amx::now`]);
/// unicorn on the same cases; with `exec`, also the exec backend (its harness
/// asks for AMX permission itself: one configuration only).
fn bench_cases(c: &mut Criterion, t: &mut Table, exec: bool) {
    let mut runner = match Runner::new() {
        Ok(r) => r,
        Err(e) => return t.skip("cases/s on this CPU", &e),
    };
    let amx = Amx::now();
    let (group, label) = (amx.group(), amx.label());
    let model = runner.model().clone();
    let target = Target {
        model: model.clone(),
        control: runner.control(),
    };
    let cases = cases_for(&target, CASES);
    // The non-faulting cases: predicted and observed without a fault.
    let quiet: Vec<Case> = cases
        .iter()
        .filter(|c| {
            predict(&model, c).is_ok_and(|o| o.fault.is_none())
                && runner.run(c).is_ok_and(|o| o.fault.is_none())
        })
        .cloned()
        .collect();
    let ran = cases.iter().filter(|c| runner.refusal(c).is_ok()).count();
    println!(
        "cases ({group}): {} generated (seed {SEED}), {ran} run by the native runner, {} without a fault",
        cases.len(),
        quiet.len()
    );
    // As a campaign runs them: the prediction, then one run on this CPU, equal
    // to the prediction (compared where it lies, nothing copied) or kept if it
    // agrees (`check_expecting`), confirmed by reruns if it does not; a case the
    // emulator cannot predict runs carefully.
    let emu_vs_native = |runner: &mut Runner, set: &[Case]| {
        let mut mismatches = 0u32;
        let mut b = runner.batch().expect("runner batch");
        for chunk in set.chunks(16) {
            for k in b.protection_order(&chunk.iter().collect::<Vec<_>>()) {
                let c = &chunk[k];
                match predict(&model, c) {
                    Ok(p) => {
                        let agrees = |o: &Outcome| o == &p || compare(&model, c, &p, o).is_match();
                        // Compared again only when the first run did not agree.
                        if let Ok(Check::Confirmed(o)) = b.check_expecting(c, &p, agrees) {
                            mismatches += !agrees(&o) as u32;
                        }
                    }
                    Err(_) => {
                        let _ = black_box(b.run(c));
                    }
                }
            }
        }
        mismatches
    };
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.bench_function("emu", |b| {
        b.iter(|| {
            for c in &cases {
                let _ = black_box(predict(&model, c));
            }
        })
    });
    // Careful runs (each outcome confirmed by a second run), in one runner
    // batch, each 16 (a campaign's batch) in the order the native backend
    // runs them (`Batch::protection_order`: fewer mprotect calls).
    g.bench_function("native", |b| {
        b.iter(|| {
            let mut b = runner.batch().expect("runner batch");
            for chunk in cases.chunks(16) {
                for k in b.protection_order(&chunk.iter().collect::<Vec<_>>()) {
                    let _ = black_box(b.run(&chunk[k]));
                }
            }
        })
    });
    g.bench_function("emu_vs_native", |b| {
        b.iter(|| emu_vs_native(&mut runner, &cases))
    });
    g.throughput(Throughput::Elements(quiet.len() as u64));
    g.bench_function("emu_vs_native_nonfaulting", |b| {
        b.iter(|| emu_vs_native(&mut runner, &quiet))
    });
    g.finish();
    let per_s =
        |t: &Table, name: &str, n: usize| t.median_ns(group, name).map(|ns| n as f64 * 1e9 / ns);
    let emu = per_s(t, "emu", cases.len());
    let row = |t: &mut Table, what: &str, v: Option<f64>| {
        if let Some(v) = v {
            let ratio = emu.map_or("-".into(), |e| format!("{:.3}", v / e));
            t.row(what, format!("{v:.0} cases/s"), ratio);
        }
    };
    row(
        t,
        &format!("cases/s, emu alone (ratio: to emu alone{label})"),
        emu,
    );
    let v = per_s(t, "native", cases.len());
    row(
        t,
        &format!("cases/s, native alone ({} cases{label})", cases.len()),
        v,
    );
    let v = per_s(t, "emu_vs_native", cases.len());
    row(
        t,
        &format!("cases/s, emu vs native (all generated cases, 1 core{label})"),
        v,
    );
    let v = per_s(t, "emu_vs_native_nonfaulting", quiet.len());
    row(
        t,
        &format!(
            "cases/s, emu vs native, non-faulting cases (1 core, {} cases{label})",
            quiet.len()
        ),
        v,
    );
    // The exec backend under qemu-x86_64: the same (seed, index) cases, made for
    // the control state the harness reports under QEMU.
    const EXEC: &str = "cases/s, exec:qemu-x86_64 -cpu max";
    if exec {
        if let Err(e) = ensure_harness() {
            t.skip(EXEC, &e);
        } else {
            match backend::open("exec:qemu-x86_64 -cpu max", None) {
                Err(e) => t.skip(EXEC, &e),
                Ok(mut b) => {
                    let (ran, n, v) = bench_backend(c, t, group, "exec_qemu", &mut *b, EXEC_CASES);
                    let what = format!("{EXEC} ({ran}/{n} run, model {})", b.model().name);
                    row(t, &what, v);
                }
            }
        }
    }
    let unicorn = if cfg!(feature = "unicorn") {
        backend::open("unicorn", Some(&model))
    } else {
        Err(
            "built without the `unicorn` feature (cargo bench -p xsave-diff --features unicorn)"
                .into(),
        )
    };
    match unicorn {
        Err(e) => {
            t.skip(&format!("cases/s, unicorn{label}"), &e);
            t.skip(&format!("emu alone / unicorn{label}"), &e);
        }
        Ok(mut b) => {
            let (ran, n, v) = bench_backend(c, t, group, "unicorn", &mut *b, CASES);
            let what = format!("cases/s, unicorn ({ran}/{n} run{label})");
            row(t, &what, v);
            if let (Some(e), Some(u)) = (emu, v) {
                t.row(
                    &format!("emu alone / unicorn (cases/s, the same generated cases{label})"),
                    format!("{e:.0} vs {u:.0} cases/s"),
                    format!("{:.0}x", e / u),
                );
            }
        }
    }
}

/// Cases/s of backend `b` (criterion function `name` in `group`) on `n`
/// cases generated for its own model and control state, run in its batches:
/// how many of them it runs, `n`, and the rate.
fn bench_backend(
    c: &mut Criterion,
    t: &Table,
    group: &str,
    name: &str,
    b: &mut dyn Backend,
    n: u64,
) -> (usize, usize, Option<f64>) {
    let target = Target {
        model: b.model().clone(),
        control: b.control(),
    };
    let cases = cases_for(&target, n);
    let n = cases.len();
    let ran = b.run_batch(&cases).iter().filter(|r| r.is_ok()).count();
    println!(
        "{}: model {}, {ran} of {n} cases run",
        b.name(),
        b.model().name
    );
    let mut g = c.benchmark_group(group);
    // Milliseconds a case: ten samples, each a pass over the cases.
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(name, |bch| bch.iter(|| black_box(b.run_batch(&cases))));
    g.finish();
    let v = t.median_ns(group, name).map(|ns| n as f64 * 1e9 / ns);
    (ran, n, v)
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let mut t = Table {
        dir,
        start: std::time::SystemTime::now(),
        rows: vec![],
    };
    // The case rows as `xsdiff run` runs by default first: the round trip asks
    // for AMX permission, for the rest of the process.
    let armed_first = Amx::now() == Amx::XfdArmed;
    if armed_first {
        bench_cases(&mut c, &mut t, true);
    }
    bench_roundtrip(&mut c, &mut t);
    bench_cet(&mut c, &mut t);
    bench_cases(&mut c, &mut t, !armed_first);
    c.final_summary();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "\nxsave-lab benchmarks on {cpu} ({} logical CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    t.print();
}
