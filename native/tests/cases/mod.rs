//! The agreement cases, one function each, named after the SDM rule or the
//! silicon question it checks. Each returns the case and the facts its outcome
//! must show beyond agreeing with emu, or None (after printing why) where the
//! host lacks what the case needs.
#![allow(dead_code)]

use crate::common::*;
use iced_x86::code_asm::*;
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{layout, Case, Fault, FaultAt, Outcome, Prot, Xfeatures};

pub type Check = Box<dyn Fn(&Outcome)>;
pub type Agreement = Option<(Case, Check)>;

fn ok(c: Case) -> Agreement {
    Some((c, Box::new(|_| {})))
}
fn with(c: Case, f: impl Fn(&Outcome) + 'static) -> Agreement {
    Some((c, Box::new(f)))
}
fn skip(why: &str) -> Agreement {
    println!("skipped: {why}");
    None
}

fn xcr0() -> u64 {
    runner().control().xcr0
}
fn armed() -> u64 {
    runner().control().xfd_armed()
}
fn std_size() -> usize {
    layout::standard(&model(), Xfeatures::from_bits_retain(xcr0())).size as usize
}
/// Components the pattern fills: x87, SSE, AVX, opmask, ZMM (never PKRU, whose
/// value would change the case's own memory access rights; AMX apart).
fn pattern_mask() -> u64 {
    xcr0() & 0xE7 & !armed()
}

fn fault(o: &Outcome) -> Option<Fault> {
    o.fault.map(|f| f.fault)
}
fn at(f: Fault, i: usize) -> Option<FaultAt> {
    Some(FaultAt {
        fault: f,
        insn: Some(i),
    })
}
fn u64at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn u32at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// A standard-format XSAVE image of the host's XCR0 size.
#[derive(Clone)]
pub struct Img(pub Vec<u8>);

impl Img {
    /// Init configuration: FCW 037FH, MXCSR 1F80H, XSTATE_BV 0.
    pub fn init() -> Img {
        let mut v = vec![0u8; std_size()];
        v[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
        v[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        Img(v)
    }
    /// Every component of `bv` holding a pattern derived from `seed`, XSTATE_BV = bv.
    pub fn pattern(bv: u64, seed: u8) -> Img {
        let m = model();
        let mut i = Img::init();
        let mut x = seed as u32 * 77 + 13;
        let mut rnd = move || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        };
        if bv & 1 != 0 {
            i.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
            i.0[4] = 0xFF;
            for k in 0..8 {
                for b in 0..10 {
                    i.0[32 + 16 * k + b] = rnd();
                }
            }
        }
        if bv & 2 != 0 {
            for b in &mut i.0[160..416] {
                *b = rnd();
            }
        }
        for c in Xfeatures::from_bits_retain(bv)
            .indices()
            .filter(|&c| c >= 2)
        {
            let d = m.component(c).unwrap();
            for b in &mut i.0[d.offset as usize..(d.offset + d.size) as usize] {
                *b = rnd();
            }
        }
        i.bv(bv);
        i
    }
    pub fn bv(&mut self, v: u64) -> &mut Img {
        self.0[512..520].copy_from_slice(&v.to_le_bytes());
        self
    }
    pub fn set(&mut self, off: usize, bytes: &[u8]) -> &mut Img {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
        self
    }
    pub fn u16(&mut self, off: usize, v: u16) -> &mut Img {
        self.set(off, &v.to_le_bytes())
    }
    pub fn u32(&mut self, off: usize, v: u32) -> &mut Img {
        self.set(off, &v.to_le_bytes())
    }
    pub fn u64(&mut self, off: usize, v: u64) -> &mut Img {
        self.set(off, &v.to_le_bytes())
    }
    /// This image in the compacted format for XCOMP_BV = `xcomp | 2^63`.
    pub fn compacted(&self, xcomp: u64) -> Img {
        let m = model();
        let lay = layout::compacted(&m, Xfeatures::from_bits_retain(xcomp));
        let mut v = vec![0u8; (lay.size as usize).max(576)];
        v[..512].copy_from_slice(&self.0[..512]);
        let bv = u64at(&self.0, 512) & xcomp;
        for s in &lay.slots {
            let d = m.component(s.index).unwrap();
            v[s.offset as usize..(s.offset + s.size) as usize]
                .copy_from_slice(&self.0[d.offset as usize..(d.offset + d.size) as usize]);
        }
        v[512..520].copy_from_slice(&bv.to_le_bytes());
        v[520..528].copy_from_slice(&(xcomp | 1 << 63).to_le_bytes());
        Img(v)
    }
}

/// A case with `pages` arena pages, the image `mem` at ARENA_BASE (when given),
/// RDI = ARENA_BASE, EDX:EAX = all ones.
fn mk(pages: usize, mem: Option<&Img>, code: Vec<u8>) -> Case {
    let mut c = case(pages, code);
    if let Some(i) = mem {
        let n = i.0.len().min(c.memory.bytes.len());
        c.memory.bytes[..n].copy_from_slice(&i.0[..n]);
    }
    c
}
/// Pages that hold a standard area, plus one.
fn pages() -> usize {
    std_size().div_ceil(4096) + 1
}
fn rfbm(c: &mut Case, v: u64) {
    c.gprs[0] = v & 0xFFFF_FFFF;
    c.gprs[2] = v >> 32;
}
fn fill(c: &mut Case, v: u8) {
    c.memory.bytes.fill(v);
}

// ---------------------------------------------------------------- XSAVE

/// SDM2 XSAVE: of the init state every RFBM component is written (init values)
/// and XSTATE_BV = XINUSE AND RFBM = 0.
pub fn xsave64_init_state_writes_every_component() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    fill(&mut c, 0xAA);
    c.memory.bytes[512..576].fill(0);
    with(c, |o| {
        assert_eq!(&o.memory[0..2], &[0x7f, 0x03]);
        assert_eq!(u64at(&o.memory, 512), 0);
    })
}

/// SDM2 XSAVE: the 32-bit form (no REX.W) writes FIP/FCS and FDP/FDS.
pub fn xsave_32bit_form_of_pattern_state() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 1).0;
    ok(c)
}

/// SDM2 XSAVE: an area not 64-byte aligned is #GP(0).
pub fn xsave64_misaligned_is_gp() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.gprs[7] += 32;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XSAVE: RFBM = 1 writes the x87 part only; XSTATE_BV bits outside RFBM
/// keep their memory values; MXCSR is not written (RFBM[1] = RFBM[2] = 0).
pub fn xsave64_rfbm_x87_only() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 2).0;
    fill(&mut c, 0x55);
    c.memory.bytes[512..520].copy_from_slice(&6u64.to_le_bytes());
    c.memory.bytes[520..576].fill(0);
    rfbm(&mut c, 1);
    with(c, |o| {
        assert_eq!(&o.memory[24..28], &[0x55; 4]);
        assert_eq!(u64at(&o.memory, 512), 7);
    })
}

/// SDM2 XSAVE: RFBM = SSE saves XMM, MXCSR and MXCSR_MASK, not x87.
pub fn xsave64_rfbm_sse_only() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 3).0;
    fill(&mut c, 0x55);
    c.memory.bytes[512..576].fill(0);
    rfbm(&mut c, 2);
    ok(c)
}

/// SDM1 §13.7: MXCSR and MXCSR_MASK are saved when RFBM[2] (AVX) is set even if
/// RFBM[1] is not.
pub fn xsave64_rfbm_avx_only_saves_mxcsr() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    let mut i = Img::pattern(pattern_mask(), 4);
    i.u32(24, 0x1F00);
    c.init = i.0;
    fill(&mut c, 0x55);
    c.memory.bytes[512..576].fill(0);
    rfbm(&mut c, 4);
    with(c, |o| assert_eq!(u32at(&o.memory, 24), 0x1F00))
}

/// SDM2 XSAVE: RFBM = 0 writes nothing (XSTATE_BV read-modify-written unchanged).
pub fn xsave64_rfbm_zero_writes_nothing() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 5).0;
    fill(&mut c, 0x5A);
    c.memory.bytes[520..576].fill(0);
    rfbm(&mut c, 0);
    ok(c)
}

/// SDM1 §13.4.2: XSAVE does not write XCOMP_BV or header bytes 16..63, nor
/// legacy bytes 416..511.
pub fn xsave64_leaves_xcomp_bv_and_reserved_bytes() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    fill(&mut c, 0xC3);
    with(c, |o| {
        assert_eq!(&o.memory[416..512], &[0xC3; 96][..]);
        assert_eq!(&o.memory[520..576], &[0xC3; 56][..]);
    })
}

/// SDM1 §13.6: a component loaded with XSTATE_BV[i] = 1 may be in use although it
/// holds its init values. Intel: it is, so XSAVE reports XSTATE_BV[i] = 1; Zen 5
/// sets XINUSE from the contents (quirk xinuse-by-contents): XSTATE_BV = 0.
pub fn xsave64_in_use_component_with_init_values() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    let mut i = Img::init();
    i.bv(pattern_mask());
    c.init = i.0;
    let by_contents = host_quirks().xinuse_by_contents;
    with(c, move |o| {
        let want = if by_contents { 0 } else { pattern_mask() };
        assert_eq!(u64at(&o.memory, 512), want)
    })
}

/// The host model's quirks (what silicon facts a case asserts depend on).
fn host_quirks() -> xsave_emu::model::Quirks {
    xsave_native::host::host_model().expect("host model").quirks
}

/// SDM2 XSAVE: every component in use is written with its contents.
pub fn xsave64_pattern_state() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 6).0;
    ok(c)
}

// ---------------------------------------------------------------- XSAVEOPT

/// SDM1 §13.9: XSAVEOPT's init optimization: components in init configuration
/// (XINUSE[i] = 0) are not written; XSTATE_BV = 0.
pub fn xsaveopt64_init_optimization_skips_init_components() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsaveopt64(ptr(rdi))));
    fill(&mut c, 0xAA);
    c.memory.bytes[520..576].fill(0);
    ok(c)
}

/// SDM2 XSAVEOPT: the 32-bit form of a pattern state.
pub fn xsaveopt_32bit_form() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsaveopt(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 7).0;
    ok(c)
}

/// SDM1 §13.9: the modified optimization: after XRSTOR from the same address,
/// unmodified components need not be written (a marker written into the area
/// after the XRSTOR shows whether they were).
pub fn xsaveopt64_after_xrstor_same_address_unmodified() -> Agreement {
    let i = Img::pattern(pattern_mask(), 8);
    let mut c = mk(
        pages(),
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.mov(rbx, 0x1111_2222_3333_4444u64)?;
            a.mov(qword_ptr(rdi + 160), rbx)?;
            a.mov(qword_ptr(rdi + 32), rbx)?;
            a.xsaveopt64(ptr(rdi))
        }),
    );
    c.gprs[3] = 0;
    ok(c)
}

/// SDM1 §13.9: a component written after the XRSTOR (XMM0 by MOVQ) is saved by
/// XSAVEOPT to the same address.
pub fn xsaveopt64_after_xrstor_same_address_with_write_between() -> Agreement {
    let i = Img::pattern(pattern_mask(), 9);
    let c = mk(
        pages(),
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.mov(rbx, 0x1111_2222_3333_4444u64)?;
            a.mov(qword_ptr(rdi + 160), rbx)?;
            a.mov(qword_ptr(rdi + 32), rbx)?;
            a.movq(xmm0, rbx)?;
            a.xsaveopt64(ptr(rdi))
        }),
    );
    ok(c)
}

/// SDM1 §13.9: after XRSTOR from another address the modified optimization does
/// not apply: every component in use is written.
pub fn xsaveopt64_after_xrstor_other_address() -> Agreement {
    let i = Img::pattern(pattern_mask(), 10);
    let p = std_size().div_ceil(4096);
    let mut c = mk(
        2 * p,
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.xsaveopt64(ptr(rsi))
        }),
    );
    c.gprs[6] = ARENA_BASE + (p as u64) * 4096;
    ok(c)
}

/// SDM1 §13.9: XSAVEOPT right after the runner's own XRSTOR (from INIT_BASE,
/// another address): components in use are written, init ones skipped.
pub fn xsaveopt64_after_initial_xrstor() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsaveopt64(ptr(rdi))));
    let mut i = Img::pattern(pattern_mask() & 0b11, 11);
    i.bv(pattern_mask() & 0b11);
    c.init = i.0;
    fill(&mut c, 0x77);
    c.memory.bytes[520..576].fill(0);
    ok(c)
}

/// SDM1 §13.9: XSAVEOPT twice to the same address after XRSTOR from it, with
/// LDMXCSR (SSE modified) in between.
pub fn xsaveopt64_ldmxcsr_between_marks_sse_modified() -> Agreement {
    let i = Img::pattern(pattern_mask(), 12);
    let mut c = mk(
        pages() + 1,
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.ldmxcsr(dword_ptr(rsi))?;
            a.xsaveopt64(ptr(rdi))
        }),
    );
    let off = pages() * 4096;
    c.memory.bytes[off..off + 4].copy_from_slice(&0x1F00u32.to_le_bytes());
    c.gprs[6] = ARENA_BASE + off as u64;
    ok(c)
}

/// SDM1 §13.6 and §13.9, one component at a time: only component `i` in use
/// (pattern values), the others in init configuration; the save writes the
/// in-use one and (XSAVEOPT/XSAVEC) skips the init ones. None where XCR0 lacks `i`.
fn only_component(
    i: u64,
    save: fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Agreement {
    if pattern_mask() & (1 << i) == 0 {
        return skip(&format!("component {i} not in XCR0"));
    }
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(save));
    c.init = Img::pattern(1 << i, 60 + i as u8).0;
    fill(&mut c, 0xEE);
    c.memory.bytes[512..576].fill(0);
    ok(c)
}

pub fn xsaveopt64_init_optimization_only_x87_in_use() -> Agreement {
    only_component(0, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsaveopt64_init_optimization_only_sse_in_use() -> Agreement {
    only_component(1, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsaveopt64_init_optimization_only_avx_in_use() -> Agreement {
    only_component(2, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsaveopt64_init_optimization_only_opmask_in_use() -> Agreement {
    only_component(5, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsaveopt64_init_optimization_only_zmm_hi256_in_use() -> Agreement {
    only_component(6, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsaveopt64_init_optimization_only_hi16_zmm_in_use() -> Agreement {
    only_component(7, |a| a.xsaveopt64(ptr(rdi)))
}
pub fn xsavec64_init_optimization_only_x87_in_use() -> Agreement {
    only_component(0, |a| a.xsavec64(ptr(rdi)))
}
pub fn xsavec64_init_optimization_only_avx_in_use() -> Agreement {
    only_component(2, |a| a.xsavec64(ptr(rdi)))
}
pub fn xsavec64_init_optimization_only_opmask_in_use() -> Agreement {
    only_component(5, |a| a.xsavec64(ptr(rdi)))
}
pub fn xsavec64_init_optimization_only_hi16_zmm_in_use() -> Agreement {
    only_component(7, |a| a.xsavec64(ptr(rdi)))
}
pub fn xsave64_only_zmm_hi256_in_use() -> Agreement {
    only_component(6, |a| a.xsave64(ptr(rdi)))
}

// ---------------------------------------------------------------- XSAVEC

/// SDM1 §13.10: XSAVEC of the init state: XSTATE_BV = 0, XCOMP_BV = RFBM | 2^63,
/// nothing else written.
pub fn xsavec64_init_state() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    fill(&mut c, 0xAA);
    with(c, move |o| {
        assert_eq!(u64at(&o.memory, 512), 0);
        assert_eq!(u64at(&o.memory, 520), xcr0() | 1 << 63);
    })
}

/// SDM2 XSAVEC: the 32-bit form of a pattern state.
pub fn xsavec_32bit_form() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 13).0;
    ok(c)
}

/// SDM1 §13.10: XSAVEC saves SSE when MXCSR != 1F80H even with XMM in init.
pub fn xsavec64_mxcsr_not_default_saves_sse() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    let mut i = Img::init();
    i.u32(24, 0x1F00);
    c.init = i.0;
    fill(&mut c, 0xAA);
    with(c, |o| {
        assert_eq!(u64at(&o.memory, 512), 2);
        assert_eq!(u32at(&o.memory, 24), 0x1F00);
    })
}

/// SDM1 §13.4.3: XSAVEC with an RFBM subset lays out only the RFBM components
/// (x87, AVX, opmask here).
pub fn xsavec64_rfbm_subset_layout() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 14).0;
    fill(&mut c, 0xAA);
    rfbm(&mut c, 0x25 & xcr0());
    ok(c)
}

/// SDM2 XSAVEC: a misaligned area is #GP(0).
pub fn xsavec64_misaligned_is_gp() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    c.gprs[7] += 16;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.10: XSAVEC of a pattern state with every component in use.
pub fn xsavec64_pattern_state() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 15).0;
    ok(c)
}

// ---------------------------------------------------------------- XRSTOR (standard)

/// SDM2 XRSTOR: the standard form loads every RFBM component with XSTATE_BV[i] = 1.
pub fn xrstor64_loads_every_component() -> Agreement {
    let i = Img::pattern(pattern_mask(), 16);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// SDM2 XRSTOR: the 32-bit form (FIP/FDP 32 bits, FCS/FDS).
pub fn xrstor_32bit_form() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 17);
    i.u32(8, 0x1234_5678)
        .u16(12, 0x33)
        .u32(16, 0x9abc_def0)
        .u16(20, 0x2b)
        .u16(6, 0x7ff);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor(ptr(rdi)))))
}

/// SDM2 XRSTOR: XSTATE_BV[i] = 0 initializes component i.
pub fn xrstor64_xstate_bv_zero_initializes() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 18);
    i.bv(0);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 19).0;
    ok(c)
}

/// SDM2 XRSTOR: components outside RFBM are left as they are.
pub fn xrstor64_rfbm_subset_leaves_other_components() -> Agreement {
    let i = Img::pattern(pattern_mask(), 20);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 21).0;
    rfbm(&mut c, 1);
    ok(c)
}

/// SDM2 XRSTOR: #GP(0) when XSTATE_BV sets a bit not in XCR0 (bit 3, MPX).
pub fn xrstor64_xstate_bv_outside_xcr0_is_gp() -> Agreement {
    let mut i = Img::init();
    i.bv(1 << 3);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTOR: #GP(0) when XSTATE_BV[63] = 1 in the standard form.
pub fn xrstor64_xstate_bv_bit63_is_gp() -> Agreement {
    let mut i = Img::init();
    i.bv(1 << 63);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.8.1: #GP(0) when XCOMP_BV[63] = 0 but XCOMP_BV != 0.
pub fn xrstor64_xcomp_bv_nonzero_standard_is_gp() -> Agreement {
    let mut i = Img::init();
    i.u64(520, 1);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.8.1: #GP(0) when header bytes 23:16 are not zero.
pub fn xrstor64_header_bytes_16_23_nonzero_is_gp() -> Agreement {
    let mut i = Img::init();
    i.set(528 + 7, &[1]);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.8.1: header bytes 63:24 are not checked by the standard form.
pub fn xrstor64_header_bytes_24_63_not_checked() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 22);
    i.set(536, &[0xFF; 40]);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM2 XRSTOR: #GP(0) when MXCSR sets a bit outside MXCSR_MASK (RFBM[1] = 1).
pub fn xrstor64_mxcsr_reserved_bit_is_gp() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 23);
    i.u32(24, 0x1F80 | 1 << 20);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTOR: MXCSR is not read when RFBM[1] = RFBM[2] = 0, so its reserved
/// bits do not fault.
pub fn xrstor64_mxcsr_reserved_bit_ignored_without_sse_avx() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 24);
    i.u32(24, 0xFFFF_FFFF);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    rfbm(&mut c, 1);
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM1 §13.8.1 and silicon: standard-form XRSTOR with XSTATE_BV[1] = 0 loads
/// MXCSR (not 1F80H here) and initializes XMM; XINUSE[1] after it (Intel: 1).
pub fn xrstor64_sse_init_loads_mxcsr() -> Agreement {
    let mut i = Img::init();
    i.u32(24, 0x1F00 | 0x8040);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 25).0;
    ok(c)
}

/// SDM1 §13.6: XSTATE_BV[1] = 1 with XMM all zero and MXCSR = 1F80H: SSE in use
/// with init values (XINUSE[1] = 1).
pub fn xrstor64_sse_in_use_with_zero_xmm() -> Agreement {
    let mut i = Img::init();
    i.bv(2);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// SDM2 XRSTOR: a misaligned area is #GP(0).
pub fn xrstor64_misaligned_is_gp() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xrstor64(ptr(rdi))));
    c.gprs[7] += 8;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.6: XINUSE after XRSTOR with AVX in use but holding zero: XGETBV(1)
/// and XSAVE's XSTATE_BV both say in use.
pub fn xrstor64_avx_in_use_with_zero_values() -> Agreement {
    if xcr0() & 4 == 0 {
        return skip("no AVX in XCR0");
    }
    let mut i = Img::init();
    i.bv(4);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

// ---------------------------------------------------------------- XRSTOR (compacted)

fn compacted_ok() -> bool {
    model().xsavec
}

/// SDM1 §13.8.2: the compacted form loads the XCOMP_BV components.
pub fn xrstor64_compacted_loads() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let i = Img::pattern(pattern_mask(), 26).compacted(xcr0());
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// SDM2 XRSTOR: the compacted form, 32-bit.
pub fn xrstor_compacted_32bit_form() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let i = Img::pattern(pattern_mask(), 27).compacted(xcr0());
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor(ptr(rdi)))))
}

/// SDM2 XRSTOR: compacted, #GP(0) when XCOMP_BV sets a bit not in XCR0.
pub fn xrstor64_compacted_xcomp_bv_outside_xcr0_is_gp() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut i = Img::init().compacted(xcr0());
    i.u64(520, xcr0() | 1 << 3 | 1 << 63);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTOR: compacted, #GP(0) when XSTATE_BV is not a subset of XCOMP_BV.
pub fn xrstor64_compacted_xstate_bv_not_subset_is_gp() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut i = Img::pattern(3, 28).compacted(1);
    i.bv(3);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTOR: compacted, #GP(0) when header bytes 63:16 are not zero.
pub fn xrstor64_compacted_header_bytes_16_63_nonzero_is_gp() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut i = Img::init().compacted(xcr0());
    i.set(560, &[1]);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTOR: compacted, #GP(0) on MXCSR reserved bits when SSE is loaded.
pub fn xrstor64_compacted_mxcsr_reserved_bit_is_gp() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut i = Img::pattern(pattern_mask(), 29).compacted(xcr0());
    i.u32(24, 0x1F80 | 1 << 31);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM1 §13.8.2: compacted, SSE initialized (XSTATE_BV[1] = 0) sets MXCSR to
/// 1F80H whatever the image holds; XINUSE[1] after it.
pub fn xrstor64_compacted_sse_init_sets_mxcsr_default() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut i = Img::init().compacted(xcr0());
    i.u32(24, 0x1F00);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 30).0;
    ok(c)
}

/// SDM1 §13.8.2: compacted, RFBM components outside XCOMP_BV are initialized.
pub fn xrstor64_compacted_components_outside_xcomp_bv_initialized() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let i = Img::pattern(3, 31).compacted(3);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 32).0;
    ok(c)
}

/// SDM2 XRSTOR: compacted with an RFBM subset: only RFBM components change.
pub fn xrstor64_compacted_rfbm_subset() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let i = Img::pattern(pattern_mask(), 33).compacted(xcr0());
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 34).0;
    rfbm(&mut c, 0b101);
    ok(c)
}

/// SDM1 §13.9 and §13.8.3: XSAVEOPT after a compacted XRSTOR from the same
/// address: XRSTOR_INFO's format differs, no modified optimization.
pub fn xsaveopt64_after_compacted_xrstor_same_address() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let i = Img::pattern(pattern_mask(), 35).compacted(xcr0());
    ok(mk(
        pages(),
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.xsaveopt64(ptr(rdi))
        }),
    ))
}

/// XSAVEC then XRSTOR of what it wrote restores the same state (round trip).
pub fn xsavec64_then_xrstor64_roundtrip() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut c = mk(
        pages(),
        None,
        asm(|a| {
            a.xsavec64(ptr(rdi))?;
            a.fninit()?;
            a.xrstor64(ptr(rdi))
        }),
    );
    c.init = Img::pattern(pattern_mask(), 36).0;
    ok(c)
}

// ---------------------------------------------------------------- FXSAVE / FXRSTOR

/// SDM2 FXSAVE: the 64-bit form of the init state.
pub fn fxsave64_init_state() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxsave64(ptr(rdi))));
    fill(&mut c, 0xAA);
    ok(c)
}

/// SDM2 FXSAVE: the 32-bit form of a pattern state (FCS/FDS as the CPU writes them).
pub fn fxsave_32bit_form() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxsave(ptr(rdi))));
    let mut i = Img::pattern(pattern_mask(), 37);
    i.u32(8, 0x0bad_f00d)
        .u16(12, 0x23)
        .u32(16, 0x0123_4567)
        .u16(20, 0x2b);
    c.init = i.0;
    ok(c)
}

/// SDM2 FXSAVE: an area not 16-byte aligned is #GP(0).
pub fn fxsave64_misaligned_is_gp() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxsave64(ptr(rdi))));
    c.gprs[7] += 8;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 FXSAVE: 16-byte alignment is enough (64 is not needed).
pub fn fxsave64_16_byte_aligned() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxsave64(ptr(rdi))));
    c.gprs[7] += 16;
    c.init = Img::pattern(pattern_mask(), 38).0;
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM2 FXRSTOR: loads x87, MXCSR and XMM; XINUSE[0..1] after it.
pub fn fxrstor64_loads_x87_and_sse() -> Agreement {
    let i = Img::pattern(3, 39);
    ok(mk(1, Some(&i), asm(|a| a.fxrstor64(ptr(rdi)))))
}

/// SDM2 FXRSTOR: #GP(0) on MXCSR reserved bits.
pub fn fxrstor64_mxcsr_reserved_bit_is_gp() -> Agreement {
    let mut i = Img::pattern(3, 40);
    i.u32(24, 0x1F80 | 1 << 16);
    let c = mk(1, Some(&i), asm(|a| a.fxrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 FXRSTOR: the 32-bit form with FCS/FDS set, then FXSAVE (32-bit).
pub fn fxrstor_32bit_fcs_fds() -> Agreement {
    let mut i = Img::pattern(3, 41);
    i.u32(8, 0x1357_9bdf)
        .u16(12, 0x33)
        .u32(16, 0x2468_ace0)
        .u16(20, 0x2b)
        .u16(6, 0x123);
    let c = mk(
        2,
        Some(&i),
        asm(|a| {
            a.fxrstor(ptr(rdi))?;
            a.fxsave(ptr(rdi + 0x1000))
        }),
    );
    ok(c)
}

/// SDM2 FXRSTOR: a misaligned area is #GP(0).
pub fn fxrstor64_misaligned_is_gp() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxrstor64(ptr(rdi))));
    c.gprs[7] += 4;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

// ---------------------------------------------------------------- XGETBV

/// SDM2 XGETBV: ECX = 0 gives XCR0 in EDX:EAX (RAX/RDX bits 63:32 cleared).
pub fn xgetbv0_reads_xcr0() -> Agreement {
    let mut c = mk(
        1,
        None,
        asm(|a| {
            a.mov(ecx, 0)?;
            a.xgetbv()
        }),
    );
    c.gprs[0] = 0xFFFF_FFFF_FFFF_FFFF;
    c.gprs[2] = 0xFFFF_FFFF_FFFF_FFFF;
    with(c, move |o| {
        assert_eq!(o.gprs[0], xcr0() & 0xFFFF_FFFF);
        assert_eq!(o.gprs[2], xcr0() >> 32);
    })
}

/// SDM2 XGETBV: ECX = 1 gives XINUSE AND XCR0 (init state: 0).
pub fn xgetbv1_of_init_state() -> Agreement {
    if !model().xgetbv1 {
        return skip("no XGETBV1");
    }
    let c = mk(
        1,
        None,
        asm(|a| {
            a.mov(ecx, 1)?;
            a.xgetbv()
        }),
    );
    with(c, |o| assert_eq!((o.gprs[0], o.gprs[2]), (0, 0)))
}

/// SDM2 XGETBV: ECX = 1 after a pattern state: every loaded component in use.
pub fn xgetbv1_of_pattern_state() -> Agreement {
    if !model().xgetbv1 {
        return skip("no XGETBV1");
    }
    let mut c = mk(
        1,
        None,
        asm(|a| {
            a.mov(ecx, 1)?;
            a.xgetbv()
        }),
    );
    c.init = Img::pattern(pattern_mask(), 42).0;
    ok(c)
}

/// SDM1 §13.6: XGETBV(1) bit 1 is set when MXCSR != 1F80H even with SSE in init.
pub fn xgetbv1_mxcsr_not_default_sets_bit1() -> Agreement {
    if !model().xgetbv1 {
        return skip("no XGETBV1");
    }
    let mut c = mk(
        1,
        None,
        asm(|a| {
            a.ldmxcsr(dword_ptr(rdi))?;
            a.mov(ecx, 1)?;
            a.xgetbv()
        }),
    );
    c.memory.bytes[0..4].copy_from_slice(&0x1FC0u32.to_le_bytes());
    with(c, |o| assert_eq!(o.gprs[0] & 2, 2))
}

/// SDM2 XGETBV: ECX = 2 is #GP(0).
pub fn xgetbv_ecx2_is_gp() -> Agreement {
    let c = mk(
        1,
        None,
        asm(|a| {
            a.mov(ecx, 2)?;
            a.xgetbv()
        }),
    );
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 1)))
}

/// SDM2 XGETBV: RCX[63:32] is ignored.
pub fn xgetbv_ignores_rcx_high_half() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.xgetbv()));
    c.gprs[1] = 0xFFFF_FFFF_0000_0000;
    with(c, |o| assert_eq!(o.fault, None))
}

// ---------------------------------------------------------------- prefixes, CPL

/// SDM2 XSAVE exceptions: LOCK prefix is #UD.
pub fn lock_xsave64_is_ud() -> Agreement {
    let mut code = vec![0xF0];
    code.extend(asm(|a| a.xsave64(ptr(rdi))));
    let c = mk(pages(), None, code);
    with(c, |o| assert_eq!(o.fault, at(Fault::Ud, 0)))
}

/// SDM2 XRSTOR exceptions: LOCK prefix is #UD.
pub fn lock_xrstor64_is_ud() -> Agreement {
    let mut code = vec![0xF0];
    code.extend(asm(|a| a.xrstor64(ptr(rdi))));
    let c = mk(pages(), None, code);
    with(c, |o| assert_eq!(o.fault, at(Fault::Ud, 0)))
}

/// SDM2 FXSAVE exceptions: LOCK prefix is #UD.
pub fn lock_fxsave64_is_ud() -> Agreement {
    let mut code = vec![0xF0];
    code.extend(asm(|a| a.fxsave64(ptr(rdi))));
    let c = mk(1, None, code);
    with(c, |o| assert_eq!(o.fault, at(Fault::Ud, 0)))
}

/// SDM2 opcode map: XSAVE is NP 0F AE /4; with a 66 prefix the encoding is not
/// XSAVE (#UD on this silicon and in iced's decoder alike).
pub fn xsave64_with_66_prefix() -> Agreement {
    let mut code = vec![0x66];
    code.extend(asm(|a| a.xsave64(ptr(rdi))));
    ok(mk(pages(), None, code))
}

/// SDM2 opcode map: XRSTOR is NP 0F AE /5; with F3 it is not XRSTOR.
pub fn xrstor64_with_f3_prefix() -> Agreement {
    let mut code = vec![0xF3];
    code.extend(asm(|a| a.xrstor64(ptr(rdi))));
    ok(mk(pages(), None, code))
}

/// SDM2 XSAVEC: NP 0F C7 /4; with 66 it is not XSAVEC.
pub fn xsavec64_with_66_prefix() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut code = vec![0x66];
    code.extend(asm(|a| a.xsavec64(ptr(rdi))));
    ok(mk(pages(), None, code))
}

/// SDM2 XSAVES: #GP(0) at CPL > 0.
pub fn xsaves64_at_cpl3_is_gp() -> Agreement {
    if !model().xsaves {
        return skip("no XSAVES");
    }
    let c = mk(pages(), None, asm(|a| a.xsaves64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XRSTORS: #GP(0) at CPL > 0.
pub fn xrstors64_at_cpl3_is_gp() -> Agreement {
    if !model().xsaves {
        return skip("no XSAVES");
    }
    let i = Img::init().compacted(xcr0());
    let c = mk(pages(), Some(&i), asm(|a| a.xrstors64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

// ---------------------------------------------------------------- page faults, alignment checking

/// SDM2 XSAVE: an area running into a read-only page is #PF (W = 1, P = 1).
pub fn xsave64_straddles_into_read_only_page() -> Agreement {
    let p = pages();
    let mut c = mk(p, None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 43).0;
    c.memory.prot[1] = Prot::Read;
    c.gprs[7] = ARENA_BASE + 0xF00;
    ok(c)
}

/// SDM2 XSAVE: an area running into an absent page is #PF (P = 0).
pub fn xsave64_straddles_into_absent_page() -> Agreement {
    let mut c = mk(2, None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 44).0;
    c.memory.prot[1] = Prot::None;
    c.gprs[7] = ARENA_BASE + 0xF00;
    ok(c)
}

/// SDM2 XSAVE: with only x87 and SSE (RFBM = 3) the 576 bytes straddle a page
/// boundary into a read-only page.
pub fn xsave64_rfbm3_straddles_into_read_only_page() -> Agreement {
    let mut c = mk(2, None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 45).0;
    c.memory.prot[1] = Prot::Read;
    c.gprs[7] = ARENA_BASE + 0xE00;
    rfbm(&mut c, 3);
    ok(c)
}

/// SDM2 XRSTOR: an area whose components lie on an absent page is #PF (read).
pub fn xrstor64_straddles_into_absent_page() -> Agreement {
    let i = Img::pattern(pattern_mask(), 46);
    let mut c = mk(2, None, asm(|a| a.xrstor64(ptr(rdi))));
    c.memory.bytes[0xF00..0x1000].copy_from_slice(&i.0[..0x100]);
    c.memory.prot[1] = Prot::None;
    c.gprs[7] = ARENA_BASE + 0xF00;
    ok(c)
}

/// Silicon: with the header's page absent, XRSTOR's #PF reports CR2 = base + 520
/// on Intel (XCOMP_BV is read first: quirk xrstor-header-xcomp-first), base + 512
/// on Zen 5.
pub fn xrstor_header_page_absent_pf_at_xcomp_bv() -> Agreement {
    let mut c = mk(2, None, asm(|a| a.xrstor64(ptr(rdi))));
    c.memory.bytes[0xE00..0xE02].copy_from_slice(&0x037Fu16.to_le_bytes());
    c.memory.prot[1] = Prot::None;
    c.gprs[7] = ARENA_BASE + 0xE00;
    let first = if host_quirks().xrstor_header_xcomp_first {
        0x1008
    } else {
        0x1000
    };
    with(c, move |o| {
        assert_eq!(
            o.fault,
            at(
                Fault::Pf {
                    err: 4,
                    addr: ARENA_BASE + first
                },
                0
            )
        )
    })
}

/// SDM2 XRSTOR: the whole area on a read-only page is fine (XRSTOR only reads).
pub fn xrstor64_from_read_only_pages() -> Agreement {
    let i = Img::pattern(pattern_mask(), 47);
    let mut c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    for p in c.memory.prot.iter_mut() {
        *p = Prot::Read;
    }
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM2 XSAVEC: the compacted area running into a read-only page.
pub fn xsavec64_straddles_into_read_only_page() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 48).0;
    c.memory.prot[1] = Prot::Read;
    c.gprs[7] = ARENA_BASE + 0xC00;
    ok(c)
}

/// SDM2 FXSAVE: the 512 bytes straddle into an absent page.
pub fn fxsave64_straddles_into_absent_page() -> Agreement {
    let mut c = mk(2, None, asm(|a| a.fxsave64(ptr(rdi))));
    c.memory.prot[1] = Prot::None;
    c.gprs[7] = ARENA_BASE + 0xF00;
    ok(c)
}

/// SDM2 XSAVEOPT: the init optimization leaves nothing to write on the read-only
/// page but the header and MXCSR: does the #PF still come?
pub fn xsaveopt64_init_state_on_read_only_page() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsaveopt64(ptr(rdi))));
    for p in c.memory.prot.iter_mut() {
        *p = Prot::Read;
    }
    ok(c)
}

/// SDM1 §13.7 footnote: with alignment checking on (CR0.AM, CPL 3, EFLAGS.AC) a
/// misaligned XSAVE area is #AC or #GP.
pub fn xsave64_misaligned_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 8;
    ok(c)
}

/// SDM2 FXSAVE: misaligned with alignment checking on.
pub fn fxsave64_misaligned_with_alignment_check() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.fxsave64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 8;
    ok(c)
}

/// SDM2 XSAVE #AC note ("the width of the alignment check may vary"): XSAVE64
/// misaligned by 2 with alignment checking on.
pub fn xsave64_misaligned_by_2_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 2;
    ok(c)
}

/// As above, misaligned by 6 (bits 1:0 = 10b).
pub fn xsave64_misaligned_by_6_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 6;
    ok(c)
}

/// As above, XRSTOR64 misaligned by 1 and by 4.
pub fn xrstor64_misaligned_by_1_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xrstor64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 1;
    ok(c)
}

pub fn xrstor64_misaligned_by_4_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xrstor64(ptr(rdi))));
    c.control.eflags_ac = true;
    c.gprs[7] += 4;
    ok(c)
}

/// Alignment checking on, aligned XSAVE: no fault.
pub fn xsave64_aligned_with_alignment_check() -> Agreement {
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.control.eflags_ac = true;
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM2 XSAVE: a non-canonical area (bit 47 set, 48-bit paging) is #GP(0).
pub fn xsave64_non_canonical_is_gp() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.xsave64(ptr(rdi))));
    c.gprs[7] = 0x8000_0000_0000_0000;
    with(c, |o| assert_eq!(o.fault, at(Fault::Gp(0), 0)))
}

/// SDM2 XSAVE: a non-canonical area addressed through RSP is #SS(0).
pub fn xsave64_non_canonical_via_rsp_is_ss() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.xsave64(ptr(rsp))));
    c.gprs[4] = 0x8000_0000_0000_0000;
    with(c, |o| assert_eq!(o.fault, at(Fault::Ss, 0)))
}

/// Paging mode: an address canonical only with 5-level paging (bit 47 set,
/// 63:48 clear) is #GP(0) with 4-level paging and #PF (absent) with 5-level.
pub fn mov_from_address_canonical_only_with_la57() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.mov(rax, qword_ptr(rsi))));
    c.gprs[6] = 1 << 47;
    let la57 = model().os_la57;
    println!("host paging: {}-level", if la57 { 5 } else { 4 });
    with(c, move |o| {
        let want = if la57 {
            Fault::Pf {
                err: 4,
                addr: 1 << 47,
            }
        } else {
            Fault::Gp(0)
        };
        assert_eq!(o.fault, at(want, 0));
    })
}

/// As above for XSAVE64's area.
pub fn xsave64_address_canonical_only_with_la57() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.xsave64(ptr(rdi))));
    c.gprs[7] = 1 << 47;
    ok(c)
}

// ---------------------------------------------------------------- x87 pointers, FSW

/// Silicon: FIP/FDP/FOP after XRSTOR64 of non-zero values, read back by the
/// capture (Intel: FIP canonical to 57 bits; AMD: see the model's quirks).
pub fn xrstor64_fip_fdp_fop() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 49);
    i.u64(8, 0x1234_5678_9abc_def0)
        .u64(16, 0x0fed_cba9_8765_4321)
        .u16(6, 0x7ff);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// Silicon: FIP with bit 56 set and bits 63:57 clear (canonicalisation).
pub fn xrstor64_fip_bit56() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 50);
    i.u64(8, 0x0100_0000_0000_1000)
        .u64(16, 0x0100_0000_0000_2000)
        .u16(6, 0x1);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// Silicon: the 32-bit XRSTOR then 32-bit XSAVE: FCS/FDS (deprecated on Intel).
pub fn xrstor_then_xsave_32bit_fcs_fds() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 51);
    i.u32(8, 0x1111_2222)
        .u16(12, 0x33)
        .u32(16, 0x3333_4444)
        .u16(20, 0x2b)
        .u16(6, 0x55);
    let p = std_size().div_ceil(4096);
    let mut c = mk(
        2 * p,
        Some(&i),
        asm(|a| {
            a.xrstor(ptr(rdi))?;
            a.xsave(ptr(rsi))
        }),
    );
    c.gprs[6] = ARENA_BASE + p as u64 * 4096;
    ok(c)
}

/// Silicon: XRSTOR recomputes FSW.ES and FSW.B (Intel) from the unmasked
/// exception bits: FSW = 0001H (IE) with FCW = 037EH (IE unmasked).
pub fn xrstor64_fsw_es_with_unmasked_exception() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 52);
    i.u16(0, 0x037E).u16(2, 0x0001);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// Silicon: FSW.ES and FSW.B set in the image but no unmasked exception.
pub fn xrstor64_fsw_es_without_unmasked_exception() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 53);
    i.u16(0, 0x037F).u16(2, 0x8081);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// Silicon: FXRSTOR's FSW.ES/B handling, same input as the XRSTOR case.
pub fn fxrstor64_fsw_es_with_unmasked_exception() -> Agreement {
    let mut i = Img::pattern(3, 54);
    i.u16(0, 0x037E).u16(2, 0x4001);
    ok(mk(1, Some(&i), asm(|a| a.fxrstor64(ptr(rdi)))))
}

/// Silicon: FNINIT between XRSTOR and the capture (FIP/FDP/FOP cleared, x87 in use).
pub fn fninit_after_xrstor() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 55);
    i.u64(8, 0x4000).u64(16, 0x5000).u16(6, 0x77);
    ok(mk(
        pages(),
        Some(&i),
        asm(|a| {
            a.xrstor64(ptr(rdi))?;
            a.fninit()
        }),
    ))
}

// ---------------------------------------------------------------- MXCSR

/// SDM1 §10.2.3: MXCSR with every exception unmasked, FTZ, DAZ and RC = 11 is
/// loaded by XRSTOR and reported by the capture.
pub fn xrstor64_mxcsr_unmasked_ftz_daz() -> Agreement {
    let mut i = Img::pattern(pattern_mask(), 56);
    i.u32(24, 0xE040);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// SDM2 LDMXCSR then XSAVE64: MXCSR changed by an SSE instruction.
pub fn ldmxcsr_then_xsave64() -> Agreement {
    let mut c = mk(
        pages() + 1,
        None,
        asm(|a| {
            a.ldmxcsr(dword_ptr(rsi))?;
            a.xsave64(ptr(rdi))
        }),
    );
    let off = pages() * 4096;
    c.memory.bytes[off..off + 4].copy_from_slice(&0x9FC0u32.to_le_bytes());
    c.gprs[6] = ARENA_BASE + off as u64;
    ok(c)
}

/// Silicon: LDMXCSR puts SSE in use even when it loads 1F80H (XSAVE64 then
/// writes XSTATE_BV[1] = 1).
pub fn ldmxcsr_default_puts_sse_in_use() -> Agreement {
    let mut c = mk(
        pages() + 1,
        None,
        asm(|a| {
            a.ldmxcsr(dword_ptr(rsi))?;
            a.xsave64(ptr(rdi))
        }),
    );
    let off = pages() * 4096;
    c.memory.bytes[off..off + 4].copy_from_slice(&0x1F80u32.to_le_bytes());
    c.gprs[6] = ARENA_BASE + off as u64;
    ok(c)
}

/// SDM2 LDMXCSR: a reserved bit is #GP(0).
pub fn ldmxcsr_reserved_bit_is_gp() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.ldmxcsr(dword_ptr(rdi))));
    c.memory.bytes[0..4].copy_from_slice(&0x0001_1F80u32.to_le_bytes());
    ok(c)
}

// ---------------------------------------------------------------- helpers changing state

/// SDM1 §13.6: VZEROUPPER puts AVX (and ZMM_Hi256) in init configuration.
pub fn vzeroupper_then_xsave64() -> Agreement {
    if xcr0() & 4 == 0 {
        return skip("no AVX in XCR0");
    }
    let mut c = mk(
        pages(),
        None,
        asm(|a| {
            a.vzeroupper()?;
            a.xsave64(ptr(rdi))
        }),
    );
    c.init = Img::pattern(pattern_mask(), 57).0;
    ok(c)
}

/// SDM1 §13.6: MOVQ XMM, r64 puts SSE in use; then XSAVEC.
pub fn movq_xmm_then_xsavec64() -> Agreement {
    if !model().xsavec {
        return skip("no XSAVEC");
    }
    let c = mk(
        pages(),
        None,
        asm(|a| {
            a.mov(rax, 0x0123_4567_89ab_cdefu64)?;
            a.movq(xmm5, rax)?;
            a.mov(eax, -1i32)?;
            a.xsavec64(ptr(rdi))
        }),
    );
    ok(c)
}

/// SDM1 §13.6: KMOVQ puts opmask in use; then XSAVEOPT.
pub fn kmovq_then_xsaveopt64() -> Agreement {
    if xcr0() & 0xE0 != 0xE0 {
        return skip("no AVX-512 state in XCR0");
    }
    let c = mk(
        pages(),
        None,
        asm(|a| {
            a.mov(rax, 0xF0F0u64)?;
            a.kmovq(k3, rax)?;
            a.mov(eax, -1i32)?;
            a.xsaveopt64(ptr(rdi))
        }),
    );
    ok(c)
}

/// SDM1 §13.6: PXOR of a register with itself gives zero but SSE stays in use.
pub fn pxor_self_keeps_sse_in_use() -> Agreement {
    let mut c = mk(
        pages(),
        None,
        asm(|a| {
            a.pxor(xmm1, xmm1)?;
            a.xsave64(ptr(rdi))
        }),
    );
    c.init = Img::pattern(pattern_mask(), 58).0;
    ok(c)
}

// ---------------------------------------------------------------- AMX and XFD

fn tiledata_armed() -> bool {
    armed() & (1 << 18) != 0
}

/// SDM1 §13.14: XRSTOR with RFBM[18] = XSTATE_BV[18] = 1 on an armed TILEDATA is
/// #NM (Linux: SIGILL with a stale trapno).
pub fn xrstor64_tiledata_xfd_armed_is_nm() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let mut i = Img::init();
    i.bv(1 << 18);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Nm, 0)))
}

/// SDM1 §13.14: XRSTOR with XSTATE_BV[18] = 0 on an armed TILEDATA initializes
/// it without a fault.
pub fn xrstor64_tiledata_bv0_xfd_armed_no_fault() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let i = Img::pattern(pattern_mask(), 59);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, None))
}

/// SDM1 §13.14: XSAVE with RFBM[18] = 1 on an armed TILEDATA writes its initial
/// configuration (zeros) and XSTATE_BV[18] = 0.
pub fn xsave64_tiledata_xfd_armed_writes_init() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    fill(&mut c, 0xAB);
    c.memory.bytes[512..576].fill(0);
    c.memory.bytes[512..520].copy_from_slice(&(1u64 << 18).to_le_bytes());
    let off = model().component(18).unwrap().offset as usize;
    with(c, move |o| {
        assert_eq!(o.memory[off], 0);
        assert_eq!(u64at(&o.memory, 512) & (1 << 18), 0);
    })
}

/// SDM1 §13.14: XSAVEOPT skips an armed TILEDATA (the area keeps its bytes).
pub fn xsaveopt64_tiledata_xfd_armed_untouched() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsaveopt64(ptr(rdi))));
    fill(&mut c, 0xAB);
    c.memory.bytes[512..576].fill(0);
    let off = model().component(18).unwrap().offset as usize;
    with(c, move |o| assert_eq!(o.memory[off], 0xAB))
}

/// SDM1 §13.14: XSAVEC skips an armed TILEDATA.
pub fn xsavec64_tiledata_xfd_armed_skipped() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsavec64(ptr(rdi))));
    fill(&mut c, 0xAB);
    ok(c)
}

/// SDM1 §13.14: TILECFG is not XFD-armed: XRSTOR with XSTATE_BV[17] = 1 (zero
/// palette) loads it; XINUSE[17] after it.
pub fn xrstor64_tilecfg_in_use_with_zero_palette() -> Agreement {
    if xcr0() & (1 << 17) == 0 {
        return skip("no TILECFG in XCR0");
    }
    let mut i = Img::init();
    i.bv(1 << 17);
    ok(mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi)))))
}

/// SDM1 §13.14: compacted XRSTOR of an armed TILEDATA is #NM too.
pub fn xrstor64_compacted_tiledata_xfd_armed_is_nm() -> Agreement {
    if !tiledata_armed() {
        return skip("TILEDATA is not XFD-armed here");
    }
    let mut i = Img::init().compacted(xcr0());
    i.bv(1 << 18);
    let c = mk(pages(), Some(&i), asm(|a| a.xrstor64(ptr(rdi))));
    with(c, |o| assert_eq!(o.fault, at(Fault::Nm, 0)))
}

// ---------------------------------------------------------------- the runner's own XRSTOR

/// The initial image's XSTATE_BV outside XCR0 makes the runner's own XRSTOR
/// #GP(0): a fault with no instruction.
pub fn initial_image_bad_header_faults_in_runner_xrstor() -> Agreement {
    let mut c = mk(1, None, asm(|a| a.nop()));
    c.set_init_xstate_bv(1 << 3);
    with(c, |o| {
        assert_eq!(
            o.fault,
            Some(FaultAt {
                fault: Fault::Gp(0),
                insn: None
            })
        )
    })
}

/// The initial image may be compacted at CPL 3 (XRSTOR64's compacted form).
pub fn initial_image_compacted() -> Agreement {
    if !compacted_ok() {
        return skip("no compaction");
    }
    let mut c = mk(pages(), None, asm(|a| a.xsave64(ptr(rdi))));
    c.init = Img::pattern(pattern_mask(), 60).compacted(xcr0()).0;
    ok(c)
}

/// Every case, by name (the agreement tests and the repeatability test).
#[macro_export]
macro_rules! all_case_names {
    ($m:ident) => {
        $m!(
            xsave64_init_state_writes_every_component,
            xsave_32bit_form_of_pattern_state,
            xsave64_misaligned_is_gp,
            xsave64_rfbm_x87_only,
            xsave64_rfbm_sse_only,
            xsave64_rfbm_avx_only_saves_mxcsr,
            xsave64_rfbm_zero_writes_nothing,
            xsave64_leaves_xcomp_bv_and_reserved_bytes,
            xsave64_in_use_component_with_init_values,
            xsave64_pattern_state,
            xsaveopt64_init_optimization_skips_init_components,
            xsaveopt_32bit_form,
            xsaveopt64_after_xrstor_same_address_unmodified,
            xsaveopt64_after_xrstor_same_address_with_write_between,
            xsaveopt64_after_xrstor_other_address,
            xsaveopt64_after_initial_xrstor,
            xsaveopt64_ldmxcsr_between_marks_sse_modified,
            xsaveopt64_init_optimization_only_x87_in_use,
            xsaveopt64_init_optimization_only_sse_in_use,
            xsaveopt64_init_optimization_only_avx_in_use,
            xsaveopt64_init_optimization_only_opmask_in_use,
            xsaveopt64_init_optimization_only_zmm_hi256_in_use,
            xsaveopt64_init_optimization_only_hi16_zmm_in_use,
            xsavec64_init_optimization_only_x87_in_use,
            xsavec64_init_optimization_only_avx_in_use,
            xsavec64_init_optimization_only_opmask_in_use,
            xsavec64_init_optimization_only_hi16_zmm_in_use,
            xsave64_only_zmm_hi256_in_use,
            xsavec64_init_state,
            xsavec_32bit_form,
            xsavec64_mxcsr_not_default_saves_sse,
            xsavec64_rfbm_subset_layout,
            xsavec64_misaligned_is_gp,
            xsavec64_pattern_state,
            xrstor64_loads_every_component,
            xrstor_32bit_form,
            xrstor64_xstate_bv_zero_initializes,
            xrstor64_rfbm_subset_leaves_other_components,
            xrstor64_xstate_bv_outside_xcr0_is_gp,
            xrstor64_xstate_bv_bit63_is_gp,
            xrstor64_xcomp_bv_nonzero_standard_is_gp,
            xrstor64_header_bytes_16_23_nonzero_is_gp,
            xrstor64_header_bytes_24_63_not_checked,
            xrstor64_mxcsr_reserved_bit_is_gp,
            xrstor64_mxcsr_reserved_bit_ignored_without_sse_avx,
            xrstor64_sse_init_loads_mxcsr,
            xrstor64_sse_in_use_with_zero_xmm,
            xrstor64_misaligned_is_gp,
            xrstor64_avx_in_use_with_zero_values,
            xrstor64_compacted_loads,
            xrstor_compacted_32bit_form,
            xrstor64_compacted_xcomp_bv_outside_xcr0_is_gp,
            xrstor64_compacted_xstate_bv_not_subset_is_gp,
            xrstor64_compacted_header_bytes_16_63_nonzero_is_gp,
            xrstor64_compacted_mxcsr_reserved_bit_is_gp,
            xrstor64_compacted_sse_init_sets_mxcsr_default,
            xrstor64_compacted_components_outside_xcomp_bv_initialized,
            xrstor64_compacted_rfbm_subset,
            xsaveopt64_after_compacted_xrstor_same_address,
            xsavec64_then_xrstor64_roundtrip,
            fxsave64_init_state,
            fxsave_32bit_form,
            fxsave64_misaligned_is_gp,
            fxsave64_16_byte_aligned,
            fxrstor64_loads_x87_and_sse,
            fxrstor64_mxcsr_reserved_bit_is_gp,
            fxrstor_32bit_fcs_fds,
            fxrstor64_misaligned_is_gp,
            xgetbv0_reads_xcr0,
            xgetbv1_of_init_state,
            xgetbv1_of_pattern_state,
            xgetbv1_mxcsr_not_default_sets_bit1,
            xgetbv_ecx2_is_gp,
            xgetbv_ignores_rcx_high_half,
            lock_xsave64_is_ud,
            lock_xrstor64_is_ud,
            lock_fxsave64_is_ud,
            xsave64_with_66_prefix,
            xrstor64_with_f3_prefix,
            xsavec64_with_66_prefix,
            xsaves64_at_cpl3_is_gp,
            xrstors64_at_cpl3_is_gp,
            xsave64_straddles_into_read_only_page,
            xsave64_straddles_into_absent_page,
            xsave64_rfbm3_straddles_into_read_only_page,
            xrstor64_straddles_into_absent_page,
            xrstor64_from_read_only_pages,
            xsavec64_straddles_into_read_only_page,
            fxsave64_straddles_into_absent_page,
            xsaveopt64_init_state_on_read_only_page,
            xsave64_misaligned_with_alignment_check,
            fxsave64_misaligned_with_alignment_check,
            xsave64_aligned_with_alignment_check,
            xsave64_non_canonical_is_gp,
            xsave64_non_canonical_via_rsp_is_ss,
            mov_from_address_canonical_only_with_la57,
            xsave64_address_canonical_only_with_la57,
            xrstor64_fip_fdp_fop,
            xrstor64_fip_bit56,
            xrstor_then_xsave_32bit_fcs_fds,
            xrstor64_fsw_es_with_unmasked_exception,
            xrstor64_fsw_es_without_unmasked_exception,
            fxrstor64_fsw_es_with_unmasked_exception,
            fninit_after_xrstor,
            xrstor64_mxcsr_unmasked_ftz_daz,
            ldmxcsr_then_xsave64,
            ldmxcsr_reserved_bit_is_gp,
            ldmxcsr_default_puts_sse_in_use,
            xsave64_misaligned_by_2_with_alignment_check,
            xsave64_misaligned_by_6_with_alignment_check,
            xrstor64_misaligned_by_1_with_alignment_check,
            xrstor64_misaligned_by_4_with_alignment_check,
            xrstor_header_page_absent_pf_at_xcomp_bv,
            vzeroupper_then_xsave64,
            movq_xmm_then_xsavec64,
            kmovq_then_xsaveopt64,
            pxor_self_keeps_sse_in_use,
            xrstor64_tiledata_xfd_armed_is_nm,
            xrstor64_tiledata_bv0_xfd_armed_no_fault,
            xsave64_tiledata_xfd_armed_writes_init,
            xsaveopt64_tiledata_xfd_armed_untouched,
            xsavec64_tiledata_xfd_armed_skipped,
            xrstor64_tilecfg_in_use_with_zero_palette,
            xrstor64_compacted_tiledata_xfd_armed_is_nm,
            initial_image_bad_header_faults_in_runner_xrstor,
            initial_image_compacted,
        );
    };
}
