//! `roundtrip`: save-then-restore properties of the emulator, on every built-in
//! model, with the case's initial image as the state and the input's RAX/RDX as
//! the instruction mask (RFBM = (EDX:EAX) AND (XCR0 | IA32_XSS)):
//!
//! 1. XSAVEC64 then XRSTOR64 of the same compacted area (CPL 3) restores every
//!    component: the state after is the state before (final image, XINUSE);
//! 2. XSAVES64 then XRSTORS64 (CPL 0, IA32_XSS = the model's OS value) restores
//!    every component, supervisor state included (SDM1 §13.11, §13.12);
//! 3. XSAVE64, XRSTOR64, XSAVE64 to a second area: the two areas are equal
//!    (a standard-format save is a fixed point of restore-and-save, SDM1 §13.7,
//!    §13.8).
//!
//! "The same state" means the same contents: XSAVEC/XSAVES mark SSE as saved
//! when MXCSR != 1F80H (their MXCSR rule), so after the restore XINUSE[1] (and
//! the captured XSTATE_BV[1]) may read 1 where it read 0 before.
//!
//! Each property is checked under the architectural policy (the SDM alone)
//! and under each model's prediction (its quirks included). A run with a fault
//! (the input's image does not load, XFD, ...) proves nothing and is skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsave_diff::fuzzcase::FuzzCase;
use xsave_emu::case::ARENA_BASE;
use xsave_emu::memory::PAGE;
use xsave_emu::state::MXCSR_INIT;
use xsave_emu::{layout, run, Case, Control, CpuModel, Memory, Outcome, Policy, Xfeatures};
use xsave_fuzz::{builtin_models, case_text, control_line};

const XSAVEC64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x27];
const XSAVES64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x2f];
const XRSTORS64_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x1f];
const XRSTOR64_RDI: [u8; 4] = [0x48, 0x0f, 0xae, 0x2f];
const XSAVE64_RDI: [u8; 4] = [0x48, 0x0f, 0xae, 0x27];
const XSAVE64_RSI: [u8; 4] = [0x48, 0x0f, 0xae, 0x26];

const RDI: usize = 7;
const RSI: usize = 6;

/// `case` with `code`, a zeroed read-write arena of `pages` pages, RDI at its
/// start and RSI `second` bytes in.
fn with_code(case: &Case, code: &[&[u8]], pages: usize, second: u64) -> Case {
    let mut c = case.clone();
    c.code = code.concat();
    c.memory = Memory::new(ARENA_BASE, pages);
    c.gprs[RDI] = ARENA_BASE;
    c.gprs[RSI] = ARENA_BASE + second;
    c
}

fn fail(model: &CpuModel, policy: Policy, case: &Case, what: &str) -> ! {
    let why = format!("roundtrip on model {} ({policy:?}): {what}", model.name);
    let text = case_text(
        &[why.clone(), format!("control: {}", control_line(case))],
        &model.name,
        model,
        case,
    );
    panic!("{why}\n{text}");
}

fn outcome(model: &CpuModel, case: &Case, policy: Policy) -> Option<Outcome> {
    match run(model, case, policy) {
        Ok((o, _)) if o.fault.is_none() => Some(o),
        _ => None,
    }
}

fn pages_for(bytes: u64) -> usize {
    bytes.div_ceil(PAGE) as usize
}

/// Property 1 or 2: `save` then `restore` leave the state as it was.
fn restores(model: &CpuModel, base: &Case, policy: Policy, save: &[u8], restore: &[u8]) {
    let Some(mut before) = outcome(model, &with_code(base, &[], 1, 0), policy) else {
        return;
    };
    let all = Xfeatures::from_bits_retain(base.control.xcr0 | base.control.xss);
    let pages = pages_for(layout::compacted(model, all).size as u64);
    let case = with_code(base, &[save, restore], pages, 0);
    let Some(after) = outcome(model, &case, policy) else {
        return;
    };
    // XSAVEC/XSAVES write XSTATE_BV[1] = 1 when RFBM[1] = 1 and MXCSR != 1F80H,
    // even with XINUSE[1] = 0 (SDM2 XSAVEC/XSAVES Operation); the restore then
    // loads SSE from memory and puts it in use. The contents are the same, so
    // that one in-use bit may go from 0 to 1.
    let rfbm = (case.gprs[2] << 32 | case.gprs[0] & 0xFFFF_FFFF) & base.control.xcr0;
    let mxcsr = u32::from_le_bytes(before.final_image[24..28].try_into().expect("4 bytes"));
    if rfbm & 2 != 0 && mxcsr != MXCSR_INIT {
        before.final_image[512] |= after.final_image[512] & 2;
        before.xinuse = before.xinuse.map(|x| x | after.xinuse.unwrap_or(0) & 2);
    }
    if after.final_image != before.final_image {
        let k = (0..before.final_image.len())
            .find(|&k| after.final_image.get(k) != before.final_image.get(k))
            .unwrap_or(0);
        fail(
            model,
            policy,
            &case,
            &format!(
                "state differs after save and restore: final image byte {k} {:#04x} before, {:#04x} after",
                before.final_image[k],
                after.final_image.get(k).copied().unwrap_or(0)
            ),
        );
    }
    if after.xinuse != before.xinuse {
        fail(
            model,
            policy,
            &case,
            &format!(
                "XINUSE {:x?} before, {:x?} after save and restore",
                before.xinuse, after.xinuse
            ),
        );
    }
    if after.supervisor != before.supervisor {
        fail(
            model,
            policy,
            &case,
            "supervisor state differs after XSAVES and XRSTORS",
        );
    }
}

/// Property 3: XSAVE, XRSTOR, XSAVE writes the same area twice.
fn fixed_point(model: &CpuModel, base: &Case, policy: Policy) {
    let size = layout::standard(model, Xfeatures::from_bits_retain(base.control.xcr0)).size as u64;
    let half = pages_for(size);
    let case = with_code(
        base,
        &[&XSAVE64_RDI, &XRSTOR64_RDI, &XSAVE64_RSI],
        2 * half,
        half as u64 * PAGE,
    );
    let Some(o) = outcome(model, &case, policy) else {
        return;
    };
    let (a, b) = o.memory.split_at(half * PAGE as usize);
    if let Some(k) = (0..size as usize).find(|&k| a[k] != b[k]) {
        fail(
            model,
            policy,
            &case,
            &format!(
                "XSAVE -> XRSTOR -> XSAVE is not a fixed point: area byte {k} {:#04x} first, {:#04x} second",
                a[k], b[k]
            ),
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = FuzzCase::from_bytes(data);
    for model in builtin_models() {
        for policy in [Policy::Architectural, Policy::Predict] {
            let user = f.to_case(model, Control::user(model));
            if model.xsavec {
                restores(model, &user, policy, &XSAVEC64_RDI, &XRSTOR64_RDI);
            }
            fixed_point(model, &user, policy);
            if model.xsaves {
                let kernel = f.to_case(model, Control::kernel(model));
                restores(model, &kernel, policy, &XSAVES64_RDI, &XRSTORS64_RDI);
            }
        }
    }
});
