//! Shared by the hardware tests: one runner per test process, case building with
//! iced-x86's code assembler, and a field-level comparison of outcomes.
#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use std::sync::{Mutex, MutexGuard, OnceLock};
use xsave_emu::case::{ARENA_BASE, CODE_BASE};
use xsave_emu::{layout, Case, CpuModel, Outcome, Xfeatures};
use xsave_native::runner::Runner;

static RUNNER: OnceLock<Mutex<Runner>> = OnceLock::new();

pub fn runner() -> MutexGuard<'static, Runner> {
    RUNNER
        .get_or_init(|| Mutex::new(Runner::new().expect("ring-3 runner")))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

pub fn model() -> CpuModel {
    runner().model().clone()
}

/// Assembles `f`'s instructions at CODE_BASE.
pub fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE_BASE).unwrap()
}

/// A case in the host's control state with `pages` read-write arena pages,
/// RDI = ARENA_BASE and EDX:EAX = all ones.
pub fn case(pages: usize, code: Vec<u8>) -> Case {
    let m = model();
    let r = runner();
    let mut c = Case::new(&m, r.control());
    c.memory = xsave_emu::Memory::new(ARENA_BASE, pages);
    c.code = code;
    c.gprs[0] = 0xFFFF_FFFF;
    c.gprs[2] = 0xFFFF_FFFF;
    c.gprs[7] = ARENA_BASE;
    c
}

/// Names the byte at offset `k` of a standard-format image.
pub fn image_field(m: &CpuModel, xcr0: u64, k: usize) -> String {
    let named: &[(usize, usize, &str)] = &[
        (0, 2, "FCW"),
        (2, 4, "FSW"),
        (4, 5, "FTW"),
        (5, 6, "byte 5"),
        (6, 8, "FOP"),
        (8, 16, "FIP"),
        (16, 24, "FDP"),
        (24, 28, "MXCSR"),
        (28, 32, "MXCSR_MASK"),
        (512, 520, "XSTATE_BV"),
        (520, 528, "XCOMP_BV"),
        (528, 576, "header 16..63"),
    ];
    for &(a, b, n) in named {
        if (a..b).contains(&k) {
            return format!("{n}[{}]", k - a);
        }
    }
    if (32..160).contains(&k) {
        return format!("ST{}[{}]", (k - 32) / 16, (k - 32) % 16);
    }
    if (160..416).contains(&k) {
        return format!("XMM{}[{}]", (k - 160) / 16, (k - 160) % 16);
    }
    if (416..512).contains(&k) {
        return format!("legacy byte {k}");
    }
    for s in layout::standard(m, Xfeatures::from_bits_retain(xcr0)).slots {
        if (s.offset as usize..(s.offset + s.size) as usize).contains(&k) {
            return format!(
                "{}[{}]",
                xsave_emu::component::COMPONENTS[s.index].name,
                k - s.offset as usize
            );
        }
    }
    format!("byte {k}")
}

/// Field-level differences between two outcomes of `case` (empty if equal).
pub fn diff(m: &CpuModel, case: &Case, a: &Outcome, b: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if a.fault != b.fault {
        out.push(format!("fault: {:?} vs {:?}", a.fault, b.fault));
    }
    for k in 0..16 {
        if a.gprs[k] != b.gprs[k] {
            out.push(format!(
                "{}: {:#x} vs {:#x}",
                xsave_emu::case::GPR_NAMES[k],
                a.gprs[k],
                b.gprs[k]
            ));
        }
    }
    if a.xinuse != b.xinuse {
        out.push(format!("XINUSE: {:x?} vs {:x?}", a.xinuse, b.xinuse));
    }
    if a.final_image.len() != b.final_image.len() {
        out.push(format!(
            "final image size {} vs {}",
            a.final_image.len(),
            b.final_image.len()
        ));
    }
    let mut n = 0;
    for (k, (x, y)) in a.final_image.iter().zip(&b.final_image).enumerate() {
        if x != y {
            n += 1;
            if n <= 24 {
                out.push(format!(
                    "final {} (byte {k}): {x:#04x} vs {y:#04x}",
                    image_field(m, case.control.xcr0, k)
                ));
            }
        }
    }
    if n > 24 {
        out.push(format!("... {} more final-image bytes differ", n - 24));
    }
    let mut n = 0;
    for (k, (x, y)) in a.memory.iter().zip(&b.memory).enumerate() {
        if x != y {
            n += 1;
            if n <= 24 {
                out.push(format!("memory[{k:#x}]: {x:#04x} vs {y:#04x}"));
            }
        }
    }
    if n > 24 {
        out.push(format!("... {} more memory bytes differ", n - 24));
    }
    if a.supervisor != b.supervisor {
        out.push("supervisor state differs".into());
    }
    out
}

/// The differences between `a` and `b` (outcomes of `case`) that are not the
/// noise the model declares: with `xinuse-noise` (AMD), XINUSE and XSTATE_BV
/// bits (in the capture or in a save's area) may differ as long as the envelope
/// admits `b`.
pub fn real_differences(m: &CpuModel, case: &Case, a: &Outcome, b: &Outcome) -> Vec<String> {
    let d = diff(m, case, a, b);
    if !m.quirks.xinuse_noise || d.is_empty() {
        return d;
    }
    let admitted = xsave_emu::check(m, case, b).is_ok_and(|j| j.inside());
    d.into_iter()
        .filter(|l| {
            let noise = l.starts_with("XINUSE")
                || l.starts_with("final XSTATE_BV")
                || l.starts_with("memory[");
            !(noise && admitted)
        })
        .collect()
}

/// Runs `case` on this CPU and through the emulator with the host model; both
/// must agree exactly (but for the model's declared noise), and the envelope
/// must admit the hardware's outcome.
pub fn agree(name: &str, case: &Case) -> Outcome {
    let m = model();
    let hw = runner()
        .run(case)
        .unwrap_or_else(|r| panic!("{name}: refused: {r}"));
    let emu = xsave_emu::predict(&m, case).unwrap_or_else(|u| panic!("{name}: emu: {u}"));
    let d = real_differences(&m, case, &emu, &hw);
    if !d.is_empty() {
        panic!(
            "{name}: hardware ({}) and emu disagree (emu vs hardware):\n  {}",
            m.name,
            d.join("\n  ")
        );
    }
    match xsave_emu::check(&m, case, &hw) {
        Ok(j) if j.inside() => {}
        Ok(j) => panic!("{name}: envelope rejects the hardware: {j}"),
        Err(u) => panic!("{name}: envelope: {u}"),
    }
    hw
}
