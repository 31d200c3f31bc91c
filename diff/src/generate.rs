//! The case generator: deterministic from (seed, index), biased to the edges
//! of the XSAVE feature set (DESIGN.md "Generation"): header bits just outside
//! XCR0, XCOMP_BV bit 63, MXCSR reserved bits, misaligned and page-straddling
//! areas with read-only or absent next pages, RFBM subsets, components in init
//! state holding non-init values, XSTATE_BV = 0 images with junk, XRSTOR then
//! XSAVEOPT at one address with and without a store between, every instruction
//! in both operand sizes, LOCK/66/F3 prefixes, XGETBV with ECX 0, 1 and 2.
//!
//! Cases respect what the target runs: its control state (XCR0, CPL 3), and
//! no XFD-armed component in the runner's initial image.

use crate::encode::{self, BASES};
use crate::rng::Rng;
use xsave_emu::case::{ARENA_BASE, MAX_ARENA_PAGES};
use xsave_emu::layout;
use xsave_emu::memory::PAGE;
use xsave_emu::{Case, Control, CpuModel, Prot, Xfeatures};

/// What the generated cases must fit.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: CpuModel,
    pub control: Control,
}

/// Random contents for the image `img` (standard, or compacted for `xcomp`):
/// each component non-init with some probability, whatever XSTATE_BV says.
fn fill_components(
    rng: &mut Rng,
    model: &CpuModel,
    img: &mut [u8],
    mask: u64,
    compacted: bool,
    edges: bool,
) {
    if rng.pct(50) {
        // x87: FCW, FSW, FTW, FOP, FIP, FDP and a few ST registers.
        let r = rng.next_u64() as u16;
        let fcw: u16 = *rng.pick(&[0x037F, 0x027F, 0x037F, 0x0040, r]);
        img[0..2].copy_from_slice(&fcw.to_le_bytes());
        if rng.pct(60) {
            img[2..4].copy_from_slice(&(rng.next_u64() as u16).to_le_bytes());
        }
        if rng.pct(40) {
            img[4] = rng.next_u64() as u8;
        }
        if rng.pct(30) {
            rng.fill(&mut img[6..24]);
        }
        for k in 0..8 {
            if rng.pct(20) {
                rng.fill(&mut img[32 + 16 * k..42 + 16 * k]);
            }
        }
    }
    if rng.pct(50) {
        for k in 0..16 {
            if rng.pct(25) {
                rng.fill(&mut img[160 + 16 * k..176 + 16 * k]);
            }
        }
    }
    // MXCSR: init, a valid other value, or reserved bits set.
    let mx: u32 = match rng.below(10) {
        0..=5 => 0x1F80,
        6..=8 => (rng.next_u64() as u32) & model.mxcsr_mask & 0xFFFF,
        _ if edges => 0x1F80 | 1 << (16 + rng.below(16)),
        _ => 0x1F80,
    };
    img[24..28].copy_from_slice(&mx.to_le_bytes());
    if rng.one_in(8) {
        rng.fill(&mut img[416..512]);
    }
    let lay = if compacted {
        layout::compacted(model, Xfeatures::from_bits_retain(mask))
    } else {
        layout::standard(model, Xfeatures::from_bits_retain(mask))
    };
    for s in &lay.slots {
        if rng.pct(35) {
            let (o, n) = (s.offset as usize, s.size as usize);
            if o + n > img.len() {
                continue;
            }
            if n > 256 {
                // Large components (TILEDATA): a few random spots.
                for _ in 0..1 + rng.below(4) {
                    let at = o + rng.below(n as u64 - 16) as usize;
                    rng.fill(&mut img[at..at + 16]);
                }
            } else {
                rng.fill(&mut img[o..o + n]);
            }
        }
    }
}

/// A random XSAVE image for restoring under `ctl`. `armed_ok` allows XFD-armed
/// components in XSTATE_BV; `edges` allows what makes XRSTOR fault (reserved
/// MXCSR and header bits). The runner's initial image gets no edges: a fault
/// there leaves the registers in a state no case controls.
fn image(rng: &mut Rng, model: &CpuModel, ctl: &Control, armed_ok: bool, edges: bool) -> Vec<u8> {
    let xcr0 = ctl.xcr0;
    // At CPL 0 a compacted image may hold supervisor state (XRSTORS).
    let allowed = if ctl.cpl == 0 { xcr0 | ctl.xss } else { xcr0 };
    let compacted = model.xsavec
        && if ctl.cpl == 0 {
            rng.pct(50)
        } else {
            rng.one_in(5)
        };
    let xcomp = if compacted {
        (rng.subset(allowed) | if rng.one_in(3) { allowed } else { 0 }) | 1 << 63
    } else {
        0
    };
    let mut img = crate::casefile::default_image(model, xcr0, xcomp);
    let fmask = if compacted { xcomp & !(1 << 63) } else { xcr0 };
    fill_components(rng, model, &mut img, fmask, compacted, edges);
    if compacted {
        shadow_stack_edges(rng, model, &mut img, fmask);
    }
    let mut bv = match rng.below(6) {
        0 => 0,
        1 => fmask,
        _ => rng.subset(fmask),
    };
    if !armed_ok {
        bv &= !ctl.xfd_armed();
    }
    // Edges: a bit just outside XCR0, bit 63, XCOMP_BV[63] alone, header junk.
    match if edges { rng.below(40) } else { 40 } {
        0 => {
            let outside = !xcr0 & 0xFFFF_FFFF;
            if outside != 0 {
                let hi = 63 - outside.leading_zeros() as u64;
                let lo = outside.trailing_zeros() as u64;
                bv |= 1
                    << if rng.pct(50) {
                        lo
                    } else {
                        hi.min(lo + rng.below(4))
                    };
            }
        }
        1 => bv |= 1 << 63,
        2 if !compacted => img[520 + 7] = 0x80,
        3 => img[528 + rng.below(48) as usize] = rng.next_u64() as u8 | 1,
        4 if !compacted => img[520 + rng.below(16) as usize] = 1,
        _ => {}
    }
    img[512..520].copy_from_slice(&bv.to_le_bytes());
    if compacted {
        img[520..528].copy_from_slice(&xcomp.to_le_bytes());
    }
    img
}

/// CET state (CET_U: U_CET, PL3_SSP; CET_S: PL0..PL2_SSP) with edge values:
/// canonical and aligned, non-canonical, misaligned, reserved U_CET bits.
fn shadow_stack_edges(rng: &mut Rng, model: &CpuModel, img: &mut [u8], mask: u64) {
    const SSP: [u64; 6] = [
        0x0000_7fff_ffff_f000,
        0xffff_8000_0000_0ff8,
        0x0000_8000_0000_0000,
        0x0000_7fff_ffff_f004,
        0x0000_7fff_ffff_f001,
        0,
    ];
    let lay = layout::compacted(model, Xfeatures::from_bits_retain(mask));
    for s in lay.slots.iter().filter(|s| s.index == 11 || s.index == 12) {
        for q in 0..(s.size as usize / 8) {
            if rng.pct(50) {
                let v = if s.index == 11 && q == 0 {
                    // U_CET: SH_STK_EN, WR_SHSTK_EN, ENDBR_EN, and sometimes a reserved bit.
                    (rng.next_u64() & 0x7)
                        | if rng.one_in(4) {
                            1 << (10 + rng.below(50))
                        } else {
                            0
                        }
                } else {
                    *rng.pick(&SSP)
                };
                let o = s.offset as usize + 8 * q;
                if o + 8 <= img.len() {
                    img[o..o + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// An RFBM for EDX:EAX: all ones, XCR0, a subset, a single component, or
/// XCR0 plus bits outside it.
fn rfbm(rng: &mut Rng, xcr0: u64) -> u64 {
    match rng.below(8) {
        0 | 1 => !0,
        2 => xcr0,
        3 => {
            1 << rng.pick(
                &Xfeatures::from_bits_retain(xcr0)
                    .indices()
                    .collect::<Vec<_>>(),
            )
        }
        4 => 0,
        _ => {
            rng.subset(xcr0)
                | if rng.one_in(4) {
                    rng.next_u64() & !xcr0
                } else {
                    0
                }
        }
    }
}

struct Builder<'a> {
    rng: &'a mut Rng,
    code: Vec<u8>,
}

impl Builder<'_> {
    fn set_rfbm(&mut self, m: u64) {
        encode::mov_r32_imm(&mut self.code, 0, m as u32);
        encode::mov_r32_imm(&mut self.code, 2, (m >> 32) as u32);
    }
    /// One XSAVE-family instruction on [base+disp], in a random operand size,
    /// sometimes with a LOCK, 66 or F3 prefix.
    fn family(&mut self, name: &str, base: u8, disp: i32) {
        let (op, reg) = encode::family(name);
        let w = !matches!(name, "ldmxcsr" | "stmxcsr") && self.rng.pct(50);
        let pre: &[u8] = match self.rng.below(60) {
            0 => &[0xF0],
            1 => &[0x66],
            2 => &[0xF3],
            _ => &[],
        };
        encode::mem(&mut self.code, pre, w, &op, reg, base, disp);
    }
}

/// Generates case `index` of the campaign `seed` for `t`.
pub fn generate(t: &Target, seed: u64, index: u64) -> Case {
    let mut rng = Rng::new(seed, index);
    generate_with(t, &mut rng)
}

pub fn generate_with(t: &Target, rng: &mut Rng) -> Case {
    let model = &t.model;
    let ctl = t.control;
    let mut case = Case::new(model, ctl);
    case.init = image(rng, model, &ctl, false, false);
    if rng.one_in(12) {
        // XSTATE_BV = 0 with junk everywhere: nothing may be loaded.
        case.init[512..520].fill(0);
        case.init[520..528].fill(0);
    }
    let std_size = layout::standard(model, Xfeatures::from_bits_retain(ctl.xcr0)).size as u64;
    // The area: where it starts, and how the pages after it are mapped.
    let straddle = rng.pct(25);
    let misalign: u64 = match rng.below(16) {
        0 => 1,
        1 => 8,
        2 => 16,
        3 => 32,
        _ => 0,
    };
    let start = if straddle {
        // Starts in page 0 and runs into page 1 a few lines before its end.
        PAGE - 64 * (1 + rng.below(8)) + misalign
    } else {
        64 * rng.below(8) + misalign
    };
    let need = start + std_size + 64;
    let mut pages = need.div_ceil(PAGE) as usize;
    if straddle {
        pages = pages.max(2);
    }
    let pages = pages.min(MAX_ARENA_PAGES);
    case.memory = xsave_emu::Memory::new(ARENA_BASE, pages);
    if straddle {
        let p = if rng.pct(50) { Prot::None } else { Prot::Read };
        for k in 1..pages {
            case.memory.prot[k] = p;
        }
    } else if rng.one_in(10) {
        case.memory.prot[0] = Prot::Read;
    }
    // The area holds an image (for restores) or junk (for saves).
    if rng.pct(60) {
        let armed_ok = rng.one_in(4);
        let img = image(rng, model, &ctl, armed_ok, true);
        let n = img.len().min(case.memory.bytes.len() - start as usize);
        case.memory.bytes[start as usize..start as usize + n].copy_from_slice(&img[..n]);
    } else if rng.pct(50) {
        let s = start as usize;
        let n = (std_size as usize).min(case.memory.bytes.len() - s);
        rng.fill(&mut case.memory.bytes[s..s + n]);
    }
    let base = *rng.pick(&BASES);
    case.gprs[base as usize] = ARENA_BASE + start;
    let rfbm_space = if ctl.cpl == 0 {
        ctl.xcr0 | ctl.xss
    } else {
        ctl.xcr0
    };
    let rm = rfbm(rng, rfbm_space);
    case.gprs[0] = rm & 0xFFFF_FFFF;
    case.gprs[2] = rm >> 32;
    if rng.one_in(6) {
        // Junk in registers the case does not use.
        for r in [8usize, 10, 11, 14, 15] {
            if rng.pct(30) {
                case.gprs[r] = rng.next_u64();
            }
        }
    }
    let mut b = Builder {
        rng,
        code: Vec::new(),
    };
    let saves = ["xsave", "xsaveopt", "xsavec", "fxsave", "xsave", "xsaveopt"];
    let second = 0x40 * (1 + b.rng.below(3) as i32);
    let kinds = if ctl.cpl == 0 { 14 } else { 12 };
    match b.rng.below(kinds) {
        0..=2 => {
            let s = *b.rng.pick(&saves);
            b.family(s, base, 0);
        }
        3 | 4 => {
            let r = if b.rng.pct(80) { "xrstor" } else { "fxrstor" };
            b.family(r, base, 0);
        }
        5 | 6 => {
            // XRSTOR then XSAVEOPT at the same address, sometimes with a store between.
            b.family("xrstor", base, 0);
            if b.rng.pct(50) {
                encode::mem(
                    &mut b.code,
                    &[],
                    true,
                    &[0x89],
                    3 + (base == 3) as u8 * 3,
                    base,
                    8 * b.rng.below(70) as i32,
                );
            }
            if b.rng.pct(30) {
                let m = rfbm(b.rng, ctl.xcr0);
                b.set_rfbm(m);
            }
            b.family("xsaveopt", base, 0);
        }
        7 => {
            // Change state, then save elsewhere in the arena.
            match b.rng.below(4) {
                0 => {
                    encode::mov_r64_imm(&mut b.code, 8, b.rng.next_u64());
                    encode::movq_xmm_r64(&mut b.code, b.rng.below(16) as u8, 8);
                }
                1 => b.code.extend_from_slice(&encode::VZEROUPPER),
                2 if ctl.xcr0 & 0xE0 == 0xE0 => {
                    encode::mov_r64_imm(&mut b.code, 8, b.rng.next_u64());
                    encode::kmovq_k_r64(&mut b.code, b.rng.below(8) as u8, 8);
                }
                _ => b.code.extend_from_slice(&encode::FNINIT),
            }
            let s = *b.rng.pick(&saves);
            b.family(s, base, 0);
        }
        8 => {
            // XGETBV with ECX = 0, 1 or 2, after an optional restore.
            if b.rng.pct(50) {
                b.family("xrstor", base, 0);
            }
            let ecx = *b.rng.pick(&[0u32, 1, 1, 2]);
            encode::mov_r32_imm(&mut b.code, 1, ecx);
            b.code.extend_from_slice(&encode::XGETBV);
        }
        9 => {
            // Restore then save with another instruction and RFBM.
            b.family("xrstor", base, 0);
            let m = rfbm(b.rng, ctl.xcr0);
            b.set_rfbm(m);
            let s = *b.rng.pick(&["xsavec", "xsave", "xsaveopt"]);
            let d = if b.rng.pct(50) { 0 } else { second };
            b.family(s, base, d);
        }
        10 => {
            let s = *b.rng.pick(&["xsaves", "xrstors", "ldmxcsr", "stmxcsr"]);
            b.family(s, base, 0);
        }
        12 | 13 => {
            // Ring 0: XRSTORS then XSAVES (same or other address), or XSAVES alone.
            if b.rng.pct(60) {
                b.family("xrstors", base, 0);
            }
            if b.rng.pct(30) {
                let m = rfbm(b.rng, rfbm_space);
                b.set_rfbm(m);
            }
            let d = if b.rng.pct(60) { 0 } else { second };
            b.family("xsaves", base, d);
        }
        _ => {
            for _ in 0..2 + b.rng.below(3) {
                let s = *b
                    .rng
                    .pick(&["xsave", "xrstor", "xsaveopt", "xsavec", "fxsave", "fxrstor"]);
                if b.rng.one_in(3) {
                    let m = rfbm(b.rng, ctl.xcr0);
                    b.set_rfbm(m);
                }
                let d = if b.rng.pct(70) { 0 } else { second };
                b.family(s, base, d);
            }
        }
    }
    case.code = b.code;
    case
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_case_and_no_armed_component_in_the_initial_image() {
        let model = CpuModel::builtin("xeon-amx-vm").unwrap();
        let t = Target {
            control: Control::user(&model),
            model,
        };
        for i in 0..300 {
            let a = generate(&t, 42, i);
            assert_eq!(a, generate(&t, 42, i));
            // XFD armed for TILEDATA (bit 18): the runner's XRSTOR must not load it.
            assert_eq!(a.init_xstate_bv() & (1 << 18), 0, "case {i}");
            assert_eq!(a.control, t.control);
        }
        assert_ne!(generate(&t, 42, 1), generate(&t, 43, 1));
    }

    #[test]
    fn every_case_decodes_and_emu_runs_most() {
        let model = CpuModel::builtin("zen5").unwrap();
        let t = Target {
            control: Control::user(&model),
            model,
        };
        let mut ran = 0;
        for i in 0..500 {
            let c = generate(&t, 1, i);
            if xsave_emu::predict(&t.model, &c).is_ok() {
                ran += 1;
            }
        }
        // Only the LOCK/66/F3-prefixed forms that select other instructions are not modelled.
        assert!(ran > 450, "emu ran {ran} of 500");
    }
}
