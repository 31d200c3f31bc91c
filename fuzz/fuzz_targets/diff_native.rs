//! `diff_native`: the emulator's prediction for this CPU's model against the
//! ring-3 runner on this CPU. Cases are built under the runner's own control
//! state (Linux user mode here); whatever the runner refuses (needs AMX
//! permission, code that does not decode into whole instructions, ...) and
//! whatever the emulator declines is skipped. A difference the model does not
//! allow as noise is a crash whose message says which fields differ, the
//! verdict against the envelope, and the case file; `xsdiff import ARTIFACT
//! -o FILE` gives the same case from the saved input.
//!
//! A case whose first data access outside its arena lands on memory this
//! process maps (the code page, the runner's initial image at `INIT_BASE`, say:
//! libFuzzer learns such constants from comparisons) is not run: the runner
//! refuses it when the model predicts a #PF there (`Batch::check_expecting`,
//! `xsave_native::mapped`), as it refuses code that branches.
//! With `XSAVE_DIFF_NATIVE_LAST=FILE` each input is written to FILE before it
//! runs: an input that kills the process with no artifact is left there.
//!
//! Run it without a sanitizer (`cargo +nightly fuzz run -s none diff_native`):
//! the runner maps the case's code and arena at fixed addresses (64 GiB and
//! 128 GiB) that lie inside AddressSanitizer's shadow memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use xsave_diff::compare::{compare, render, verdict};
use xsave_diff::fuzzcase::FuzzCase;
use xsave_emu::case::INIT_BASE;
use xsave_emu::{predict, CpuModel, Outcome};
use xsave_fuzz::{case_text, control_line};
use xsave_native::runner::{Check, Runner};
use xsave_native::stub::PRIV_BASE;

/// Whether the case carries a value that can address the runner's private
/// region (stub, data page, host and capture areas) or its initial image: a GPR
/// (also scaled as an index) or an immediate within 4 GiB of either (a
/// displacement reaches 2 GiB). libFuzzer learns those addresses from the
/// runner's own comparisons; a case that writes there can break the runner
/// while it runs (its saved RSP), which kills the fuzzing process instead of
/// reporting anything (seen: SIGSEGV after 3.4M runs). Such a case says nothing
/// about the CPU against the model, so it is skipped.
///
/// Every input pays this scan, and each comparison in it is a libFuzzer
/// comparison hook: one unsigned comparison per value, scale and region, and
/// only the 8-byte windows of the code (a 4-byte immediate, zero- or
/// sign-extended, times 8 at most, is never within 4 GiB of either region,
/// checked below).
fn aims_at_the_runner(case: &xsave_emu::Case) -> bool {
    const NEAR: u64 = 4 << 30;
    // |v - r| < NEAR exactly when v - (r - NEAR + 1) < 2 NEAR - 1 (wrapping).
    const LOW: [u64; 2] = [PRIV_BASE - NEAR + 1, INIT_BASE - NEAR + 1];
    const _: () = assert!(
        0xFFFF_FFFF_u64 * 8 < PRIV_BASE - NEAR
            && PRIV_BASE < INIT_BASE
            && 0xFFFF_FFFF_8000_0000_u64.wrapping_mul(8) > INIT_BASE + NEAR
    );
    let near = |v: u64| LOW.iter().any(|&l| v.wrapping_sub(l) < 2 * NEAR - 1);
    let scaled = |v: u64| [1u64, 2, 4, 8].iter().any(|&k| near(v.wrapping_mul(k)));
    case.gprs.iter().any(|&v| scaled(v))
        || case
            .code
            .windows(8)
            .any(|w| scaled(u64::from_le_bytes(w.try_into().expect("8 bytes"))))
}

thread_local! {
    /// The runner and its model (cloned once, not per input).
    static RUNNER: RefCell<(Runner, CpuModel)> = RefCell::new({
        let r = Runner::new().unwrap_or_else(|e| {
            panic!("diff_native: no ring-3 runner on this machine: {e} (built with -s none?)")
        });
        let m = r.model().clone();
        (r, m)
    });
}

thread_local! {
    /// `XSAVE_DIFF_NATIVE_LAST=FILE`: every input is written there before it
    /// runs, so an input that kills the process where no handler can run (the
    /// kernel's forced SIGSEGV when a case broke the runner's stack) is still
    /// on disk; libFuzzer writes no artifact then.
    static LAST: Option<std::fs::File> = std::env::var_os("XSAVE_DIFF_NATIVE_LAST").map(|p| {
        std::fs::File::create(&p)
            .unwrap_or_else(|e| panic!("XSAVE_DIFF_NATIVE_LAST={}: {e}", p.to_string_lossy()))
    });
}

fn keep_last(data: &[u8]) {
    use std::os::unix::fs::FileExt;
    LAST.with(|f| {
        if let Some(f) = f {
            let ok = f
                .set_len(data.len() as u64)
                .and_then(|()| f.write_all_at(data, 0));
            ok.unwrap_or_else(|e| panic!("XSAVE_DIFF_NATIVE_LAST: {e}"));
        }
    });
}

fuzz_target!(|data: &[u8]| {
    keep_last(data);
    RUNNER.with(|r| {
        let (runner, model) = &mut *r.borrow_mut();
        let model = &*model;
        let case = FuzzCase::from_bytes(data).to_case(model, runner.control());
        if runner.refusal(&case).is_err() || aims_at_the_runner(&case) {
            return;
        }
        let Ok(pred) = predict(model, &case) else {
            return;
        };
        // As a campaign runs a case: once, compared with the prediction where
        // the observation lies; only a run that does not agree is run again
        // carefully (confirmed by two clean runs), so every difference below is
        // a confirmed observation (see `xsave_native::runner`, Confirmation).
        let agrees = |o: &Outcome| o == &pred || compare(model, &case, &pred, o).is_match();
        let obs = match runner
            .batch()
            .map(|mut b| b.check_expecting(&case, &pred, agrees))
        {
            Ok(Ok(Check::Same | Check::Accepted(_))) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(Check::Confirmed(o))) => o,
        };
        let cmp = compare(model, &case, &pred, &obs);
        if cmp.is_match() {
            return;
        }
        let v = verdict(model, &case, &cmp, &obs);
        let diffs = render(&cmp, "emu", "native");
        let text = case_text(
            &[
                format!("diff_native: emu:{} vs native: {}", model.name, v.short()),
                format!("signature: {}", cmp.signature()),
                format!("control: {}", control_line(&case)),
            ],
            "host",
            model,
            &case,
        );
        panic!(
            "diff_native: emu:{} vs this CPU: {} ({v:?})\n{diffs}\n{text}",
            model.name,
            v.short()
        );
    })
});
