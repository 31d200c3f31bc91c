//! Shared scaffolding for the rule tests: a case on a named built-in model with a
//! 4-page read-write arena, the XSAVE area B at the arena's start (RBX = B), code
//! assembled with iced-x86's code assembler, and accessors for image fields.
#![allow(dead_code)]

use iced_x86::code_asm::{CodeAssembler, IcedError};
use xsave_emu::case::{ARENA_BASE, CODE_BASE};
use xsave_emu::{Case, Control, CpuModel, Fault, Memory, Outcome, Prot};

/// The area's address: the arena's first byte, 64-byte aligned.
pub const B: u64 = ARENA_BASE;
pub const PAGES: usize = 4;

pub struct T {
    pub model: CpuModel,
    pub case: Case,
}

impl T {
    /// A ring-3 case (Linux's control state for the model: its XCR0, IA32_XSS and
    /// IA32_XFD), with XFD disarmed unless a test arms it.
    pub fn user(model: &str) -> T {
        let model = CpuModel::builtin(model).expect("built-in model");
        let mut ctl = Control::user(&model);
        ctl.xfd = 0;
        T::with(model, ctl)
    }
    /// The same at CPL 0.
    pub fn kernel(model: &str) -> T {
        let model = CpuModel::builtin(model).expect("built-in model");
        let mut ctl = Control::kernel(&model);
        ctl.xfd = 0;
        T::with(model, ctl)
    }
    pub fn with(model: CpuModel, ctl: Control) -> T {
        let mut case = Case::new(&model, ctl);
        case.memory = Memory::new(ARENA_BASE, PAGES);
        case.gprs[3] = B;
        T { model, case }
    }
    pub fn ctl(&mut self) -> &mut Control {
        &mut self.case.control
    }
    /// EDX:EAX.
    pub fn rfbm(&mut self, v: u64) -> &mut Self {
        self.case.gprs[0] = v & 0xFFFF_FFFF;
        self.case.gprs[2] = v >> 32;
        self
    }
    pub fn code(
        &mut self,
        f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    ) -> &mut Self {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        self.case.code = a.assemble(CODE_BASE).unwrap();
        self
    }
    pub fn bytes(&mut self, code: &[u8]) -> &mut Self {
        self.case.code = code.to_vec();
        self
    }
    /// Arena bytes at B + off.
    pub fn put(&mut self, off: usize, data: &[u8]) -> &mut Self {
        self.case.memory.bytes[off..off + data.len()].copy_from_slice(data);
        self
    }
    pub fn put_u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.put(off, &v.to_le_bytes())
    }
    pub fn fill(&mut self, v: u8) -> &mut Self {
        self.case.memory.bytes.fill(v);
        self
    }
    pub fn prot(&mut self, page: usize, p: Prot) -> &mut Self {
        self.case.memory.prot[page] = p;
        self
    }
    /// Initial image bytes (standard format unless a test writes XCOMP_BV).
    pub fn init(&mut self, off: usize, data: &[u8]) -> &mut Self {
        self.case.init[off..off + data.len()].copy_from_slice(data);
        self
    }
    pub fn init_u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.init(off, &v.to_le_bytes())
    }
    pub fn init_bv(&mut self, bv: u64) -> &mut Self {
        self.case.set_init_xstate_bv(bv);
        self
    }
    pub fn predict(&self) -> Outcome {
        let o = xsave_emu::predict(&self.model, &self.case).expect("supported case");
        // Every prediction lies inside the envelope.
        let j = xsave_emu::check(&self.model, &self.case, &o).expect("supported case");
        assert!(j.inside(), "prediction outside the envelope: {j}");
        o
    }
    pub fn fault(&self) -> Option<Fault> {
        self.predict().fault.map(|f| f.fault)
    }
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
/// Arena bytes after the case, at B + off.
pub fn mem(o: &Outcome, off: usize, len: usize) -> &[u8] {
    &o.memory[off..off + len]
}
/// A 16-byte pattern distinct per `seed`.
pub fn pat(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| seed.wrapping_mul(31).wrapping_add(k as u8).wrapping_mul(7) | 1)
        .collect()
}
