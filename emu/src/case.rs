//! A case: what one run starts from. The runner (native or emulated) loads the
//! initial image with XRSTOR (XRSTORS for a compacted image at CPL 0) and RFBM =
//! all ones, loads the GPRs, runs the code, then captures the final state with
//! XSAVE64 (RFBM = all ones, over a zeroed area) and XGETBV(1).

use crate::control::Control;
use crate::layout;
use crate::memory::Memory;
use crate::model::CpuModel;
use crate::state::{FCW_INIT, MXCSR_INIT};

/// Linear address of the case's code.
pub const CODE_BASE: u64 = 0x10_0000_0000;
/// Linear address of the case's arena.
pub const ARENA_BASE: u64 = 0x20_0000_0000;
/// Linear address of the runner's initial image (XRSTOR_INFO records it).
pub const INIT_BASE: u64 = 0x30_0000_0000;
/// Largest arena, in pages.
pub const MAX_ARENA_PAGES: usize = 16;
/// Largest code, in bytes.
pub const MAX_CODE: usize = 256;

/// GPR order: the x86 register numbers.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub control: Control,
    /// The initial XSAVE image: standard format (XCOMP_BV = 0), or compacted.
    pub init: Vec<u8>,
    /// The arena before the code runs.
    pub memory: Memory,
    /// Instruction bytes, run from [`CODE_BASE`].
    pub code: Vec<u8>,
    pub gprs: [u64; 16],
}

impl Case {
    /// A case with everything in its init configuration: a standard-format
    /// image for the control's XCR0 holding FCW = 037FH and MXCSR = 1F80H with
    /// XSTATE_BV = 0, one zeroed read-write page, no code, zero GPRs.
    pub fn new(model: &CpuModel, control: Control) -> Case {
        let size =
            layout::standard(model, crate::Xfeatures::from_bits_retain(control.xcr0)).size as usize;
        let mut init = vec![0u8; size];
        init[0..2].copy_from_slice(&FCW_INIT.to_le_bytes());
        init[24..28].copy_from_slice(&MXCSR_INIT.to_le_bytes());
        Case {
            control,
            init,
            memory: Memory::new(ARENA_BASE, 1),
            code: Vec::new(),
            gprs: [0; 16],
        }
    }

    /// XSTATE_BV of the initial image (0 if the image is too short to hold it).
    pub fn init_xstate_bv(&self) -> u64 {
        qword(&self.init, 512)
    }
    /// Sets XSTATE_BV of the initial image (the image grows to 576 bytes if shorter).
    pub fn set_init_xstate_bv(&mut self, bv: u64) {
        if self.init.len() < 576 {
            self.init.resize(576, 0);
        }
        self.init[512..520].copy_from_slice(&bv.to_le_bytes());
    }
    /// XCOMP_BV of the initial image (0 if the image is too short to hold it).
    pub fn init_xcomp_bv(&self) -> u64 {
        qword(&self.init, 520)
    }
}

fn qword(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
