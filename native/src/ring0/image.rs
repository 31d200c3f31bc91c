//! The ring-0 case image, assembled by iced-x86's code assembler: a boot sector
//! that loads the rest from disk (BIOS INT 13h AH=42h), a real-mode stage that
//! enters long mode, and a 64-bit kernel with an identity map, a GDT with ring-0
//! and ring-3 segments and a TSS, an IDT whose handlers record vector and error
//! code, and a loop that runs every case of the payload (see `layout`).
//!
//! Per case: reset the XSAVE state (XSETBV, WRMSR IA32_XSS, XRSTORS of an
//! all-init image), set the case's XCR0 and IA32_XSS, copy code, initial image
//! and arena behind CODE_BASE, INIT_BASE and ARENA_BASE, then (at CPL 0, or at
//! CPL 3 after IRETQ) XRSTORS64/XRSTOR64 the initial image with EDX:EAX = all
//! ones, load the GPRs and jump to the code, which ends in `int 0x80`. The
//! handler records how it ended, then the capture runs: XGETBV(1), XSAVE64 of
//! everything into a zeroed standard area (the emulator's capture), XSAVES64 of
//! XCR0 | IA32_XSS into a zeroed compacted area, RDMSR of IA32_XSS and the CET
//! MSRs. Kernel steps that fault (an MSR the CPU refuses, ...) are logged and
//! skipped through a one-entry exception table.

use super::layout::*;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use xsave_emu::case::{ARENA_BASE, CODE_BASE, INIT_BASE};

/// The assembled image: bytes for physical LOAD.. (everything but the boot
/// sector), before the payload is added.
pub struct Image {
    pub boot_sector: [u8; 512],
    /// Physical LOAD..PAYLOAD.
    pub low: Vec<u8>,
}

type R<T> = Result<T, IcedError>;

fn put_u64(mem: &mut [u8], phys: u64, v: u64) {
    let o = (phys - LOAD) as usize;
    mem[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_bytes(mem: &mut [u8], phys: u64, b: &[u8]) {
    let o = (phys - LOAD) as usize;
    mem[o..o + b.len()].copy_from_slice(b);
}

/// The trailer appended to every case's code: `int 0x80` ends the case.
pub const TRAILER: [u8; 2] = [0xCD, 0x80];

/// Vectors with an error code (SDM Vol.3 Table 6-1).
fn has_error_code(v: u32) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Builds the boot sector: load `chunks` chunks of 64 sectors from LBA 1 to
/// 0x8000, 0x10000, ... then jump to the real-mode stage.
pub fn boot_sector(chunks: u16) -> R<[u8; 512]> {
    // The disk address packet (INT 13h AH=42h) and the boot drive live at fixed
    // offsets of the sector.
    const DAP: u32 = 0x7C00 + 0x1C0;
    const DRIVE: u32 = 0x7C00 + 0x1D0;
    let mut a = CodeAssembler::new(16)?;
    let mut lp = a.create_label();
    let mut fail = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7C00u32)?;
    a.mov(byte_ptr(DRIVE), dl)?;
    a.mov(cx, chunks as u32)?;
    a.set_label(&mut lp)?;
    a.push(cx)?;
    a.mov(si, DAP)?;
    a.mov(ah, 0x42u32)?;
    a.mov(dl, byte_ptr(DRIVE))?;
    a.int(0x13u32)?;
    a.pop(cx)?;
    a.jc(fail)?;
    a.add(word_ptr(DAP + 6), 0x800u32)?;
    a.add(dword_ptr(DAP + 8), 64u32)?;
    a.loop_(lp)?;
    a.jmp_far(0, STAGE16 as u32)?;
    // A failed read: `!` on the debug port, then end the emulator (QEMU's
    // isa-debug-exit, Bochs's shutdown port) instead of halting until the deadline.
    a.set_label(&mut fail)?;
    a.mov(al, b'!' as u32)?;
    a.out(0xE9u32, al)?;
    a.out(EXIT_PORT as u32, al)?;
    a.mov(dx, BOCHS_SHUTDOWN_PORT as u32)?;
    for c in b"Shutdown" {
        a.mov(al, *c as u32)?;
        a.out(dx, al)?;
    }
    a.cli()?;
    a.hlt()?;
    let code = a.assemble(0x7C00)?;
    assert!(code.len() <= 0x1C0, "boot sector too long: {}", code.len());
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    let d = (DAP - 0x7C00) as usize;
    s[d] = 16;
    s[d + 2..d + 4].copy_from_slice(&64u16.to_le_bytes());
    s[d + 6..d + 8].copy_from_slice(&((LOAD >> 4) as u16).to_le_bytes());
    s[d + 8..d + 16].copy_from_slice(&1u64.to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xAA;
    Ok(s)
}

/// The real-mode stage at STAGE16: straight from real mode to long mode.
fn stage16() -> R<Vec<u8>> {
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    // GDTR is above 64 KiB: reach it through DS (a 16-bit LGDT loads a 24-bit base).
    a.mov(ax, (GDT >> 4) as u32)?;
    a.mov(ds, ax)?;
    a.lgdt(ptr((GDTR - GDT) as u32))?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(eax, cr4)?;
    a.or(eax, (1u32 << 5) | (1 << 9) | (1 << 10))?;
    a.mov(cr4, eax)?;
    a.mov(eax, PML4 as u32)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, 0xC000_0080u32)?;
    a.rdmsr()?;
    a.or(eax, 0x100u32)?;
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.and(eax, !0xCu32 as i32)?;
    a.or(eax, 0x8001_0033u32 as i32)?;
    a.mov(cr0, eax)?;
    a.jmp_far(SEL_KCODE, ENTRY64 as u32)?;
    a.assemble(STAGE16)
}

fn v(off: u64) -> AsmMemoryOperand {
    qword_ptr(var(off))
}
fn res(q: usize) -> AsmMemoryOperand {
    qword_ptr(var(V_RES) + 8 * q as u64)
}

struct K {
    a: CodeAssembler,
}

impl K {
    /// WRMSR `msr` from the case descriptor's qword `field` when the case asks
    /// for a nonzero value or the CPU has the MSR (the kernel variable `has`);
    /// a fault is the setup step `id`'s.
    fn msr_from_desc(&mut self, id: Step, msr: u32, field: usize, has: u64) -> R<()> {
        let mut write = self.a.create_label();
        let mut skip = self.a.create_label();
        self.a.mov(r8, v(V_CUR_DESC))?;
        self.a.cmp(qword_ptr(r8 + 8 * field), 0)?;
        self.a.jne(write)?;
        self.a.cmp(v(has), 0)?;
        self.a.je(skip)?;
        self.a.set_label(&mut write)?;
        self.step(id as u64, |a| {
            a.mov(r8, v(V_CUR_DESC))?;
            a.mov(ecx, msr)?;
            a.mov(rax, qword_ptr(r8 + 8 * field))?;
            a.mov(rdx, rax)?;
            a.shr(rdx, 32)?;
            a.wrmsr()
        })?;
        self.a.set_label(&mut skip)
    }

    /// Runs `body` as a kernel step that may fault: the handler logs the fault
    /// and resumes after it.
    fn step(&mut self, id: u64, body: impl FnOnce(&mut CodeAssembler) -> R<()>) -> R<()> {
        let mut after = self.a.create_label();
        self.a.mov(v(V_KSTEP), id as i32)?;
        self.a.lea(rax, ptr(after))?;
        self.a.mov(v(V_RECOVER), rax)?;
        body(&mut self.a)?;
        self.a.set_label(&mut after)?;
        self.a.mov(v(V_RECOVER), 0)?;
        Ok(())
    }

    fn emit_char(&mut self, c: u8) -> R<()> {
        self.a.mov(al, c as u32)?;
        self.a.out(E9 as u32, al)
    }

    /// rdi = address, ecx = qwords: zero it.
    fn zero(&mut self, addr: u64, bytes: u64) -> R<()> {
        self.a.mov(rdi, addr)?;
        self.a.mov(ecx, (bytes / 8) as u32)?;
        self.a.xor(eax, eax)?;
        self.a.rep().stosq()
    }
}

/// Builds the low part of the image: code, descriptor tables, page tables.
pub fn build() -> R<Image> {
    let mut mem = vec![0u8; (PAYLOAD - LOAD) as usize];
    let s16 = stage16()?;
    assert!(s16.len() <= (ENTRY64 - STAGE16) as usize);
    put_bytes(&mut mem, STAGE16, &s16);
    let code = kernel()?;
    assert!(
        ENTRY64 + code.len() as u64 <= CODE_END,
        "kernel too long: {}",
        code.len()
    );
    put_bytes(&mut mem, ENTRY64, &code.0);
    tables(&mut mem, &code.1);
    Ok(Image {
        boot_sector: boot_sector(0)?,
        low: mem,
    })
}

/// Addresses of the exception stubs, by vector.
type StubAddrs = Vec<(u32, u64)>;

struct Kernel(Vec<u8>, StubAddrs);
impl Kernel {
    fn len(&self) -> usize {
        self.0.len()
    }
}

fn tables(mem: &mut [u8], stubs: &StubAddrs) {
    // GDT.
    let gdt: [u64; 5] = [
        0,
        0x00AF_9A00_0000_FFFF, // kernel code, 64-bit
        0x00CF_9200_0000_FFFF, // kernel data
        0x00CF_F200_0000_FFFF, // user data, DPL 3
        0x00AF_FA00_0000_FFFF, // user code, 64-bit, DPL 3
    ];
    for (k, d) in gdt.iter().enumerate() {
        put_u64(mem, GDT + 8 * k as u64, *d);
    }
    let tss_lo = 0x67 | ((TSS & 0xFF_FFFF) << 16) | (0x89u64 << 40) | (((TSS >> 24) & 0xFF) << 56);
    put_u64(mem, GDT + SEL_TSS as u64, tss_lo);
    put_u64(mem, GDT + SEL_TSS as u64 + 8, TSS >> 32);
    // TSS: RSP0 and IST1; I/O map base past the limit.
    put_u64(mem, TSS + 4, KSTACK_TOP);
    put_u64(mem, TSS + 0x24, ISTACK_TOP);
    put_bytes(mem, TSS + 0x66, &104u16.to_le_bytes());
    // GDTR, IDTR.
    put_bytes(mem, GDTR, &GDT_LIMIT.to_le_bytes());
    put_u64(mem, GDTR + 2, GDT);
    put_bytes(mem, IDTR, &(256u16 * 16 - 1).to_le_bytes());
    put_u64(mem, IDTR + 2, IDT);
    // IDT: interrupt gates on IST1; vectors 0x80 (end of case) and VEC_CONTROL
    // reachable from CPL 3.
    for &(vec, addr) in stubs {
        let dpl: u64 = if vec >= 0x80 { 3 } else { 0 };
        let lo = (addr & 0xFFFF)
            | ((SEL_KCODE as u64) << 16)
            | (1u64 << 32)
            | ((0x8E | (dpl << 5)) << 40)
            | (((addr >> 16) & 0xFFFF) << 48);
        put_u64(mem, IDT + 16 * vec as u64, lo);
        put_u64(mem, IDT + 16 * vec as u64 + 8, addr >> 32);
    }
    // Paging: identity map of the first GiB (2 MiB pages, user-accessible so
    // that CPL-3 cases reach the stub and the variables), and one 4 KiB page
    // table each behind CODE_BASE, ARENA_BASE and INIT_BASE.
    let t = PTE_P | PTE_RW | PTE_US;
    put_u64(mem, PML4, PDPT | t);
    put_u64(mem, PDPT, PD_LOW | t);
    for i in 0..IMAGE_MAP_END >> 21 {
        put_u64(mem, PD_LOW + 8 * i, (i << 21) | t | PTE_PS);
    }
    for (base, pd, pt) in [
        (CODE_BASE, PD_CODE, PT_CODE),
        (ARENA_BASE, PD_ARENA, PT_ARENA),
        (INIT_BASE, PD_INIT, PT_INIT),
    ] {
        assert_eq!(base & ((1 << 30) - 1), 0);
        assert!(base < 1 << 39);
        put_u64(mem, PDPT + 8 * (base >> 30), pd | t);
        put_u64(mem, pd, pt | t);
    }
    put_u64(mem, PT_CODE, CODE_PHYS | t);
    // Constant variables.
    put_u64(mem, var(V_CODE_SLOT), CODE_BASE);
}

fn kernel() -> R<Kernel> {
    let mut k = K {
        a: CodeAssembler::new(64)?,
    };
    let mut hexdigits = k.a.create_label();
    let mut emit_hex = k.a.create_label();
    let mut case_loop = k.a.create_label();
    let mut case_next = k.a.create_label();
    let mut finish = k.a.create_label();
    let mut capture = k.a.create_label();
    let mut setup_failed = k.a.create_label();
    let mut stub_xrstors = k.a.create_label();
    let mut stub_xrstor = k.a.create_label();
    let mut load_gprs = k.a.create_label();
    let mut fatal = k.a.create_label();
    let mut common = k.a.create_label();

    // ---- entry (long mode, paging on) ----
    {
        let a = &mut k.a;
        a.mov(ax, SEL_KDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.xor(eax, eax)?;
        a.mov(fs, ax)?;
        a.mov(gs, ax)?;
        a.lgdt(ptr(GDTR))?;
        a.lidt(ptr(IDTR))?;
        a.mov(ax, SEL_TSS as u32)?;
        a.ltr(ax)?;
        a.mov(rsp, KSTACK_TOP)?;
        a.mov(v(V_PHASE), PH_BOOT as i32)?;
    }
    // CPUID dump into the information record.
    for (n, (leaf, sub)) in cpuid_leaves().into_iter().enumerate() {
        let a = &mut k.a;
        let at = var(V_INFO) + 24 * n as u64;
        a.mov(eax, leaf)?;
        a.mov(ecx, sub)?;
        a.cpuid()?;
        a.mov(dword_ptr(at), leaf)?;
        a.mov(dword_ptr(at + 4), sub)?;
        a.mov(dword_ptr(at + 8), eax)?;
        a.mov(dword_ptr(at + 12), ebx)?;
        a.mov(dword_ptr(at + 16), ecx)?;
        a.mov(dword_ptr(at + 20), edx)?;
    }
    {
        // Features from the dump (entries: 0 leaf 0, 1 leaf 1, 2 leaf 7, 3 (0xD,0), 4 (0xD,1)).
        let a = &mut k.a;
        let e = |n: u64, r: u64| dword_ptr(var(V_INFO) + 24 * n + 8 + 4 * r);
        a.mov(eax, e(1, 2))?;
        a.shr(eax, 26)?;
        a.and(eax, 1)?;
        a.mov(v(V_HAS_XSAVE), rax)?;
        a.mov(eax, e(4, 0))?;
        a.shr(eax, 3)?;
        a.and(eax, 1)?;
        a.mov(v(V_HAS_XSAVES), rax)?;
        a.mov(eax, e(4, 0))?;
        a.shr(eax, 2)?;
        a.and(eax, 1)?;
        a.mov(v(V_HAS_XGETBV1), rax)?;
        a.mov(eax, e(4, 0))?;
        a.shr(eax, 4)?;
        a.and(eax, 1)?;
        a.mov(v(V_HAS_XFD), rax)?;
        // CET: CPUID.(7,0):ECX[7] (shadow stacks) or EDX[20] (IBT).
        a.mov(eax, e(2, 2))?;
        a.shr(eax, 7)?;
        a.mov(edx, e(2, 3))?;
        a.shr(edx, 20)?;
        a.or(eax, edx)?;
        a.and(eax, 1)?;
        a.mov(v(V_HAS_CET), rax)?;
        a.mov(eax, e(3, 0))?;
        a.mov(edx, e(3, 3))?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)?;
        a.mov(v(V_XCR0_MAX), rax)?;
        a.mov(eax, e(4, 2))?;
        a.mov(edx, e(4, 3))?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)?;
        a.mov(v(V_XSS_MAX), rax)?;
        a.mov(eax, e(3, 2))?;
        a.mov(v(V_STD_MAX), rax)?;
    }
    // Which IA32_XSS bits WRMSR accepts, one at a time (an emulator's CPUID may
    // not report what it implements): they replace CPUID's as the bits reset
    // enables. Kernel faults are logged in the (not yet used) result record.
    {
        let mut no_xsaves = k.a.create_label();
        let mut lp = k.a.create_label();
        let mut refused = k.a.create_label();
        k.a.cmp(v(V_HAS_XSAVES), 0)?;
        k.a.je(no_xsaves)?;
        k.a.mov(v(V_PHASE), PH_SETUP as i32)?;
        k.a.xor(r12d, r12d)?;
        k.a.xor(r13d, r13d)?;
        k.a.set_label(&mut lp)?;
        k.a.mov(res(R_KF_COUNT), 0)?;
        k.step(Step::XssProbe as u64, |a| {
            a.mov(eax, 1)?;
            a.mov(ecx, r13d)?;
            a.shl(rax, cl)?;
            a.mov(rdx, rax)?;
            a.shr(rdx, 32)?;
            a.mov(ecx, MSR_XSS)?;
            a.wrmsr()
        })?;
        k.a.cmp(res(R_KF_COUNT), 0)?;
        k.a.jne(refused)?;
        k.a.bts(r12, r13)?;
        k.a.set_label(&mut refused)?;
        k.a.inc(r13d)?;
        k.a.cmp(r13d, 64)?;
        k.a.jb(lp)?;
        k.step(Step::XssProbe as u64, |a| {
            a.mov(ecx, MSR_XSS)?;
            a.xor(eax, eax)?;
            a.xor(edx, edx)?;
            a.wrmsr()
        })?;
        k.a.mov(qword_ptr(var(V_INFO) + INFO_XSS_ACCEPTED), r12)?;
        k.a.mov(qword_ptr(var(V_INFO) + INFO_XSS_PROBED), 1)?;
        k.a.mov(v(V_XSS_MAX), r12)?;
        k.a.mov(res(R_KF_COUNT), 0)?;
        k.a.mov(v(V_PHASE), PH_BOOT as i32)?;
        k.a.set_label(&mut no_xsaves)?;
        k.a.nop()?;
    }
    {
        let a = &mut k.a;
        // The reset images: XSTATE_BV = 0; compacted XCOMP_BV = bit 63 | everything.
        a.mov(rax, v(V_XCR0_MAX))?;
        a.or(rax, v(V_XSS_MAX))?;
        a.bts(rax, 63)?;
        a.mov(qword_ptr(RESET_AREA + 520), rax)?;
        // MXCSR = 1F80H in both, so that the reset leaves MXCSR at its init
        // value whether an implementation loads or initializes it.
        a.mov(dword_ptr(RESET_AREA + 24), 0x1F80)?;
        a.mov(dword_ptr(RESET_STD + 24), 0x1F80)?;
        // CR4.OSXSAVE where the CPU has XSAVE.
        let mut no_xsave = a.create_label();
        a.cmp(v(V_HAS_XSAVE), 0)?;
        a.je(no_xsave)?;
        a.mov(rax, cr4)?;
        a.bts(rax, 18)?;
        a.mov(cr4, rax)?;
        a.set_label(&mut no_xsave)?;
        a.nop()?;
    }
    // MXCSR_MASK through FXSAVE64 (not on a probe boot).
    {
        let mut skip = k.a.create_label();
        k.a.cmp(v(V_NO_XFAM), 0)?;
        k.a.jne(skip)?;
        k.step(Step::Fxsave as u64, |a| {
            a.mov(rdi, XSAVE_AREA)?;
            a.fxsave64(ptr(rdi))?;
            a.mov(eax, dword_ptr(XSAVE_AREA + 28))?;
            a.mov(dword_ptr(var(V_INFO) + INFO_MXCSR_MASK), eax)
        })?;
        k.a.set_label(&mut skip)?;
        k.a.nop()?;
    }
    // Emit the information record.
    {
        let mut doorbell = k.a.create_label();
        let mut done = k.a.create_label();
        k.a.cmp(v(V_MODE), 0)?;
        k.a.jne(doorbell)?;
        k.emit_char(b'#')?;
        k.emit_char(b'I')?;
        k.a.mov(rsi, var(V_INFO))?;
        k.a.mov(ecx, INFO_BYTES as u32)?;
        k.a.call(emit_hex)?;
        k.emit_char(b'|')?;
        k.emit_char(b'\n')?;
        k.a.jmp(done)?;
        k.a.set_label(&mut doorbell)?;
        k.a.mov(dx, DOORBELL_PORT as u32)?;
        k.a.mov(al, 1)?;
        k.a.out(dx, al)?;
        k.a.set_label(&mut done)?;
        k.a.mov(v(V_CUR_CASE), 0)?;
    }

    // ---- the case loop ----
    k.a.set_label(&mut case_loop)?;
    k.a.mov(rsp, KSTACK_TOP)?;
    k.a.mov(rax, v(V_CUR_CASE))?;
    k.a.cmp(rax, v(V_NCASES))?;
    k.a.jae(finish)?;
    k.a.mov(rdx, v(V_CASE_TABLE))?;
    k.a.mov(r8, qword_ptr(rdx + rax * 8))?;
    k.a.mov(v(V_CUR_DESC), r8)?;
    k.a.mov(v(V_PHASE), PH_SETUP as i32)?;
    k.zero(var(V_RES), RES_BYTES)?;
    k.zero(XSAVE_AREA, AREA_BYTES)?;
    k.zero(XSAVES_AREA, AREA_BYTES)?;
    k.a.mov(rax, v(V_CUR_CASE))?;
    k.a.mov(res(R_CASE), rax)?;
    {
        let a = &mut k.a;
        a.clts()?;
        a.mov(rax, cr0)?;
        a.btr(rax, 18)?;
        a.mov(cr0, rax)?;
        let mut no_xsave = a.create_label();
        a.cmp(v(V_HAS_XSAVE), 0)?;
        a.je(no_xsave)?;
        a.mov(rax, cr4)?;
        a.bts(rax, 18)?;
        a.mov(cr4, rax)?;
        a.set_label(&mut no_xsave)?;
        a.nop()?;
    }
    // Reset: everything supported enabled, everything in its init configuration.
    {
        let mut skip = k.a.create_label();
        let mut no_xsaves = k.a.create_label();
        let mut reset_done = k.a.create_label();
        let mut no_xfd = k.a.create_label();
        k.a.cmp(v(V_HAS_XFD), 0)?;
        k.a.je(no_xfd)?;
        k.step(Step::ResetXfd as u64, |a| {
            a.mov(ecx, MSR_XFD)?;
            a.xor(eax, eax)?;
            a.xor(edx, edx)?;
            a.wrmsr()
        })?;
        k.a.set_label(&mut no_xfd)?;
        k.a.cmp(v(V_NO_XFAM), 0)?;
        k.a.jne(skip)?;
        k.a.cmp(v(V_HAS_XSAVE), 0)?;
        k.a.je(skip)?;
        k.step(Step::ResetXcr0 as u64, |a| {
            a.xor(ecx, ecx)?;
            a.mov(rax, v(V_XCR0_MAX))?;
            a.mov(rdx, rax)?;
            a.shr(rdx, 32)?;
            a.xsetbv()
        })?;
        k.a.cmp(v(V_HAS_XSAVES), 0)?;
        k.a.je(no_xsaves)?;
        k.step(Step::ResetXss as u64, |a| {
            a.mov(ecx, MSR_XSS)?;
            a.mov(rax, v(V_XSS_MAX))?;
            a.mov(rdx, rax)?;
            a.shr(rdx, 32)?;
            a.wrmsr()
        })?;
        k.step(Step::ResetRestore as u64, |a| {
            a.mov(eax, 0xFFFF_FFFFu32)?;
            a.mov(edx, eax)?;
            a.mov(rdi, RESET_AREA)?;
            a.xrstors64(ptr(rdi))
        })?;
        k.a.jmp(reset_done)?;
        k.a.set_label(&mut no_xsaves)?;
        k.step(Step::ResetRestore as u64, |a| {
            a.mov(eax, 0xFFFF_FFFFu32)?;
            a.mov(edx, eax)?;
            a.mov(rdi, RESET_STD)?;
            a.xrstor64(ptr(rdi))
        })?;
        k.a.set_label(&mut reset_done)?;
        // MXCSR to 1F80H by LDMXCSR too: the reset must not depend on how a
        // host's XRSTORS initializes SSE (Bochs 3.0 keeps MXCSR, ring0 B12, and
        // the previous case's MXCSR leaked into the next one's).
        k.a.ldmxcsr(dword_ptr(RESET_AREA + 24))?;
        // The CET MSRs to 0 (their init values) whether or not IA32_XSS covered
        // them: an emulator may implement more than its CPUID reports.
        let mut no_cet = k.a.create_label();
        k.a.cmp(v(V_HAS_CET), 0)?;
        k.a.je(no_cet)?;
        for msr in CET_MSRS {
            k.step(Step::ResetCet as u64, |a| {
                a.mov(ecx, msr)?;
                a.xor(eax, eax)?;
                a.xor(edx, edx)?;
                a.wrmsr()
            })?;
        }
        k.a.set_label(&mut no_cet)?;
        k.a.nop()?;
        k.a.set_label(&mut skip)?;
        k.a.nop()?;
    }
    // The case's XCR0 and IA32_XSS; a fault here means the case cannot be set up.
    {
        k.a.mov(rax, v(V_RES + 8 * R_KF_COUNT as u64))?;
        k.a.mov(v(V_KF_BEFORE), rax)?;
        k.step(Step::Xcr0 as u64, |a| {
            a.mov(r8, v(V_CUR_DESC))?;
            a.xor(ecx, ecx)?;
            a.mov(rax, qword_ptr(r8 + 8 * D_XCR0))?;
            a.mov(rdx, rax)?;
            a.shr(rdx, 32)?;
            a.xsetbv()
        })?;
        k.msr_from_desc(Step::Xss, MSR_XSS, D_XSS, V_HAS_XSAVES)?;
        // The case's IA32_XFD where the CPU has it or the case asks for it.
        k.msr_from_desc(Step::Xfd, MSR_XFD, D_XFD, V_HAS_XFD)?;
        k.a.mov(rax, v(V_RES + 8 * R_KF_COUNT as u64))?;
        k.a.cmp(rax, v(V_KF_BEFORE))?;
        k.a.jne(setup_failed)?;
        // A probe boot stops here: the control state only.
        let mut run_it = k.a.create_label();
        k.a.cmp(v(V_NO_XFAM), 0)?;
        k.a.je(run_it)?;
        k.a.mov(res(R_END), END_PROBED as i32)?;
        k.a.jmp(capture)?;
        k.a.set_label(&mut run_it)?;
        k.a.nop()?;
    }
    // Copy the case in and map it.
    {
        let a = &mut k.a;
        a.mov(r8, v(V_CUR_DESC))?;
        // Initial image.
        a.mov(rdi, INIT_PHYS)?;
        a.mov(ecx, (INIT_PAGES * 512) as u32)?;
        a.xor(eax, eax)?;
        a.rep().stosq()?;
        a.mov(rdi, INIT_PHYS)?;
        a.mov(rsi, qword_ptr(r8 + 8 * D_INIT_PTR))?;
        a.mov(rcx, qword_ptr(r8 + 8 * D_INIT_LEN))?;
        a.rep().movsb()?;
        // Code.
        a.mov(rdi, CODE_PHYS)?;
        a.mov(ecx, 512)?;
        a.xor(eax, eax)?;
        a.rep().stosq()?;
        a.mov(rdi, CODE_PHYS)?;
        a.mov(rsi, qword_ptr(r8 + 8 * D_CODE_PTR))?;
        a.mov(rcx, qword_ptr(r8 + 8 * D_CODE_LEN))?;
        a.rep().movsb()?;
        let mut no_invd = a.create_label();
        a.cmp(v(V_INVD_AFTER_CODE), 0)?;
        a.je(no_invd)?;
        a.invd()?;
        a.set_label(&mut no_invd)?;
        // Arena pages: copied, or zeroed where the descriptor has no source.
        let mut lp = a.create_label();
        let mut zero_page = a.create_label();
        let mut next = a.create_label();
        a.xor(ebx, ebx)?;
        a.set_label(&mut lp)?;
        a.mov(rdi, rbx)?;
        a.shl(rdi, 12)?;
        a.add(rdi, ARENA_PHYS as i32)?;
        a.mov(ecx, 512)?;
        a.mov(rsi, qword_ptr(r8 + rbx * 8 + 8 * D_ARENA_SRC))?;
        a.test(rsi, rsi)?;
        a.je(zero_page)?;
        a.rep().movsq()?;
        a.jmp(next)?;
        a.set_label(&mut zero_page)?;
        a.xor(eax, eax)?;
        a.rep().stosq()?;
        a.set_label(&mut next)?;
        a.mov(rax, qword_ptr(r8 + rbx * 8 + 8 * D_ARENA_PTE))?;
        a.mov(qword_ptr(rbx * 8 + PT_ARENA as i32), rax)?;
        a.inc(ebx)?;
        a.cmp(ebx, ARENA_PAGES as u32)?;
        a.jb(lp)?;
        for p in 0..INIT_PAGES {
            a.mov(rax, qword_ptr(r8 + 8 * (D_INIT_PTE + p)))?;
            a.mov(qword_ptr(PT_INIT + 8 * p as u64), rax)?;
        }
        // The case's GPRs for the stub.
        for g in 0..16u64 {
            a.mov(rax, qword_ptr(r8 + 8 * (D_GPRS as u64 + g)))?;
            a.mov(v(V_GPRS + 8 * g), rax)?;
        }
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        // CR0.AM before the load (it matters only with EFLAGS.AC, which the
        // load runs without); CR4.OSXSAVE, CR0.TS and EFLAGS.AC after it, in
        // the VEC_CONTROL handler: the load runs with OSXSAVE = 1, TS = 0,
        // AC = 0 and the case's XCR0, IA32_XSS, IA32_XFD and CPL.
        let mut no_am = a.create_label();
        a.test(qword_ptr(r8 + 8 * D_FLAGS), F_CR0_AM as i32)?;
        a.je(no_am)?;
        a.mov(rax, cr0)?;
        a.bts(rax, 18)?;
        a.mov(cr0, rax)?;
        a.set_label(&mut no_am)?;
        // Which initial restore: XRSTORS64 for a compacted image at CPL 0 on a
        // CPU with XSAVES (the emulator's rule), else XRSTOR64.
        let mut use_xrstor = a.create_label();
        let mut ring3 = a.create_label();
        a.lea(r9, ptr(stub_xrstor))?;
        a.cmp(qword_ptr(r8 + 8 * D_CPL), 0)?;
        a.jne(use_xrstor)?;
        a.cmp(v(V_HAS_XSAVES), 0)?;
        a.je(use_xrstor)?;
        a.bt(qword_ptr(INIT_PHYS + 520), 63)?;
        a.jae(use_xrstor)?;
        a.lea(r9, ptr(stub_xrstors))?;
        a.set_label(&mut use_xrstor)?;
        a.mov(v(V_PHASE), PH_INIT as i32)?;
        a.cmp(qword_ptr(r8 + 8 * D_CPL), 0)?;
        a.jne(ring3)?;
        a.mov(rsp, v(V_GPRS + 8 * 4))?;
        a.jmp(r9)?;
        // CPL 3 through IRETQ: SS, RSP, RFLAGS (AC as the case asks), CS, RIP.
        a.set_label(&mut ring3)?;
        a.push((SEL_UDATA | 3) as i32)?;
        a.push(v(V_GPRS + 8 * 4))?;
        a.push(2)?;
        a.push((SEL_UCODE | 3) as i32)?;
        a.push(r9)?;
        a.iretq()?;
    }
    // Setup failed: no run, capture what there is.
    k.a.set_label(&mut setup_failed)?;
    k.a.mov(res(R_END), END_SETUP_FAILED as i32)?;
    k.a.jmp(capture)?;

    // ---- the stub (user-accessible; runs at the case's CPL) ----
    for (label, rstors) in [(&mut stub_xrstors, true), (&mut stub_xrstor, false)] {
        let a = &mut k.a;
        a.set_label(label)?;
        a.mov(eax, 0xFFFF_FFFFu32)?;
        a.mov(edx, eax)?;
        a.mov(rbx, INIT_BASE)?;
        if rstors {
            a.xrstors64(ptr(rbx))?;
        } else {
            a.xrstor64(ptr(rbx))?;
        }
        a.int(VEC_CONTROL)?;
        a.jmp(load_gprs)?;
    }
    {
        let a = &mut k.a;
        a.set_label(&mut load_gprs)?;
        a.mov(v(V_PHASE), PH_CODE as i32)?;
        let regs = [
            rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        for (g, r) in regs.iter().enumerate() {
            if g == 4 {
                continue;
            }
            a.mov(*r, v(V_GPRS + 8 * g as u64))?;
        }
        a.jmp(v(V_CODE_SLOT))?;
    }

    // ---- the capture (CPL 0) ----
    k.a.set_label(&mut capture)?;
    k.a.mov(rsp, KSTACK_TOP)?;
    k.a.mov(v(V_PHASE), PH_CAPTURE as i32)?;
    {
        let a = &mut k.a;
        a.clts()?;
        a.mov(rax, cr0)?;
        a.btr(rax, 18)?;
        a.mov(cr0, rax)?;
    }
    {
        let mut skip = k.a.create_label();
        let mut no_xgetbv1 = k.a.create_label();
        let mut no_xsaves = k.a.create_label();
        k.a.cmp(v(V_HAS_XSAVE), 0)?;
        k.a.je(skip)?;
        k.a.mov(rax, cr4)?;
        k.a.bts(rax, 18)?;
        k.a.mov(cr4, rax)?;
        k.a.cmp(v(V_NO_XFAM), 0)?;
        k.a.jne(skip)?;
        k.a.cmp(v(V_HAS_XGETBV1), 0)?;
        k.a.je(no_xgetbv1)?;
        k.step(Step::Xgetbv1 as u64, |a| {
            a.mov(ecx, 1)?;
            a.xgetbv()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(res(R_XINUSE), rax)?;
            a.mov(res(R_XINUSE_OK), 1)
        })?;
        k.a.set_label(&mut no_xgetbv1)?;
        k.step(Step::Xgetbv0 as u64, |a| {
            a.xor(ecx, ecx)?;
            a.xgetbv()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(res(R_FINAL_XCR0), rax)
        })?;
        k.step(Step::Xsave as u64, |a| {
            a.mov(eax, 0xFFFF_FFFFu32)?;
            a.mov(edx, eax)?;
            a.mov(rdi, XSAVE_AREA)?;
            a.xsave64(ptr(rdi))?;
            a.mov(res(R_XSAVE_OK), 1)
        })?;
        k.a.cmp(v(V_HAS_XSAVES), 0)?;
        k.a.je(no_xsaves)?;
        k.step(Step::ReadXss as u64, |a| {
            a.mov(ecx, MSR_XSS)?;
            a.rdmsr()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(res(R_FINAL_XSS), rax)
        })?;
        k.step(Step::Xsaves as u64, |a| {
            a.mov(eax, 0xFFFF_FFFFu32)?;
            a.mov(edx, eax)?;
            a.mov(rdi, XSAVES_AREA)?;
            a.xsaves64(ptr(rdi))?;
            a.mov(res(R_XSAVES_OK), 1)?;
            // CPUID.(0DH,1):EBX: the compacted size for the current XCR0 | IA32_XSS.
            a.mov(eax, 0xD)?;
            a.mov(ecx, 1)?;
            a.cpuid()?;
            // At least CPUID.(0DH,0):ECX bytes: an emulator may under-report EBX.
            a.cmp(rbx, v(V_STD_MAX))?;
            a.cmovb(rbx, v(V_STD_MAX))?;
            a.mov(res(R_SUP_LEN), rbx)
        })?;
        k.a.set_label(&mut no_xsaves)?;
        k.a.nop()?;
        k.a.set_label(&mut skip)?;
        k.a.nop()?;
    }
    {
        let mut no_cet = k.a.create_label();
        k.a.cmp(v(V_HAS_CET), 0)?;
        k.a.je(no_cet)?;
        for (n, msr) in CET_MSRS.iter().enumerate() {
            k.step(Step::ReadCet as u64 + n as u64, |a| {
                a.mov(ecx, *msr)?;
                a.rdmsr()?;
                a.shl(rdx, 32)?;
                a.or(rax, rdx)?;
                a.mov(res(R_CET + n), rax)?;
                a.bts(res(R_CET_OK), n as u32)
            })?;
        }
        k.a.set_label(&mut no_cet)?;
        k.a.nop()?;
    }
    // Output: hex through port 0xE9, or the doorbell.
    {
        let mut doorbell = k.a.create_label();
        k.a.cmp(v(V_MODE), 0)?;
        k.a.jne(doorbell)?;
        k.emit_char(b'#')?;
        k.emit_char(b'C')?;
        k.a.mov(rsi, var(V_RES))?;
        k.a.mov(ecx, RES_BYTES as u32)?;
        k.a.call(emit_hex)?;
        k.emit_char(b'|')?;
        k.a.mov(rsi, XSAVE_AREA)?;
        k.a.mov(rcx, v(V_STD_MAX))?;
        k.a.call(emit_hex)?;
        k.emit_char(b'|')?;
        k.a.mov(rsi, XSAVES_AREA)?;
        k.a.mov(rcx, res(R_SUP_LEN))?;
        k.a.call(emit_hex)?;
        k.emit_char(b'|')?;
        // Arena pages: `Z` for a zero page, else its bytes.
        let a = &mut k.a;
        let mut lp = a.create_label();
        let mut nonzero = a.create_label();
        let mut next = a.create_label();
        let mut done = a.create_label();
        a.xor(ebx, ebx)?;
        a.set_label(&mut lp)?;
        a.mov(r8, v(V_CUR_DESC))?;
        a.cmp(rbx, qword_ptr(r8 + 8 * D_ARENA_PAGES))?;
        a.jae(done)?;
        a.mov(rdi, rbx)?;
        a.shl(rdi, 12)?;
        a.add(rdi, ARENA_PHYS as i32)?;
        a.mov(rsi, rdi)?;
        a.mov(ecx, 512)?;
        a.xor(eax, eax)?;
        a.repe().scasq()?;
        a.jne(nonzero)?;
        a.mov(al, b'Z' as u32)?;
        a.out(E9 as u32, al)?;
        a.jmp(next)?;
        a.set_label(&mut nonzero)?;
        a.mov(ecx, 4096)?;
        a.call(emit_hex)?;
        a.set_label(&mut next)?;
        a.mov(al, b'|' as u32)?;
        a.out(E9 as u32, al)?;
        a.inc(ebx)?;
        a.jmp(lp)?;
        a.set_label(&mut done)?;
        k.emit_char(b'\n')?;
        k.a.jmp(case_next)?;
        k.a.set_label(&mut doorbell)?;
        k.a.mov(dx, DOORBELL_PORT as u32)?;
        k.a.mov(al, 2)?;
        k.a.out(dx, al)?;
    }
    k.a.set_label(&mut case_next)?;
    k.a.inc(v(V_CUR_CASE))?;
    k.a.jmp(case_loop)?;

    // ---- the end ----
    k.a.set_label(&mut finish)?;
    k.emit_char(b'#')?;
    k.emit_char(b'E')?;
    k.emit_char(b'\n')?;
    k.a.set_label(&mut fatal)?;
    {
        let a = &mut k.a;
        // QEMU: isa-debug-exit; KVM: an I/O exit; Bochs: the shutdown port.
        a.mov(al, 0)?;
        a.out(EXIT_PORT as u32, al)?;
        a.mov(dx, BOCHS_SHUTDOWN_PORT as u32)?;
        for c in b"Shutdown" {
            a.mov(al, *c as u32)?;
            a.out(dx, al)?;
        }
        let mut halt = a.create_label();
        a.set_label(&mut halt)?;
        a.cli()?;
        a.hlt()?;
        a.jmp(halt)?;
    }

    // ---- emit_hex: rsi = bytes, rcx = count ----
    {
        let a = &mut k.a;
        a.set_label(&mut emit_hex)?;
        let mut lp = a.create_label();
        let mut done = a.create_label();
        a.lea(rdx, ptr(hexdigits))?;
        a.test(rcx, rcx)?;
        a.je(done)?;
        a.set_label(&mut lp)?;
        a.movzx(eax, byte_ptr(rsi))?;
        a.shr(eax, 4)?;
        a.mov(al, byte_ptr(rdx + rax))?;
        a.out(E9 as u32, al)?;
        a.movzx(eax, byte_ptr(rsi))?;
        a.and(eax, 15)?;
        a.mov(al, byte_ptr(rdx + rax))?;
        a.out(E9 as u32, al)?;
        a.inc(rsi)?;
        a.dec(rcx)?;
        a.jne(lp)?;
        a.set_label(&mut done)?;
        a.ret()?;
        a.set_label(&mut hexdigits)?;
        a.db(b"0123456789abcdef")?;
    }

    // ---- VEC_CONTROL: the case's control bits after the initial load ----
    let mut control = k.a.create_label();
    {
        let a = &mut k.a;
        a.set_label(&mut control)?;
        a.mov(r8, v(V_CUR_DESC))?;
        let mut osx = a.create_label();
        a.test(qword_ptr(r8 + 8 * D_FLAGS), F_CR4_OSXSAVE as i32)?;
        a.jne(osx)?;
        a.mov(rax, cr4)?;
        a.btr(rax, 18)?;
        a.mov(cr4, rax)?;
        a.set_label(&mut osx)?;
        let mut no_ts = a.create_label();
        a.test(qword_ptr(r8 + 8 * D_FLAGS), F_CR0_TS as i32)?;
        a.je(no_ts)?;
        a.mov(rax, cr0)?;
        a.bts(rax, 3)?;
        a.mov(cr0, rax)?;
        a.set_label(&mut no_ts)?;
        // EFLAGS.AC (alignment checking) for a CPL-3 case: in the frame IRETQ pops.
        let mut no_ac = a.create_label();
        a.cmp(qword_ptr(r8 + 8 * D_CPL), 0)?;
        a.je(no_ac)?;
        a.test(qword_ptr(r8 + 8 * D_FLAGS), F_EFLAGS_AC as i32)?;
        a.je(no_ac)?;
        a.bts(qword_ptr(rsp + 16), 18)?;
        a.set_label(&mut no_ac)?;
        a.iretq()?;
    }

    // ---- exception handlers ----
    let mut vectors: Vec<(u32, CodeLabel)> = vec![(VEC_CONTROL, control)];
    for vec in (0..32).chain([0x80]) {
        let mut l = k.a.create_label();
        k.a.set_label(&mut l)?;
        if !has_error_code(vec) {
            k.a.push(0)?;
        }
        k.a.push(vec as i32)?;
        k.a.jmp(common)?;
        vectors.push((vec, l));
    }
    {
        let a = &mut k.a;
        let regs = [
            rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        a.set_label(&mut common)?;
        for (g, r) in regs.iter().enumerate() {
            if g != 4 {
                a.mov(v(V_SAVE + 8 * g as u64), *r)?;
            }
        }
        let mut kf = a.create_label();
        let mut case_fault = a.create_label();
        let mut record = a.create_label();
        a.mov(rax, v(V_PHASE))?;
        a.cmp(rax, PH_SETUP as i32)?;
        a.je(kf)?;
        a.cmp(rax, PH_CAPTURE as i32)?;
        a.je(kf)?;
        a.cmp(rax, PH_INIT as i32)?;
        a.je(case_fault)?;
        a.cmp(rax, PH_CODE as i32)?;
        a.jne(fatal)?;
        // End of the case: `int 0x80` in the code phase.
        a.cmp(qword_ptr(rsp), 0x80)?;
        a.jne(case_fault)?;
        a.mov(res(R_END), END_NORMAL as i32)?;
        a.mov(rax, qword_ptr(rsp + 16))?;
        a.mov(res(R_RIP), rax)?;
        a.jmp(record)?;
        a.set_label(&mut case_fault)?;
        a.sub(rax, (PH_INIT - END_FAULT_INIT) as i32)?;
        a.mov(res(R_END), rax)?;
        a.mov(rax, qword_ptr(rsp))?;
        a.mov(res(R_VECTOR), rax)?;
        a.mov(rax, qword_ptr(rsp + 8))?;
        a.mov(res(R_ERR), rax)?;
        a.mov(rax, qword_ptr(rsp + 16))?;
        a.mov(res(R_RIP), rax)?;
        a.mov(rax, cr2)?;
        a.mov(res(R_CR2), rax)?;
        a.set_label(&mut record)?;
        for g in 0..16u64 {
            if g == 4 {
                a.mov(rax, qword_ptr(rsp + 40))?;
            } else {
                a.mov(rax, v(V_SAVE + 8 * g))?;
            }
            a.mov(res(R_GPRS + g as usize), rax)?;
        }
        a.jmp(capture)?;
        // A kernel step faulted: log it and resume after the step.
        a.set_label(&mut kf)?;
        let mut no_log = a.create_label();
        a.mov(rcx, res(R_KF_COUNT))?;
        a.cmp(rcx, KF_MAX as i32)?;
        a.jae(no_log)?;
        a.imul_3(rdx, rcx, 24)?;
        a.add(rdx, (var(V_RES) + 8 * R_KF as u64) as i32)?;
        a.mov(rax, v(V_KSTEP))?;
        a.mov(qword_ptr(rdx), rax)?;
        a.mov(rax, qword_ptr(rsp))?;
        a.mov(qword_ptr(rdx + 8), rax)?;
        a.mov(rax, qword_ptr(rsp + 8))?;
        a.mov(qword_ptr(rdx + 16), rax)?;
        a.inc(rcx)?;
        a.mov(res(R_KF_COUNT), rcx)?;
        a.set_label(&mut no_log)?;
        a.mov(rax, v(V_RECOVER))?;
        a.test(rax, rax)?;
        a.je(fatal)?;
        a.mov(qword_ptr(rsp + 16), rax)?;
        a.mov(v(V_RECOVER), 0)?;
        for (g, r) in regs.iter().enumerate() {
            if g != 4 {
                a.mov(*r, v(V_SAVE + 8 * g as u64))?;
            }
        }
        a.add(rsp, 16)?;
        a.iretq()?;
    }

    let r =
        k.a.assemble_options(ENTRY64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let mut stubs = Vec::new();
    for (vec, l) in &vectors {
        stubs.push((*vec, r.label_ip(l)?));
    }
    Ok(Kernel(r.inner.code_buffer, stubs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_assembles_and_fits() {
        let img = build().unwrap();
        assert_eq!(img.low.len() as u64, PAYLOAD - LOAD);
        let bs = boot_sector(3).unwrap();
        assert_eq!(&bs[510..], &[0x55, 0xAA]);
    }
}
