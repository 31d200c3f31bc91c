//! The minimizer: shrinks a case while a predicate (the mismatch keeps its
//! signature) holds: drops instructions, resets initial-image fields to their
//! defaults, clears XSTATE_BV bits, shrinks and clears the arena, zeroes GPRs.
//! Each step is kept only when the predicate still holds; the loop stops at a
//! fixed point, so the result is a local minimum that reads well.

use crate::casefile::{default_image, disassemble};
use crate::fields::Catalog;
use xsave_emu::memory::PAGE;
use xsave_emu::{Case, CpuModel, Prot};

/// Shrinks `case` while `keep` holds; `keep(case)` must hold on entry.
/// Stops after `budget` predicate calls.
pub fn minimize(
    model: &CpuModel,
    case: &Case,
    budget: usize,
    keep: &mut dyn FnMut(&Case) -> bool,
) -> Case {
    let mut cur = case.clone();
    let mut calls = 0usize;
    let mut tryit = |cur: &mut Case, cand: Case, calls: &mut usize| -> bool {
        if *calls >= budget || cand == *cur {
            return false;
        }
        *calls += 1;
        if keep(&cand) {
            *cur = cand;
            true
        } else {
            false
        }
    };
    loop {
        let mut changed = false;
        // 1. Drop instructions, last first.
        let insns = disassemble(&cur.code);
        let mut offs = Vec::new();
        let mut o = 0;
        for (b, _) in &insns {
            offs.push((o, b.len()));
            o += b.len();
        }
        for &(o, n) in offs.iter().rev() {
            let mut c = cur.clone();
            if o + n <= c.code.len() {
                c.code.drain(o..o + n);
                changed |= tryit(&mut cur, c, &mut calls);
            }
        }
        // 2. GPRs to zero; RAX and RDX (the instruction mask) bit by bit.
        for r in 0..16 {
            if cur.gprs[r] != 0 {
                let mut c = cur.clone();
                c.gprs[r] = 0;
                changed |= tryit(&mut cur, c, &mut calls);
            }
        }
        for r in [0usize, 2] {
            for bit in (0..32).rev() {
                if cur.gprs[r] >> bit & 1 == 1 {
                    let mut c = cur.clone();
                    c.gprs[r] &= !(1u64 << bit);
                    changed |= tryit(&mut cur, c, &mut calls);
                }
            }
        }
        // 3. Initial-image fields back to their defaults, then stray bytes.
        let xcomp = cur.init_xcomp_bv();
        let compacted = xcomp >> 63 == 1;
        let mut def = default_image(model, cur.control.xcr0, xcomp);
        def.resize(cur.init.len(), 0);
        let cat = Catalog::new(
            model,
            if compacted { xcomp } else { cur.control.xcr0 },
            compacted,
        );
        for f in &cat.fields {
            let r = f.offset..(f.offset + f.len).min(cur.init.len());
            if r.start >= r.end || f.name == "xstate_bv" || cur.init[r.clone()] == def[r.clone()] {
                continue;
            }
            let mut c = cur.clone();
            c.init[r.clone()].copy_from_slice(&def[r]);
            changed |= tryit(&mut cur, c, &mut calls);
        }
        if cur.init != def {
            let mut c = cur.clone();
            let keep_hdr = c.init[512..528].to_vec();
            c.init.copy_from_slice(&def);
            c.init[512..528].copy_from_slice(&keep_hdr);
            if c.init != cur.init {
                changed |= tryit(&mut cur, c, &mut calls);
            }
            for line in (0..cur.init.len()).step_by(64) {
                let e = (line + 64).min(cur.init.len());
                if cur.init[line..e] != def[line..e] && !(512..576).contains(&line) {
                    let mut c = cur.clone();
                    c.init[line..e].copy_from_slice(&def[line..e]);
                    changed |= tryit(&mut cur, c, &mut calls);
                }
            }
        }
        // 4. XSTATE_BV and XCOMP_BV bits.
        for hdr in [512usize, 520] {
            let v = u64::from_le_bytes(cur.init[hdr..hdr + 8].try_into().unwrap());
            for i in (0..64).rev() {
                if v >> i & 1 == 1 {
                    let mut c = cur.clone();
                    c.init[hdr..hdr + 8].copy_from_slice(&(v & !(1u64 << i)).to_le_bytes());
                    changed |= tryit(&mut cur, c, &mut calls);
                }
            }
        }
        // 5. The arena: fewer pages, read-write pages, zero lines.
        while cur.memory.prot.len() > 1 {
            let mut c = cur.clone();
            c.memory.prot.pop();
            let n = c.memory.prot.len() * PAGE as usize;
            c.memory.bytes.truncate(n);
            if !tryit(&mut cur, c, &mut calls) {
                break;
            }
            changed = true;
        }
        for k in 0..cur.memory.prot.len() {
            if cur.memory.prot[k] != Prot::ReadWrite {
                let mut c = cur.clone();
                c.memory.prot[k] = Prot::ReadWrite;
                changed |= tryit(&mut cur, c, &mut calls);
            }
        }
        if cur.memory.bytes.iter().any(|&b| b != 0) {
            let mut c = cur.clone();
            c.memory.bytes.fill(0);
            changed |= tryit(&mut cur, c, &mut calls);
            for line in (0..cur.memory.bytes.len()).step_by(64) {
                if cur.memory.bytes[line..line + 64].iter().any(|&b| b != 0) {
                    let mut c = cur.clone();
                    c.memory.bytes[line..line + 64].fill(0);
                    changed |= tryit(&mut cur, c, &mut calls);
                }
            }
        }
        if !changed || calls >= budget {
            return cur;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::{Control, Fault};

    #[test]
    fn shrinks_to_the_instruction_and_field_that_matter() {
        // Predicate: the emulator predicts #GP(0) at instruction index 0 or later
        // from an MXCSR with a reserved bit (SDM2 XRSTOR: MXCSR reserved bits #GP).
        let m = CpuModel::builtin("zen5").unwrap();
        let t = crate::generate::Target {
            control: Control::user(&m),
            model: m.clone(),
        };
        let mut c = crate::generate::generate(&t, 5, 0);
        c.code = vec![0x90, 0x48, 0x0f, 0xae, 0x2f, 0x90]; // nop; xrstor64 [rdi]; nop
        c.gprs = [0; 16];
        c.gprs[0] = 0xffff_ffff;
        c.gprs[2] = 0xffff_ffff;
        c.gprs[7] = xsave_emu::case::ARENA_BASE;
        c.gprs[9] = 0x1234;
        c.memory = xsave_emu::Memory::new(xsave_emu::case::ARENA_BASE, 3);
        c.memory.bytes[24..28].copy_from_slice(&0x1_1f80u32.to_le_bytes());
        c.memory.bytes[200] = 7;
        let pred = |x: &Case| {
            xsave_emu::predict(&m, x)
                .ok()
                .and_then(|o| o.fault)
                .is_some_and(|f| f.fault == Fault::Gp(0) && f.insn.is_some())
        };
        assert!(pred(&c));
        let mut p = pred;
        let r = minimize(&m, &c, 2000, &mut p);
        assert_eq!(r.code, vec![0x48, 0x0f, 0xae, 0x2f]);
        assert_eq!(r.memory.prot.len(), 1);
        assert_eq!(r.gprs[9], 0);
        assert_eq!(r.memory.bytes[200], 0);
        assert_eq!(&r.memory.bytes[24..28], &0x1_1f80u32.to_le_bytes());
        assert_eq!(r.init, default_image(&m, r.control.xcr0, 0));
    }
}
