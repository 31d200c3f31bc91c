//! The runner's machine code, generated with iced-x86's code assembler: the stub
//! that loads a case, runs it and captures the result with no compiler-generated
//! code between the steps, and the jump back that follows each case's code.
//!
//! Everything the stub touches lives at fixed addresses in the runner's private
//! region ([`PRIV_BASE`]), so the stub needs no argument and its code does not
//! depend on the case: it is assembled once per runner. The case's code is
//! placed exactly at `CODE_BASE` (RIP-relative operands and x87 FIP then match the
//! emulator) and ends with a `jmp` to [`Stub::after_code`].
//!
//! The stub, in order:
//! 1. push the callee-saved GPRs and RFLAGS, store RSP in the data page;
//! 2. save the host's full state (EDX:EAX = all ones) into the host area, with
//!    the cheapest of XSAVEC64, XSAVEOPT64, XSAVE64 the CPU has ([`HostSave`]);
//! 3. XRSTOR64 a reset image (XSTATE_BV = 0, MXCSR = 1F80H), then the case's
//!    initial image from `INIT_BASE` (EDX:EAX = all ones);
//! 4. OR the case's EFLAGS.AC into RFLAGS, load the 16 GPRs, jump to `CODE_BASE`;
//! 5. (after_code) store the 16 GPRs;
//! 6. (recovery, where a fault resumes) reload RSP, clear EFLAGS.AC;
//! 7. XSAVE64 (EDX:EAX = all ones) into the zeroed final area, XGETBV(1) when
//!    CPUID.(0DH,1):EAX[2] says it exists;
//! 8. XRSTOR64 the host state, restore RFLAGS and the callee-saved GPRs, return.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Code, Instruction, MemoryOperand, Register};
use xsave_emu::case::{CODE_BASE, INIT_BASE};

/// The runner's private region: stub page, data page, host area, final area.
/// Far from the case's code, arena and initial image, within 2 GiB of CODE_BASE.
pub const PRIV_BASE: u64 = CODE_BASE + 0x1000_0000;
pub const PAGE: u64 = 4096;
/// The stub's code page.
pub const STUB_PAGE: u64 = PRIV_BASE;
/// The data page shared by the stub, the runner and the signal handler.
pub const DATA_PAGE: u64 = PRIV_BASE + PAGE;

/// Offsets in the data page.
pub mod data {
    /// The stub's RSP after its pushes.
    pub const SAVED_RSP: u64 = 0;
    /// Bits ORed into RFLAGS before the case (EFLAGS.AC).
    pub const FLAGS_OR: u64 = 8;
    /// The case's 16 GPRs, x86 register-number order.
    pub const GPRS_IN: u64 = 16;
    /// The GPRs after the case (or at its fault).
    pub const GPRS_OUT: u64 = GPRS_IN + 128;
    /// XGETBV(1) after the case.
    pub const XINUSE: u64 = GPRS_OUT + 128;
    /// Fault record written by the signal handler: faulted flag, signal, si_code,
    /// trapno, err, CR2/si_addr, RIP.
    pub const FAULTED: u64 = XINUSE + 8;
    pub const SIGNO: u64 = FAULTED + 8;
    pub const SI_CODE: u64 = SIGNO + 8;
    pub const TRAPNO: u64 = SI_CODE + 8;
    pub const ERR: u64 = TRAPNO + 8;
    pub const CR2: u64 = ERR + 8;
    pub const RIP: u64 = CR2 + 8;
    /// With `phase-probes`: the time-stamp counter at the stub's seven probes
    /// ([`crate::phase`]).
    pub const PROBES: u64 = RIP + 8;
    pub const END: u64 = PROBES + 8 * 7;
}

/// A 576-byte standard-format image in the data page (64-byte aligned) with
/// MXCSR = 1F80H and XSTATE_BV = 0: XRSTOR64 of it puts every component in its
/// init configuration, so a case whose initial image is rejected starts from the
/// same reset state as the emulator, not from the host's registers.
pub const RESET_IMAGE: u64 = DATA_PAGE + 0x800;

/// EFLAGS.AC.
pub const EFLAGS_AC: u64 = 1 << 18;

/// The assembled stub and the addresses the runner and signal handler need.
#[derive(Debug, Clone)]
pub struct Stub {
    pub bytes: Vec<u8>,
    /// Where the stub starts (call it as `extern "sysv64" fn()`).
    pub entry: u64,
    /// The XRSTOR64 of the initial image (a fault there is `insn: None`).
    pub init_xrstor: u64,
    /// Where each case's code jumps back to.
    pub after_code: u64,
    /// Where a fault resumes (RSP is reloaded there).
    pub recovery: u64,
    /// `int3; ret`: takes a #BP so that the thread's last trap number is 3.
    pub prime: u64,
    /// The address right after the prime's int3 (the RIP its SIGTRAP reports).
    pub prime_resume: u64,
    pub host_area: u64,
    pub final_area: u64,
}

fn rip_store_rax(addr: u64) -> Result<Instruction, String> {
    Instruction::with2(
        Code::Mov_moffs64_RAX,
        MemoryOperand::with_displ(addr, 8),
        Register::RAX,
    )
    .map_err(|e| e.to_string())
}

/// How the stub saves the host's state (step 2) before the case, restored with
/// XRSTOR64 (step 8), which takes the standard and the compacted format alike.
/// Only the runner reads the host area, so the cheapest save the CPU has is
/// used: the init optimization (XSAVEC, XSAVEOPT) skips every component in its
/// init configuration (the 8 KiB TILEDATA, AVX state the host is not using),
/// and XRSTOR puts those back in it from XSTATE_BV = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSave {
    /// XSAVEC64 (CPUID.(EAX=0DH,ECX=1):EAX[1]): compacted, init optimization.
    Xsavec,
    /// XSAVEOPT64 (CPUID.(EAX=0DH,ECX=1):EAX[0]): standard format, init and
    /// modified optimizations.
    Xsaveopt,
    /// XSAVE64: every component, in the standard format.
    Xsave,
}

impl HostSave {
    /// The cheapest save `model` offers.
    pub fn best(model: &xsave_emu::CpuModel) -> HostSave {
        if model.xsavec {
            HostSave::Xsavec
        } else if model.xsaveopt {
            HostSave::Xsaveopt
        } else {
            HostSave::Xsave
        }
    }
}

/// Assembles the stub at [`STUB_PAGE`]. `host_area` and `final_area` are
/// 64-byte aligned areas of the host's XSAVE size; `host_save` is how the host's
/// state is saved; `xgetbv1` says whether to read XINUSE.
pub fn assemble(
    host_area: u64,
    final_area: u64,
    host_save: HostSave,
    xgetbv1: bool,
) -> Result<Stub, String> {
    let e = |e: IcedError| e.to_string();
    let mut a = CodeAssembler::new(64).map_err(e)?;
    let gpr: [AsmRegister64; 16] = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let mut l_init = a.create_label();
    let mut l_after = a.create_label();
    let mut l_recovery = a.create_label();
    let mut l_prime = a.create_label();
    let mut l_prime_resume = a.create_label();
    let d = DATA_PAGE;
    // With `phase-probes`: the time-stamp counter into probe slot `k`; RAX and
    // RDX are free at each probe, and EDX:EAX are all ones again after it (the
    // RFBM of the XSAVE or XRSTOR that may follow).
    let probe = |a: &mut CodeAssembler, k: i32| -> Result<(), IcedError> {
        if crate::phase::ENABLED {
            a.rdtsc()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(rdx, d)?;
            a.mov(qword_ptr(rdx + (data::PROBES as i32 + 8 * k)), rax)?;
            a.mov(eax, -1i32)?;
            a.mov(edx, -1i32)?;
        }
        Ok(())
    };
    probe(&mut a, 0).map_err(e)?;
    // 1. Callee-saved registers and flags; RSP into the data page.
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).map_err(e)?;
    }
    a.pushfq().map_err(e)?;
    a.mov(rax, d).map_err(e)?;
    a.mov(qword_ptr(rax + data::SAVED_RSP as i32), rsp)
        .map_err(e)?;
    // 2. The host's state.
    a.mov(eax, -1i32).map_err(e)?;
    a.mov(edx, -1i32).map_err(e)?;
    a.mov(rcx, host_area).map_err(e)?;
    match host_save {
        HostSave::Xsavec => a.xsavec64(ptr(rcx)),
        HostSave::Xsaveopt => a.xsaveopt64(ptr(rcx)),
        HostSave::Xsave => a.xsave64(ptr(rcx)),
    }
    .map_err(e)?;
    probe(&mut a, 1).map_err(e)?;
    // 3. Every component to its init configuration, then the case's initial image.
    a.mov(rcx, RESET_IMAGE).map_err(e)?;
    a.xrstor64(ptr(rcx)).map_err(e)?;
    probe(&mut a, 2).map_err(e)?;
    a.mov(rcx, INIT_BASE).map_err(e)?;
    a.set_label(&mut l_init).map_err(e)?;
    a.xrstor64(ptr(rcx)).map_err(e)?;
    probe(&mut a, 3).map_err(e)?;
    // 4. EFLAGS.AC, GPRs, jump to the case.
    a.mov(rax, d).map_err(e)?;
    a.mov(rcx, qword_ptr(rax + data::FLAGS_OR as i32))
        .map_err(e)?;
    a.pushfq().map_err(e)?;
    a.or(qword_ptr(rsp), rcx).map_err(e)?;
    a.popfq().map_err(e)?;
    for (k, r) in gpr.iter().enumerate().skip(1) {
        a.mov(*r, qword_ptr(rax + (data::GPRS_IN + 8 * k as u64) as i32))
            .map_err(e)?;
    }
    a.mov(rax, qword_ptr(rax + data::GPRS_IN as i32))
        .map_err(e)?;
    a.jmp(CODE_BASE).map_err(e)?;
    // 5. Back from the case: store its GPRs (RAX first, through a 64-bit moffs).
    a.set_label(&mut l_after).map_err(e)?;
    a.add_instruction(rip_store_rax(d + data::GPRS_OUT)?)
        .map_err(e)?;
    a.mov(rax, d).map_err(e)?;
    for (k, r) in gpr.iter().enumerate().skip(1) {
        a.mov(qword_ptr(rax + (data::GPRS_OUT + 8 * k as u64) as i32), *r)
            .map_err(e)?;
    }
    // 6. Recovery: the stub's own stack, EFLAGS.AC off.
    a.set_label(&mut l_recovery).map_err(e)?;
    a.mov(rax, d).map_err(e)?;
    a.mov(rsp, qword_ptr(rax + data::SAVED_RSP as i32))
        .map_err(e)?;
    a.pushfq().map_err(e)?;
    a.and(qword_ptr(rsp), !(EFLAGS_AC as i32)).map_err(e)?;
    a.popfq().map_err(e)?;
    probe(&mut a, 4).map_err(e)?;
    // 7. Capture.
    a.mov(eax, -1i32).map_err(e)?;
    a.mov(edx, -1i32).map_err(e)?;
    a.mov(rcx, final_area).map_err(e)?;
    a.xsave64(ptr(rcx)).map_err(e)?;
    if xgetbv1 {
        a.mov(ecx, 1).map_err(e)?;
        a.xgetbv().map_err(e)?;
        a.mov(rcx, d).map_err(e)?;
        a.mov(dword_ptr(rcx + data::XINUSE as i32), eax)
            .map_err(e)?;
        a.mov(dword_ptr(rcx + (data::XINUSE + 4) as i32), edx)
            .map_err(e)?;
    }
    probe(&mut a, 5).map_err(e)?;
    // 8. The host's state back.
    a.mov(eax, -1i32).map_err(e)?;
    a.mov(edx, -1i32).map_err(e)?;
    a.mov(rcx, host_area).map_err(e)?;
    a.xrstor64(ptr(rcx)).map_err(e)?;
    probe(&mut a, 6).map_err(e)?;
    a.popfq().map_err(e)?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).map_err(e)?;
    }
    a.ret().map_err(e)?;
    // The prime: a #BP, whose SIGTRAP the handler returns from.
    a.set_label(&mut l_prime).map_err(e)?;
    a.int3().map_err(e)?;
    a.set_label(&mut l_prime_resume).map_err(e)?;
    a.ret().map_err(e)?;
    let res = a
        .assemble_options(
            STUB_PAGE,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(e)?;
    let ip = |l: &CodeLabel| res.label_ip(l).map_err(|x| x.to_string());
    Ok(Stub {
        entry: STUB_PAGE,
        init_xrstor: ip(&l_init)?,
        after_code: ip(&l_after)?,
        recovery: ip(&l_recovery)?,
        prime: ip(&l_prime)?,
        prime_resume: ip(&l_prime_resume)?,
        bytes: res.inner.code_buffer,
        host_area,
        final_area,
    })
}

/// The length of [`jmp_back`]'s jump (E9 rel32).
pub const JMP_BACK_LEN: usize = 5;

/// The `jmp after_code` (E9 rel32) that follows a case's `code_len` bytes of
/// code at `CODE_BASE`: encoded by hand, as no assembler is needed for one
/// fixed-form instruction on every run.
pub fn jmp_back(code_len: usize, after_code: u64) -> Result<[u8; JMP_BACK_LEN], String> {
    let next = CODE_BASE + (code_len + JMP_BACK_LEN) as u64;
    let rel = i32::try_from(after_code.wrapping_sub(next) as i64)
        .map_err(|_| format!("jmp from {next:#x} to {after_code:#x} out of rel32 range"))?;
    let r = rel.to_le_bytes();
    Ok([0xE9, r[0], r[1], r[2], r[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-made jump is the instruction iced-x86 decodes as `jmp after_code`.
    #[test]
    fn jmp_back_decodes_as_the_jump() {
        let stub = assemble(
            PRIV_BASE + 0x2000,
            PRIV_BASE + 0x5000,
            HostSave::Xsave,
            true,
        )
        .unwrap();
        for len in [0usize, 1, 17, 256] {
            let j = jmp_back(len, stub.after_code).unwrap();
            let ip = CODE_BASE + len as u64;
            let mut d = iced_x86::Decoder::with_ip(64, &j, ip, iced_x86::DecoderOptions::NONE);
            let i = d.decode();
            assert_eq!(i.code(), Code::Jmp_rel32_64);
            assert_eq!(i.near_branch_target(), stub.after_code);
            assert_eq!(i.len(), 5);
        }
    }
}
