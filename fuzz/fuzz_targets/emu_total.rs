//! `emu_total`: any case through the emulator, on every built-in model, at CPL 3
//! (Linux user mode) and at CPL 0 (the same OS state in a kernel). The emulator
//! never panics, and whenever it predicts an outcome that outcome lies inside
//! the envelope (`xsave_emu::check`): a model's own prediction must be one the
//! SDM allows. A case the emulator declines (`Unsupported`) is no finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsave_diff::fuzzcase::FuzzCase;
use xsave_emu::{check, predict, Control};
use xsave_fuzz::{builtin_models, case_text, control_line};

fuzz_target!(|data: &[u8]| {
    let f = FuzzCase::from_bytes(data);
    for model in builtin_models() {
        for control in [Control::user(model), Control::kernel(model)] {
            let case = f.to_case(model, control);
            let Ok(pred) = predict(model, &case) else {
                continue;
            };
            let why = match check(model, &case, &pred) {
                Ok(j) if j.inside() => continue,
                Ok(j) => format!("the prediction lies outside the envelope: {j}"),
                Err(u) => format!("predict ran the case but the envelope declines it: {u}"),
            };
            let text = case_text(
                &[
                    format!("emu_total on model {}: {why}", model.name),
                    format!("control: {}", control_line(&case)),
                ],
                &model.name,
                model,
                &case,
            );
            panic!("emu_total: model {}: {why}\n{text}", model.name);
        }
    }
});
