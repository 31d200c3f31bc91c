//! The guest's physical memory map and the records the image shares with its
//! hosts. Everything lives below 0x98000 so that a BIOS can load it from disk
//! in real mode; the case's linear addresses (CODE_BASE, ARENA_BASE, INIT_BASE)
//! are mapped onto fixed physical pages by 4 KiB page tables.

/// Physical address where the loaded image starts (disk sector 1 onwards).
pub const LOAD: u64 = 0x8000;
/// Real-mode stage: enters long mode.
pub const STAGE16: u64 = 0x8000;
/// 64-bit entry point (KVM starts here with long mode already on).
pub const ENTRY64: u64 = 0x8100;
/// Highest address of the 64-bit code.
pub const CODE_END: u64 = 0x10000;

/// GDT (selectors below), the TSS at +0x100, GDTR at +0x80, IDTR at +0x90.
pub const GDT: u64 = 0x10000;
pub const GDTR: u64 = GDT + 0x80;
pub const IDTR: u64 = GDT + 0x90;
pub const TSS: u64 = GDT + 0x100;
pub const GDT_LIMIT: u16 = 0x37;
pub const IDT: u64 = 0x11000;

pub const SEL_KCODE: u16 = 0x08;
pub const SEL_KDATA: u16 = 0x10;
pub const SEL_UDATA: u16 = 0x18;
pub const SEL_UCODE: u16 = 0x20;
pub const SEL_TSS: u16 = 0x28;

/// End of the identity map of low linear addresses (2 MiB pages) the image
/// runs in: a case access below it reaches the image instead of faulting.
pub const IMAGE_MAP_END: u64 = 1 << 30;

/// Paging structures.
pub const PML4: u64 = 0x12000;
pub const PDPT: u64 = 0x13000;
pub const PD_LOW: u64 = 0x14000;
pub const PD_CODE: u64 = 0x15000;
pub const PT_CODE: u64 = 0x16000;
pub const PD_ARENA: u64 = 0x17000;
pub const PT_ARENA: u64 = 0x18000;
pub const PD_INIT: u64 = 0x19000;
pub const PT_INIT: u64 = 0x1A000;

/// Kernel variables, the result record and the information record.
pub const HDR: u64 = 0x1B000;
/// Physical page behind CODE_BASE.
pub const CODE_PHYS: u64 = 0x1C000;
/// Physical pages behind INIT_BASE.
pub const INIT_PHYS: u64 = 0x1D000;
pub const INIT_PAGES: usize = 4;
/// Physical pages behind ARENA_BASE.
pub const ARENA_PHYS: u64 = 0x21000;
pub const ARENA_PAGES: usize = xsave_emu::case::MAX_ARENA_PAGES;
/// The reset images: compacted (XRSTORS) and standard (XRSTOR), XSTATE_BV = 0.
pub const RESET_AREA: u64 = 0x31000;
pub const RESET_STD: u64 = 0x33000;
/// Capture areas: XSAVE64 (standard) and XSAVES64 (compacted).
pub const XSAVE_AREA: u64 = 0x35000;
pub const XSAVES_AREA: u64 = 0x39000;
pub const AREA_BYTES: u64 = 0x4000;
pub const KSTACK_TOP: u64 = 0x3F000;
pub const ISTACK_TOP: u64 = 0x41000;
/// Case table, descriptors and case data.
pub const PAYLOAD: u64 = 0x41000;
/// End of what the BIOS loads (below the EBDA).
pub const LOAD_END: u64 = 0x98000;

// Kernel variables (offsets from HDR).
pub const V_MAGIC: u64 = 0x000;
pub const V_NCASES: u64 = 0x008;
/// 0: results leave as hex through port 0xE9; 1: a doorbell OUT to DOORBELL_PORT
/// after each record, the host reads guest memory.
pub const V_MODE: u64 = 0x010;
pub const V_CASE_TABLE: u64 = 0x018;
pub const V_PHASE: u64 = 0x020;
pub const V_RECOVER: u64 = 0x028;
pub const V_KSTEP: u64 = 0x030;
pub const V_CUR_CASE: u64 = 0x038;
pub const V_CUR_DESC: u64 = 0x040;
/// 1: never run an XSAVE-family instruction (KVM probe boots).
pub const V_NO_XFAM: u64 = 0x048;
pub const V_HAS_XSAVE: u64 = 0x050;
pub const V_HAS_XSAVES: u64 = 0x058;
pub const V_HAS_XGETBV1: u64 = 0x060;
pub const V_HAS_CET: u64 = 0x068;
pub const V_XCR0_MAX: u64 = 0x070;
pub const V_XSS_MAX: u64 = 0x078;
pub const V_STD_MAX: u64 = 0x080;
/// CODE_BASE, for `jmp [V_CODE_SLOT]`.
pub const V_CODE_SLOT: u64 = 0x088;
pub const V_KF_BEFORE: u64 = 0x090;
/// CPUID.(0DH,1):EAX[4]: IA32_XFD.
pub const V_HAS_XFD: u64 = 0x098;
/// 1: INVD after writing each case's code (set by the bochs host: Bochs's main
/// branch, 783b58fd, kept executing the previous case's code from its trace
/// cache after the kernel rewrote the code page; INVD flushes that cache).
pub const V_INVD_AFTER_CODE: u64 = 0x0A0;
/// The case's GPRs, loaded by the stub.
pub const V_GPRS: u64 = 0x100;
/// GPRs saved by the exception handler.
pub const V_SAVE: u64 = 0x180;
/// The result record of the current case (RES_BYTES).
pub const V_RES: u64 = 0x200;
pub const RES_BYTES: u64 = 0x200;
/// The information record written at boot (INFO_BYTES).
pub const V_INFO: u64 = 0x400;
pub const INFO_BYTES: u64 = 0x400;

pub const fn var(off: u64) -> u64 {
    HDR + off
}

/// Phases the exception handler tells apart.
pub const PH_BOOT: u64 = 0;
pub const PH_SETUP: u64 = 1;
pub const PH_INIT: u64 = 2;
pub const PH_CODE: u64 = 3;
pub const PH_CAPTURE: u64 = 4;

// Result record (qword indexes).
pub const R_CASE: usize = 0;
/// How the case ended: END_* below.
pub const R_END: usize = 1;
pub const R_VECTOR: usize = 2;
pub const R_ERR: usize = 3;
pub const R_RIP: usize = 4;
pub const R_CR2: usize = 5;
pub const R_XINUSE: usize = 6;
pub const R_XINUSE_OK: usize = 7;
pub const R_KF_COUNT: usize = 8;
/// Up to KF_MAX triples (step, vector, error code).
pub const R_KF: usize = 9;
pub const KF_MAX: usize = 8;
/// IA32_U_CET, IA32_PL3_SSP, IA32_PL0_SSP, IA32_PL1_SSP, IA32_PL2_SSP.
pub const R_CET: usize = 33;
pub const R_CET_OK: usize = 38;
pub const R_GPRS: usize = 40;
pub const R_XSAVE_OK: usize = 56;
pub const R_XSAVES_OK: usize = 57;
pub const R_FINAL_XCR0: usize = 58;
pub const R_FINAL_XSS: usize = 59;
pub const R_SUP_LEN: usize = 60;

pub const END_NORMAL: u64 = 0;
pub const END_FAULT_INIT: u64 = 1;
pub const END_FAULT_CODE: u64 = 2;
pub const END_SETUP_FAILED: u64 = 3;
/// A probe boot (V_NO_XFAM): set up, not run.
pub const END_PROBED: u64 = 4;

/// The CET MSRs read back after each case, in R_CET order.
pub const CET_MSRS: [u32; 5] = [0x6A0, 0x6A7, 0x6A4, 0x6A5, 0x6A6];
pub const MSR_XSS: u32 = 0xDA0;
pub const MSR_XFD: u32 = 0x1C4;
/// The vector the stub raises after the initial load: its handler applies the
/// case's CR0.TS, CR4.OSXSAVE and EFLAGS.AC (after the load, as the emulator does).
pub const VEC_CONTROL: u32 = 0x81;

/// Kernel steps that may fault (logged in the R_KF triples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Step {
    ResetXcr0 = 1,
    ResetXss = 2,
    ResetRestore = 3,
    Xcr0 = 4,
    Xss = 5,
    Xgetbv1 = 6,
    Xgetbv0 = 7,
    Xsave = 8,
    ReadXss = 9,
    Xsaves = 10,
    Fxsave = 11,
    ResetCet = 12,
    /// WRMSR IA32_XSS <- one bit, at boot (which bits the CPU accepts).
    XssProbe = 13,
    ResetXfd = 14,
    Xfd = 15,
    /// ReadCet + k for the k-th of CET_MSRS.
    ReadCet = 16,
}

impl Step {
    pub fn describe(v: u64) -> String {
        match v {
            1 => "XSETBV(XCR0 = all supported) before the case".into(),
            2 => "WRMSR IA32_XSS (0xDA0) <- all supported, before the case".into(),
            3 => "XRSTOR(S) of the reset image before the case".into(),
            4 => "XSETBV of the case's XCR0".into(),
            5 => "WRMSR IA32_XSS (0xDA0) <- the case's IA32_XSS".into(),
            6 => "XGETBV(ECX = 1) in the capture".into(),
            7 => "XGETBV(ECX = 0) in the capture".into(),
            8 => "XSAVE64 in the capture".into(),
            9 => "RDMSR IA32_XSS in the capture".into(),
            10 => "XSAVES64 in the capture".into(),
            11 => "FXSAVE64 at boot (MXCSR_MASK)".into(),
            12 => "WRMSR of a CET MSR <- 0 before the case".into(),
            13 => "WRMSR IA32_XSS (0xDA0) <- one bit, at boot".into(),
            14 => "WRMSR IA32_XFD (0x1C4) <- 0 before the case".into(),
            15 => "WRMSR IA32_XFD (0x1C4) <- the case's IA32_XFD".into(),
            16..=20 => format!("RDMSR {:#x} in the capture", CET_MSRS[(v - 16) as usize]),
            _ => format!("step {v}"),
        }
    }
}

// Case descriptor (qword indexes), written by the host into the payload.
pub const D_XCR0: usize = 0;
pub const D_XSS: usize = 1;
pub const D_CPL: usize = 2;
pub const D_FLAGS: usize = 3;
pub const D_INIT_LEN: usize = 4;
pub const D_INIT_PTR: usize = 5;
pub const D_CODE_LEN: usize = 6;
pub const D_CODE_PTR: usize = 7;
pub const D_ARENA_PAGES: usize = 8;
/// Per arena page: physical address of its initial bytes, 0 for a zero page.
pub const D_ARENA_SRC: usize = 9;
/// Per arena page: its page-table entry.
pub const D_ARENA_PTE: usize = 25;
/// Per INIT_BASE page: its page-table entry.
pub const D_INIT_PTE: usize = 41;
pub const D_GPRS: usize = 45;
pub const D_XFD: usize = 61;
pub const DESC_QWORDS: usize = 62;

pub const F_CR0_TS: u64 = 1;
pub const F_CR0_AM: u64 = 2;
pub const F_EFLAGS_AC: u64 = 4;
pub const F_CR4_OSXSAVE: u64 = 8;

/// Page-table entry bits.
pub const PTE_P: u64 = 1;
pub const PTE_RW: u64 = 2;
pub const PTE_US: u64 = 4;
pub const PTE_PS: u64 = 0x80;

/// Port of the per-record doorbell (mode 1).
pub const DOORBELL_PORT: u16 = 0x500;
/// QEMU's isa-debug-exit port.
pub const EXIT_PORT: u16 = 0xF4;
/// Bochs's shutdown port ("Shutdown" written to it ends the simulation).
pub const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
pub const E9: u16 = 0xE9;

/// CPUID leaves the image dumps into the information record, in order; each
/// entry is leaf, subleaf, EAX, EBX, ECX, EDX (u32 each).
pub fn cpuid_leaves() -> Vec<(u32, u32)> {
    let mut v = vec![(0, 0), (1, 0), (7, 0)];
    v.extend((0..=19).map(|s| (0xD, s)));
    v.push((0x8000_0000, 0));
    v.push((0x8000_0008, 0));
    v
}
/// Offset in the information record of MXCSR_MASK (from FXSAVE64), after the dump.
pub const INFO_MXCSR_MASK: u64 = 0x3F0;
/// Offset in the information record of a qword: 1 when IA32_XSS was probed.
pub const INFO_XSS_PROBED: u64 = 0x3E0;
/// Offset in the information record of the IA32_XSS bits WRMSR accepted, one
/// at a time, at boot.
pub const INFO_XSS_ACCEPTED: u64 = 0x3E8;
