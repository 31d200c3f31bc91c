//! proptest properties of the model (issue 2): XSAVEC then XRSTOR restores every
//! component; XSAVE -> XRSTOR -> XSAVE is a fixed point; compacted layouts are
//! increasing, aligned and end at their size; every prediction lies inside the
//! envelope, for every built-in model; no input makes the emulator panic.
use iced_x86::code_asm::*;
use proptest::prelude::*;
use xsave_emu::case::{ARENA_BASE, CODE_BASE};
use xsave_emu::{layout, Case, Control, CpuModel, Memory, Outcome, Prot, Xfeatures};

/// A deterministic byte stream from a seed (xorshift64*), so that a case is one
/// shrinkable number plus a few choices.
struct Bytes(u64);
impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn models() -> Vec<CpuModel> {
    CpuModel::builtin_all()
}

/// A valid standard-format image for `ctl` on `m`: random contents, XSTATE_BV a
/// random subset of XCR0 without XFD-armed components, MXCSR within MXCSR_MASK,
/// header bytes 8..63 zero; components whose XSTATE_BV bit is 0 are sometimes zero.
fn image(m: &CpuModel, ctl: &Control, seed: u64, bv_bits: u64) -> Vec<u8> {
    let size = layout::standard(m, Xfeatures::from_bits_retain(ctl.xcr0)).size as usize;
    let mut img = vec![0u8; size];
    let mut r = Bytes(seed | 1);
    r.fill(&mut img);
    let mx = (r.next() as u32) & m.mxcsr_mask;
    img[24..28].copy_from_slice(&mx.to_le_bytes());
    let bv = bv_bits & ctl.xcr0 & !ctl.xfd_armed();
    img[512..520].copy_from_slice(&bv.to_le_bytes());
    img[520..576].fill(0);
    img
}

fn case(m: &CpuModel, ctl: Control, init: Vec<u8>, pages: usize, code: Vec<u8>, rfbm: u64) -> Case {
    let mut c = Case::new(m, ctl);
    c.init = init;
    c.memory = Memory::new(ARENA_BASE, pages);
    c.code = code;
    c.gprs[0] = rfbm & 0xFFFF_FFFF;
    c.gprs[2] = rfbm >> 32;
    c.gprs[3] = ARENA_BASE;
    c
}

fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE_BASE).unwrap()
}

fn predict(m: &CpuModel, c: &Case) -> Outcome {
    xsave_emu::predict(m, c).unwrap_or_else(|e| panic!("{}: unsupported: {e}", m.name))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// SDM1 §13.10 + §13.8.2: what XSAVEC saves, compacted XRSTOR with the same RFBM
    /// restores: every component's contents equal those of the same case without
    /// the pair (XSTATE_BV may gain bits: XINUSE[i] = 1 is always allowed).
    #[test]
    fn xsavec_then_xrstor_restores_every_component(
        k in 0usize..5, seed in any::<u64>(), bv in any::<u64>(), rfbm in any::<u64>(), w in any::<bool>()
    ) {
        let ms: Vec<CpuModel> = models().into_iter().filter(|m| m.xsavec).collect();
        let m = &ms[k % ms.len()];
        let ctl = Control::user(m);
        let init = image(m, &ctl, seed, bv);
        let base = predict(m, &case(m, ctl, init.clone(), 4, vec![], rfbm));
        prop_assume!(base.fault.is_none());
        let code = asm(|a| if w {
            a.xsavec64(ptr(rbx))?; a.xrstor64(ptr(rbx))
        } else {
            a.xsavec(ptr(rbx))?; a.xrstor(ptr(rbx))
        });
        let o = predict(m, &case(m, ctl, init, 4, code, rfbm));
        prop_assert_eq!(o.fault, None);
        // The 32-bit forms hold FIP[31:0] and FDP[31:0] only (SDM2 FXSAVE table
        // 3-43): bytes 12..16 and 20..24 of the 64-bit capture are what they lose.
        let keep = |img: &[u8]| {
            let mut v = img[..512].to_vec();
            if !w {
                v[12..16].fill(0);
                v[20..24].fill(0);
            }
            v
        };
        prop_assert_eq!(keep(&o.final_image), keep(&base.final_image));
        prop_assert_eq!(&o.final_image[520..], &base.final_image[520..]);
        let (b0, b1) = (
            u64::from_le_bytes(base.final_image[512..520].try_into().unwrap()),
            u64::from_le_bytes(o.final_image[512..520].try_into().unwrap()),
        );
        prop_assert_eq!(b0 & !b1, 0, "XSTATE_BV lost bits");
    }

    /// SDM1 §13.7/§13.8.1: XSAVE, XRSTOR of that image, XSAVE again: the second
    /// image equals the first, byte for byte (both areas start zeroed).
    #[test]
    fn xsave_xrstor_xsave_is_a_fixed_point(
        k in 0usize..5, seed in any::<u64>(), bv in any::<u64>(), rfbm in any::<u64>(), w in any::<bool>()
    ) {
        let m = &models()[k];
        let ctl = Control::user(m);
        let init = image(m, &ctl, seed, bv);
        let size = init.len();
        let code = asm(|a| if w {
            a.xsave64(ptr(rbx))?; a.xrstor64(ptr(rbx))?; a.xsave64(ptr(rbx + 0x3000))
        } else {
            a.xsave(ptr(rbx))?; a.xrstor(ptr(rbx))?; a.xsave(ptr(rbx + 0x3000))
        });
        let o = predict(m, &case(m, ctl, init, 6, code, rfbm));
        prop_assume!(o.fault.is_none() || o.fault.unwrap().insn.is_some());
        prop_assert_eq!(o.fault, None);
        prop_assert_eq!(&o.memory[..size], &o.memory[0x3000..0x3000 + size]);
    }

    /// SDM1 §13.4.3: compacted offsets are increasing, each at or after the end of
    /// the previous component, 64-byte aligned where CPUID.(0DH,i).ECX[1] = 1, and
    /// the size is the end of the last one (576 with none).
    #[test]
    fn compacted_offsets_increase_align_and_end_at_the_size(k in 0usize..5, mask in any::<u64>()) {
        let m = &models()[k];
        let mask = Xfeatures::from_bits_retain(mask & m.supported().bits());
        let l = layout::compacted(m, mask);
        let mut end = 576;
        let mut last = 1;
        for s in &l.slots {
            prop_assert!(s.index > last);
            prop_assert!(s.offset >= end);
            let d = m.component(s.index).unwrap();
            if d.align64 {
                prop_assert_eq!(s.offset % 64, 0);
                prop_assert!(s.offset - end < 64);
            } else {
                prop_assert_eq!(s.offset, end);
            }
            prop_assert_eq!(s.size, d.size);
            end = s.offset + s.size;
            last = s.index;
        }
        prop_assert_eq!(l.size, end);
        let n = mask.indices().filter(|&i| i >= 2 && m.component(i).is_some()).count();
        prop_assert_eq!(l.slots.len(), n);
    }

    /// Every prediction lies inside the envelope, on every built-in model, for
    /// random sequences of XSAVE-family instructions over random areas, partly
    /// mapped arenas, random RFBM, CPL 0 or 3, XFD as the OS sets it.
    #[test]
    fn every_prediction_lies_inside_the_envelope(
        k in 0usize..5, seed in any::<u64>(), bv in any::<u64>(), rfbm in any::<u64>(),
        cpl0 in any::<bool>(), insns in prop::collection::vec((0usize..14, 0u8..4), 1..4),
        prot in prop::collection::vec(0u8..4, 4), arena_bv in any::<u64>(), ac in any::<bool>()
    ) {
        let m = &models()[k];
        let mut ctl = if cpl0 { Control::kernel(m) } else { Control::user(m) };
        ctl.eflags_ac = ac;
        let init = image(m, &ctl, seed, bv);
        let mut c = case(m, ctl, init.clone(), 4, vec![], rfbm);
        // The arena: an image (standard or compacted header) and random bytes.
        let mut r = Bytes(seed ^ 0x9E37_79B9_7F4A_7C15 | 1);
        r.fill(&mut c.memory.bytes);
        let n = init.len().min(c.memory.bytes.len());
        c.memory.bytes[..n].copy_from_slice(&init[..n]);
        let xcomp = if arena_bv & 1 != 0 {
            (arena_bv >> 1) & (ctl.xcr0 | ctl.xss) | 1 << 63
        } else {
            0
        };
        c.memory.bytes[520..528].copy_from_slice(&xcomp.to_le_bytes());
        let bvv = (arena_bv >> 8) & if xcomp != 0 { xcomp } else { ctl.xcr0 };
        c.memory.bytes[512..520].copy_from_slice(&bvv.to_le_bytes());
        for (p, v) in c.memory.prot.iter_mut().zip(&prot) {
            *p = match v { 0 => Prot::None, 1 => Prot::Read, _ => Prot::ReadWrite };
        }
        c.memory.prot[0] = Prot::ReadWrite;
        c.code = asm(|a| {
            for (i, d) in &insns {
                let at = ptr(rbx + [0u32, 64, 4096 - 512, 8][*d as usize]);
                match i {
                    0 => a.xsave(at)?, 1 => a.xsave64(at)?, 2 => a.xsaveopt64(at)?,
                    3 => a.xsavec64(at)?, 4 => a.xsaves64(at)?, 5 => a.xrstor64(at)?,
                    6 => a.xrstor(at)?, 7 => a.xrstors64(at)?, 8 => a.fxsave64(at)?,
                    9 => a.fxrstor(at)?, 10 => a.xgetbv()?, 11 => a.ldmxcsr(dword_ptr(rbx + 24))?,
                    12 => a.movq(xmm3, rax)?, _ => a.xsetbv()?,
                }
            }
            Ok(())
        });
        c.gprs[1] = (seed >> 62) & 1;
        match xsave_emu::predict(m, &c) {
            Ok(o) => {
                let v = xsave_emu::check(m, &c, &o).expect("supported");
                prop_assert!(v.inside(), "{}: {}", m.name, v);
            }
            Err(e) => prop_assert!(e.0.contains("VMX") || e.0.contains("not modelled"), "{e}"),
        }
    }

    /// No input makes the emulator panic: arbitrary control state, image, arena
    /// (any base, sizes that do not match), code and GPRs; predict and check return.
    #[test]
    fn no_input_makes_the_emulator_panic(
        k in 0usize..5, xcr0 in any::<u64>(), xss in any::<u64>(), xfd in any::<u64>(),
        cpl in 0u8..4, flags in any::<u8>(), init in prop::collection::vec(any::<u8>(), 0..1200),
        init_len in 0usize..12000, base in any::<u64>(), mem_len in 0usize..20000,
        prot in prop::collection::vec(0u8..3, 0..6), code in prop::collection::vec(any::<u8>(), 0..48),
        gprs in prop::array::uniform16(any::<u64>()), seed in any::<u64>()
    ) {
        let m = &models()[k];
        let mut ctl = Control::user(m);
        if flags & 1 != 0 {
            ctl.xcr0 = xcr0;
            ctl.xss = xss;
            ctl.xfd = xfd;
        } else {
            ctl.xcr0 &= xcr0 | 3;
            ctl.xfd = xfd & m.os_xfd;
        }
        ctl.cpl = cpl;
        ctl.cr0_ts = flags & 2 != 0;
        ctl.cr4_osxsave = flags & 4 != 0;
        ctl.eflags_ac = flags & 8 != 0;
        ctl.cr0_em = flags & 16 != 0;
        ctl.vmx_nonroot = flags & 32 != 0;
        let mut c = Case::new(m, ctl);
        let mut img = init.clone();
        if flags & 64 != 0 {
            img.resize(init_len, 0);
            Bytes(seed | 1).fill(&mut img[init.len().min(init_len)..]);
        }
        c.init = img;
        let base = if flags & 128 != 0 { base } else { ARENA_BASE };
        let mut mem = Memory::new(base & !0xFFF, 0);
        mem.base = base;
        mem.bytes = vec![0xA5; mem_len].into();
        mem.prot = prot.iter().map(|p| [Prot::None, Prot::Read, Prot::ReadWrite][*p as usize]).collect();
        c.memory = mem;
        c.code = code;
        c.gprs = gprs;
        if let Ok(o) = xsave_emu::predict(m, &c) {
            let _ = xsave_emu::check(m, &c, &o);
            let mut other = o.clone();
            other.final_image.truncate(init_len % 700);
            other.memory.truncate(mem_len / 3);
            let _ = xsave_emu::check(m, &c, &other);
        }
    }

    /// Model files: any text parses or fails with an error, never a panic.
    #[test]
    fn model_parsing_never_panics(text in "(name x\n)?((cpuid|xcr0|xss|xfd|quirk|mxcsr_mask|paging) [ -~]{0,40}\n){0,6}") {
        let _ = CpuModel::parse(&text);
    }
}
