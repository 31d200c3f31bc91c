//! The emulator's parts of `cargo bench -p xsave-diff`, on a built-in model so
//! that it runs under valgrind (which models neither AVX-512 nor AMX, so the
//! host's own state cannot be read there), for instruction counts that do not
//! depend on load:
//!
//!     valgrind --tool=callgrind target/release/examples/speed_profile MODEL roundtrip N
//!     valgrind --tool=callgrind target/release/examples/speed_profile MODEL predict N
//!     valgrind --tool=callgrind target/release/examples/speed_profile MODEL quiet N
//!
//! `roundtrip`: N XSAVEC64+XRSTOR64 of the full state (every XCR0 component
//! non-init, TILEDATA included: XFD disarmed as after the kernel granted AMX),
//! as the bench's `roundtrip/emu`; `predict`: the predictions of the generated
//! cases 0..N (seed 1, Linux user mode of MODEL), as `cases/emu`; `quiet`: the
//! same, only those predicted without a fault; `vsnative` and
//! `vsnative-quiet` (not under valgrind: the host's own state): the bench's
//! `cases/emu_vs_native` and `cases/emu_vs_native_nonfaulting`; `vsnative-faulting`:
//! the cases predicted and observed with a fault, and the kernel's part of
//! their signals in a bare loop (`bench_hw::signal_floor`); REPEATS (default 1) runs the
//! measurement that many times (for `perf record`). Prints the number run, so that
//! a profile's total divides by it; `--toggle-collect=*round_trips*` or
//! `--toggle-collect=*predict_all*` leaves out the setup.
//!
//! Built with `--features xsave-native/phase-probes`, the `vsnative` ones also
//! print where the runner's time goes, phase by phase ([`xsave_native::phase`]).
//!
//! Like the bench's `cases` group (`xsdiff run --amx`), every measurement runs
//! with TILEDATA usable: `predict` and `quiet` with MODEL's XFD disarmed, the
//! `vsnative` ones with AMX permission asked of the kernel where the host has
//! AMX. With XSAVE_PROFILE_XFD_ARMED=1 they run as `cases_xfd_armed` (`xsdiff
//! run`): MODEL's XFD as the model has it, no AMX permission.
use xsave_diff::generate::{generate, Target};
use xsave_emu::case::ARENA_BASE;
use xsave_emu::exec::{decode, Machine};
use xsave_emu::{layout, predict, Control, CpuModel, Memory, Policy, Xfeatures};

const XSAVEC64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x27];
const XRSTOR64_RDI: [u8; 4] = [0x48, 0x0f, 0xae, 0x2f];

#[path = "../benches/common/full_state.rs"]
mod full_state;
use full_state::full_state;

/// `n` round trips (a function of its own for `--toggle-collect=*round_trips*`),
/// each step as the bench's `step_pair` makes it: its outcome checked in debug
/// builds only (the check read the result back as a store-forwarding stall,
/// ~2% of a release profile that the bench does not pay).
#[inline(never)]
fn round_trips(m: &mut Machine, pair: &[iced_x86::Instruction], n: u64) {
    for _ in 0..n {
        for i in pair {
            let r = m.step(std::hint::black_box(i)).expect("supported");
            debug_assert_eq!(r, Ok(()));
        }
    }
}

/// The predictions of `cases` (`--toggle-collect=*predict_all*`); how many
/// the emulator supports.
#[inline(never)]
fn predict_all(model: &CpuModel, cases: &[xsave_emu::Case]) -> u64 {
    cases
        .iter()
        .map(|c| std::hint::black_box(predict(model, c)).is_ok() as u64)
        .sum()
}

/// The bench's emu vs native loop: the prediction, one run compared in
/// place, confirmed when it disagrees; the number of mismatches.
#[inline(never)]
fn vs_native(
    model: &CpuModel,
    runner: &mut xsave_native::runner::Runner,
    cases: &[xsave_emu::Case],
) -> u32 {
    use xsave_native::runner::Check;
    let mut mismatches = 0;
    let mut b = runner.batch().expect("runner batch");
    for chunk in cases.chunks(16) {
        for k in b.protection_order(&chunk.iter().collect::<Vec<_>>()) {
            let c = &chunk[k];
            match predict(model, c) {
                Ok(p) => {
                    let agrees = |o: &xsave_emu::Outcome| {
                        o == &p || xsave_diff::compare::compare(model, c, &p, o).is_match()
                    };
                    if let Ok(Check::Confirmed(o)) = b.check_expecting(c, &p, agrees) {
                        mismatches += !agrees(&o) as u32;
                    }
                }
                Err(_) => {
                    let _ = std::hint::black_box(b.run(c));
                }
            }
        }
    }
    mismatches
}

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (name, what, n, reps) = match &a[..] {
        [name, what, n] => (name, what, n, "1"),
        [name, what, n, reps] => (name, what, n, reps.as_str()),
        _ => return Err("usage: speed_profile MODEL roundtrip|predict|quiet N [REPEATS]".into()),
    };
    let n: u64 = n.parse().map_err(|e| format!("N: {e}"))?;
    let reps: u64 = reps.parse().map_err(|e| format!("REPEATS: {e}"))?;
    let mut model = CpuModel::builtin(name).ok_or(format!("no built-in model {name}"))?;
    match what.as_str() {
        "roundtrip" => {
            model.os_xfd = 0;
            let xcr0 = model.os_xcr0;
            let img = full_state(&model, xcr0, xcr0);
            let csize = layout::compacted(&model, Xfeatures::from_bits_retain(xcr0)).size;
            let mem = Memory::new(ARENA_BASE, csize.div_ceil(4096) as usize);
            let mut m = Machine::new(&model, Control::user(&model), mem, Policy::Predict);
            assert_eq!(m.load_initial(&img), Ok(Ok(())), "the image loads");
            m.gprs[0] = xcr0 & 0xFFFF_FFFF;
            m.gprs[2] = xcr0 >> 32;
            m.gprs[7] = ARENA_BASE;
            let pair = decode(&[XSAVEC64_RDI, XRSTOR64_RDI].concat());
            for i in &pair {
                assert_eq!(m.step(i), Ok(Ok(())), "the round trip runs without a fault");
            }
            let t0 = std::time::Instant::now();
            round_trips(&mut m, &pair, n * reps);
            let ns = t0.elapsed().as_nanos() as f64 / (n * reps) as f64;
            println!("{} round trips of {csize} B: {ns:.0} ns each", n * reps);
        }
        "predict" | "quiet" => {
            if std::env::var_os("XSAVE_PROFILE_XFD_ARMED").is_none() {
                model.os_xfd = 0;
            }
            let t = Target {
                control: Control::user(&model),
                model,
            };
            let cases: Vec<_> = (0..n)
                .map(|i| generate(&t, 1, i))
                .filter(|c| {
                    what == "predict" || predict(&t.model, c).is_ok_and(|o| o.fault.is_none())
                })
                .collect();
            let t0 = std::time::Instant::now();
            let ok = (0..reps)
                .map(|_| predict_all(&t.model, &cases))
                .sum::<u64>()
                / reps;
            let ns = t0.elapsed().as_nanos() as f64 / (reps * cases.len() as u64) as f64;
            println!(
                "{} predictions ({ok} supported), {reps} times: {ns:.0} ns each",
                cases.len()
            );
        }
        "vsnative" | "vsnative-quiet" | "vsnative-faulting" => {
            // As the bench's `cases/emu_vs_native`: the host's runner, its
            // model and control state (MODEL is not used: not under valgrind).
            // With AMX permission where the host has AMX, as the bench's `cases`
            // group (`xsdiff run --amx`): the runner disarms XFD and the cases
            // that load TILEDATA run. XSAVE_PROFILE_XFD_ARMED=1: without it, as
            // `cases_xfd_armed` (`xsdiff run`).
            let host = xsave_native::host::host_model()?;
            if host.xfd && std::env::var_os("XSAVE_PROFILE_XFD_ARMED").is_none() {
                xsave_native::host::request_amx_permission()?;
            }
            let mut runner = xsave_native::runner::Runner::new()?;
            let t = Target {
                model: runner.model().clone(),
                control: runner.control(),
            };
            let cases: Vec<_> = (0..n)
                .map(|i| generate(&t, 1, i))
                .filter(|c| match what.as_str() {
                    "vsnative-quiet" => {
                        predict(&t.model, c).is_ok_and(|o| o.fault.is_none())
                            && runner.run(c).is_ok_and(|o| o.fault.is_none())
                    }
                    "vsnative-faulting" => {
                        predict(&t.model, c).is_ok_and(|o| o.fault.is_some())
                            && runner.run(c).is_ok_and(|o| o.fault.is_some())
                    }
                    _ => true,
                })
                .collect();
            let t0 = std::time::Instant::now();
            let cpu0 = xsave_native::bench_hw::thread_cpu_time();
            let mut mismatches = 0;
            for _ in 0..reps {
                mismatches += vs_native(&t.model, &mut runner, &cases);
            }
            let runs = (reps * cases.len() as u64) as f64;
            let phases = xsave_native::phase::take();
            let ns = t0.elapsed().as_nanos() as f64 / runs;
            // CPU time too: on a loaded machine, wall time counts the waits.
            let cpu = (xsave_native::bench_hw::thread_cpu_time() - cpu0).as_nanos() as f64 / runs;
            // The predictions alone, the same number of times: the rest is
            // the runner's (and the comparison's) part.
            let cpu0 = xsave_native::bench_hw::thread_cpu_time();
            for _ in 0..reps {
                predict_all(&t.model, &cases);
            }
            let pred = (xsave_native::bench_hw::thread_cpu_time() - cpu0).as_nanos() as f64 / runs;
            println!(
                "{} cases vs native, {reps} times: {ns:.0} ns each ({:.0} cases/s), {cpu:.0} ns CPU each ({:.0} cases/s; predictions {pred:.0} ns, the rest {:.0} ns), {mismatches} mismatches",
                cases.len(),
                1e9 / ns,
                1e9 / cpu,
                cpu - pred
            );
            if xsave_native::phase::ENABLED {
                // Built with xsave-native/phase-probes: the runner's phases.
                let total: u64 = phases.iter().map(|p| p.1).sum();
                println!(
                    "runner phases, time-stamp counter cycles per case (of {:.0}):",
                    total as f64 / runs
                );
                for (p, c) in &phases {
                    println!("  {:<12} {:>7.0}", format!("{p:?}"), *c as f64 / runs);
                }
            }
            if what == "vsnative-faulting" {
                // The kernel's part of each fault, in a bare loop (thread CPU
                // time), weighted by the cases' predicted faults: #PF, #UD,
                // XFD's #NM (as #UD where nothing is armed), the others as a
                // #GP load.
                use xsave_native::bench_hw::{signal_floor, FloorFault};
                let floor = |f| signal_floor(f, 10_000).map(|d| d.as_nanos() as f64);
                let (pf, gp, ud) = (
                    floor(FloorFault::Pf)?,
                    floor(FloorFault::Gp)?,
                    floor(FloorFault::Ud)?,
                );
                let nm = floor(FloorFault::XfdNm).unwrap_or(ud);
                let (mut n_pf, mut n_ud, mut n_nm, mut n_other) = (0.0, 0.0, 0.0, 0.0);
                for c in &cases {
                    match predict(&t.model, c)
                        .ok()
                        .and_then(|o| o.fault)
                        .map(|f| f.fault)
                    {
                        Some(xsave_emu::Fault::Pf { .. }) => n_pf += 1.0,
                        Some(xsave_emu::Fault::Ud) => n_ud += 1.0,
                        Some(xsave_emu::Fault::Nm) => n_nm += 1.0,
                        _ => n_other += 1.0,
                    }
                }
                let mix = (n_pf * pf + n_ud * ud + n_nm * nm + n_other * gp) / cases.len() as f64;
                println!(
                    "signal floor (bare loop): #PF {pf:.0} ns, #GP {gp:.0} ns, #UD {ud:.0} ns, XFD #NM {nm:.0} ns; for these cases' faults ({n_pf} #PF, {n_ud} #UD, {n_nm} #NM, {n_other} other) {mix:.0} ns per case; the runner's part beyond it {:.0} ns",
                    cpu - pred - mix
                );
                // One case run again and again (hot caches): `mov rax, [rcx]`
                // on a 3-page arena, without a fault, with #GP (RCX
                // non-canonical) and with #PF (page 0 absent).
                let one = |rcx: u64, prot0| {
                    let mut c = xsave_emu::Case::new(&t.model, t.control);
                    c.code = vec![0x48, 0x8B, 0x01];
                    c.memory = Memory::new(ARENA_BASE, 3);
                    c.memory.prot[0] = prot0;
                    c.gprs[1] = rcx;
                    c
                };
                use xsave_emu::Prot;
                let mut hot = vec![];
                for c in [
                    one(ARENA_BASE, Prot::ReadWrite),
                    one(1 << 63, Prot::ReadWrite),
                    one(ARENA_BASE, Prot::None),
                ] {
                    let p = predict(&t.model, &c).map_err(|e| format!("{e:?}"))?;
                    let mut b = runner.batch().map_err(|e| e.to_string())?;
                    let t0 = xsave_native::bench_hw::thread_cpu_time();
                    for _ in 0..20_000 {
                        let _ = std::hint::black_box(b.check_expecting(&c, &p, |_| true));
                    }
                    let d = xsave_native::bench_hw::thread_cpu_time() - t0;
                    hot.push(d.as_nanos() as f64 / 20_000.0);
                }
                println!(
                    "one case again and again: {:.0} ns without a fault, #GP {:.0} ns (+{:.0}, floor {gp:.0}), #PF {:.0} ns (+{:.0}, floor {pf:.0})",
                    hot[0],
                    hot[1],
                    hot[1] - hot[0],
                    hot[2],
                    hot[2] - hot[0]
                );
            }
        }
        _ => return Err(format!("unknown measurement {what}")),
    }
    Ok(())
}
