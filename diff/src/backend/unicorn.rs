//! `unicorn`, `unicorn:haswell`: Unicorn 2 (QEMU 5 TCG in process, crate
//! unicorn-engine), with the CPU model Unicorn calls SKYLAKE_SERVER (the default:
//! XCR0 support 0x2e7, XSAVEOPT, XGETBV1) or HASWELL (0x7, XSAVEOPT only).
//! Unicorn's own default x86-64 CPU (QEMU64) has no XSAVE at all.
//!
//! Unicorn runs at CPL 0 with CR4.OSXSAVE = 1 and no paging. XCR0 is not a
//! register of its API: the backend sets it with XSETBV before the runner's
//! initial XRSTOR64 (EDX:EAX = all ones), writes CR0.TS/EM and CR4.OSXSAVE/
//! OSFXSR as the case says through the register API, runs the case's code, then
//! captures with XGETBV(0), XSAVE64 (all ones) into a zeroed area and XGETBV(1).
//! Faults: #UD comes back as `UC_ERR_INSN_INVALID`, other exceptions through the
//! interrupt hook (the error code is not visible: #GP is reported as #GP(0), the
//! only code the XSAVE family raises); an access to a page the case leaves
//! unmapped (`none`) or read-only is reported as #PF with the access's address
//! (P = 0 for `none`, P = 1 for read-only, W and U as the access and CPL say).
//!
//! Refused (counted skips): CPL-3 cases whose code holds XSETBV (Unicorn runs it
//! at CPL 0), IA32_XSS or IA32_XFD not 0, alignment checking, VMX non-root,
//! compacted initial images (no XRSTORS), an XCR0 Unicorn's XSETBV rejects.

use super::{Backend, Skip};
use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use std::cell::Cell;
use std::rc::Rc;
use unicorn_engine::unicorn_const::{uc_error, Arch, HookType, MemType, Mode, Prot as UcProt};
use unicorn_engine::{RegisterX86 as R, Unicorn, X86CpuModel};
use xsave_emu::case::{ARENA_BASE, CODE_BASE, INIT_BASE};
use xsave_emu::memory::PAGE;
use xsave_emu::{layout, Case, Control, CpuModel, Fault, FaultAt, Outcome, Prot, Xfeatures};
use xsave_native::runner::insn_offsets;

/// Where the backend's own code (prologue, epilogue: separate pages, so that no
/// translated block of one is reused for the other) and capture area live.
const HELPER_CODE: u64 = CODE_BASE + 0x1_0000;
const EPILOGUE: u64 = HELPER_CODE + PAGE;
const CAPTURE: u64 = INIT_BASE + 0x10_0000;
const CAPTURE_SIZE: u64 = 0x10000;
/// XCR0 read back and XINUSE, stored past the capture area's image.
const CAPTURE_XCR0: u64 = CAPTURE + 0xF000;
const CAPTURE_XINUSE: u64 = CAPTURE + 0xF008;

const GPRS: [R; 16] = [
    R::RAX,
    R::RCX,
    R::RDX,
    R::RBX,
    R::RSP,
    R::RBP,
    R::RSI,
    R::RDI,
    R::R8,
    R::R9,
    R::R10,
    R::R11,
    R::R12,
    R::R13,
    R::R14,
    R::R15,
];

pub struct UnicornBackend {
    cpu: X86CpuModel,
    model: CpuModel,
}

impl UnicornBackend {
    /// `arg`: empty or `skylake-server` (default), or `haswell`.
    pub fn new(arg: &str) -> Result<UnicornBackend, String> {
        let (cpu, name) = match arg {
            "" | "skylake-server" => (X86CpuModel::SKYLAKE_SERVER, "unicorn-skylake-server"),
            "haswell" => (X86CpuModel::HASWELL, "unicorn-haswell"),
            _ => {
                return Err(format!(
                    "unicorn:{arg}: unknown CPU (expected skylake-server or haswell)"
                ))
            }
        };
        let model =
            CpuModel::builtin(name).ok_or_else(|| format!("built-in model {name} missing"))?;
        Ok(UnicornBackend { cpu, model })
    }

    fn refusal(&self, case: &Case) -> Result<(), Skip> {
        let c = &case.control;
        let r = |s: &str| Err(Skip(format!("unicorn: {s}")));
        if c.xss != 0 {
            return r("IA32_XSS is not 0 (Unicorn has no IA32_XSS)");
        }
        if c.xfd != 0 {
            return r("IA32_XFD is not 0 (Unicorn has no XFD)");
        }
        if c.vmx_nonroot {
            return r("VMX non-root");
        }
        if c.alignment_checking() {
            return r("alignment checking (Unicorn runs at CPL 0)");
        }
        if c.xcr0 & !self.model.xcr0_supported != 0 || c.xcr0 & 1 == 0 {
            return r("XCR0 outside the model's support");
        }
        if case.init.get(527).is_some_and(|b| b >> 7 == 1) {
            return r("compacted initial image (needs XRSTORS)");
        }
        let offsets = insn_offsets(&case.code, DecoderOptions::NONE)
            .ok_or_else(|| Skip("unicorn: code does not decode into whole instructions".into()))?;
        if c.cpl == 3 {
            let mut d = Decoder::with_ip(64, &case.code, CODE_BASE, DecoderOptions::NONE);
            for _ in &offsets {
                if d.decode().mnemonic() == Mnemonic::Xsetbv {
                    return r("XSETBV at CPL 3 (Unicorn runs at CPL 0)");
                }
            }
        }
        Ok(())
    }
}

fn assemble(at: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    f(&mut a).expect("helper code assembles");
    a.assemble(at).expect("helper code assembles")
}

/// XSETBV(xcr0) then XRSTOR64 [INIT_BASE] with EDX:EAX = all ones.
fn prologue(xcr0: u64) -> (Vec<u8>, usize) {
    let set = assemble(HELPER_CODE, |a| {
        a.mov(ecx, 0)?;
        a.mov(eax, xcr0 as u32)?;
        a.mov(edx, (xcr0 >> 32) as u32)?;
        a.xsetbv()
    });
    let n = set.len();
    let all = assemble(HELPER_CODE, |a| {
        a.mov(ecx, 0)?;
        a.mov(eax, xcr0 as u32)?;
        a.mov(edx, (xcr0 >> 32) as u32)?;
        a.xsetbv()?;
        a.mov(rbx, INIT_BASE)?;
        a.mov(eax, -1)?;
        a.mov(edx, -1)?;
        a.xrstor64(ptr(rbx))
    });
    (all, n)
}

/// XGETBV(0), XSAVE64 (all ones) into the capture area, XGETBV(1) if the CPU has it.
fn epilogue(xgetbv1: bool) -> Vec<u8> {
    assemble(EPILOGUE, |a| {
        a.mov(rbx, CAPTURE)?;
        a.xor(ecx, ecx)?;
        a.xgetbv()?;
        a.mov(rsi, CAPTURE_XCR0)?;
        a.mov(dword_ptr(rsi), eax)?;
        a.mov(dword_ptr(rsi + 4), edx)?;
        a.mov(eax, -1)?;
        a.mov(edx, -1)?;
        a.xsave64(ptr(rbx))?;
        if xgetbv1 {
            a.mov(ecx, 1)?;
            a.xgetbv()?;
            a.mov(rsi, CAPTURE_XINUSE)?;
            a.mov(dword_ptr(rsi), eax)?;
            a.mov(dword_ptr(rsi + 4), edx)?;
        }
        a.nop()
    })
}

/// What stopped a run: an exception vector from the interrupt hook, or an invalid
/// memory access from the memory hook (address, write, mapped).
#[derive(Default)]
struct Stops {
    intno: Cell<Option<u32>>,
    access: Cell<Option<(u64, bool, bool)>>,
}

fn uc_err(what: &str, e: uc_error) -> Skip {
    Skip(format!("unicorn: {what}: {e:?}"))
}

impl Backend for UnicornBackend {
    fn name(&self) -> String {
        "unicorn".into()
    }
    fn model(&self) -> &CpuModel {
        &self.model
    }
    fn control(&self) -> Control {
        Control::user(&self.model)
    }
    /// The model is the built-in one Unicorn's CPU model is taken for; the
    /// CPUID Unicorn emulates is not read.
    fn enumerates_layout(&self) -> bool {
        false
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip> {
        self.refusal(case)?;
        let offsets = insn_offsets(&case.code, DecoderOptions::NONE).unwrap_or_default();
        let c = case.control;
        let mut uc = Unicorn::new(Arch::X86, Mode::MODE_64).map_err(|e| uc_err("new", e))?;
        uc.ctl_set_cpu_model(self.cpu as i32)
            .map_err(|e| uc_err("cpu model", e))?;
        let code_len = (case.code.len() as u64).div_ceil(PAGE).max(1) * PAGE;
        uc.mem_map(CODE_BASE, code_len, UcProt::ALL)
            .map_err(|e| uc_err("map code", e))?;
        uc.mem_map(HELPER_CODE, 2 * PAGE, UcProt::ALL)
            .map_err(|e| uc_err("map helper", e))?;
        let init_len = (case.init.len() as u64).div_ceil(PAGE) * PAGE;
        uc.mem_map(INIT_BASE, init_len, UcProt::READ | UcProt::WRITE)
            .map_err(|e| uc_err("map init", e))?;
        uc.mem_map(CAPTURE, CAPTURE_SIZE, UcProt::READ | UcProt::WRITE)
            .map_err(|e| uc_err("map capture", e))?;
        uc.mem_write(CODE_BASE, &case.code)
            .map_err(|e| uc_err("write code", e))?;
        uc.mem_write(INIT_BASE, &case.init)
            .map_err(|e| uc_err("write init", e))?;
        for (k, p) in case.memory.prot.iter().enumerate() {
            let a = case.memory.base + k as u64 * PAGE;
            let prot = match p {
                Prot::None => continue,
                Prot::Read => UcProt::READ,
                Prot::ReadWrite => UcProt::READ | UcProt::WRITE,
            };
            uc.mem_map(a, PAGE, prot)
                .map_err(|e| uc_err("map arena", e))?;
            let off = k * PAGE as usize;
            uc.mem_write(a, &case.memory.bytes[off..off + PAGE as usize])
                .map_err(|e| uc_err("write arena", e))?;
        }
        let stops = Rc::new(Stops::default());
        let s = stops.clone();
        uc.add_intr_hook(move |uc, n| {
            s.intno.set(Some(n));
            let _ = uc.emu_stop();
        })
        .map_err(|e| uc_err("interrupt hook", e))?;
        let s = stops.clone();
        uc.add_mem_hook(HookType::MEM_INVALID, 1, 0, move |_, t, addr, _, _| {
            let write = matches!(t, MemType::WRITE_UNMAPPED | MemType::WRITE_PROT);
            let mapped = matches!(
                t,
                MemType::WRITE_PROT | MemType::READ_PROT | MemType::FETCH_PROT
            );
            if s.access.get().is_none() {
                s.access.set(Some((addr, write, mapped)));
            }
            false
        })
        .map_err(|e| uc_err("memory hook", e))?;

        // The runner's initial XRSTOR64, with CR4.OSXSAVE = 1 and CR0.TS = 0.
        let base_cr0 = uc.reg_read(R::CR0).map_err(|e| uc_err("CR0", e))? & !((1 << 3) | (1 << 2));
        let base_cr4 = uc.reg_read(R::CR4).map_err(|e| uc_err("CR4", e))? | (1 << 18) | (1 << 9);
        uc.reg_write(R::CR0, base_cr0)
            .map_err(|e| uc_err("CR0", e))?;
        uc.reg_write(R::CR4, base_cr4)
            .map_err(|e| uc_err("CR4", e))?;
        let (pro, xsetbv_end) = prologue(c.xcr0);
        uc.mem_write(HELPER_CODE, &pro)
            .map_err(|e| uc_err("write prologue", e))?;
        let r = uc.emu_start(HELPER_CODE, HELPER_CODE + pro.len() as u64, 0, 0);
        let rip = uc.reg_read(R::RIP).unwrap_or(0);
        let mut fault = None;
        if r.is_err() || stops.intno.get().is_some() || stops.access.get().is_some() {
            if rip < HELPER_CODE + xsetbv_end as u64 {
                return Err(Skip(format!("unicorn: XSETBV({:#x}) refused", c.xcr0)));
            }
            fault = Some(FaultAt {
                fault: to_fault(r.err(), &stops, 0),
                insn: None,
            });
        }

        // The case.
        for (k, r) in GPRS.iter().enumerate() {
            uc.reg_write(*r, case.gprs[k])
                .map_err(|e| uc_err("GPR", e))?;
        }
        if fault.is_none() {
            let case_cr0 = base_cr0 | (c.cr0_ts as u64) << 3 | (c.cr0_em as u64) << 2;
            let case_cr4 = (base_cr4 & !((1 << 18) | (1 << 9)))
                | (c.cr4_osxsave as u64) << 18
                | (c.cr4_osfxsr as u64) << 9;
            uc.reg_write(R::CR0, case_cr0)
                .map_err(|e| uc_err("CR0", e))?;
            uc.reg_write(R::CR4, case_cr4)
                .map_err(|e| uc_err("CR4", e))?;
            stops.intno.set(None);
            stops.access.set(None);
            let end = CODE_BASE + case.code.len() as u64;
            let r = uc.emu_start(CODE_BASE, end, 0, 0);
            let rip = uc.reg_read(R::RIP).unwrap_or(end);
            if r.is_err() || stops.intno.get().is_some() {
                let at = rip.wrapping_sub(CODE_BASE) as usize;
                let insn = offsets.iter().rposition(|&o| o <= at).unwrap_or(0);
                fault = Some(FaultAt {
                    fault: to_fault(r.err(), &stops, c.cpl),
                    insn: Some(insn),
                });
            }
        }
        let mut gprs = [0u64; 16];
        for (k, r) in GPRS.iter().enumerate() {
            gprs[k] = uc.reg_read(*r).map_err(|e| uc_err("GPR", e))?;
        }

        // The capture, with CR0.TS = 0 and CR4.OSXSAVE = 1 again.
        uc.reg_write(R::CR0, base_cr0)
            .map_err(|e| uc_err("CR0", e))?;
        uc.reg_write(R::CR4, base_cr4)
            .map_err(|e| uc_err("CR4", e))?;
        let epi = epilogue(self.model.xgetbv1);
        uc.mem_write(EPILOGUE, &epi)
            .map_err(|e| uc_err("write epilogue", e))?;
        stops.intno.set(None);
        stops.access.set(None);
        if let Err(e) = uc.emu_start(EPILOGUE, EPILOGUE + epi.len() as u64, 0, 0) {
            let rip = uc.reg_read(R::RIP).unwrap_or(0);
            return Err(Skip(format!(
                "unicorn: the capture stopped with {e:?} at {rip:#x} (access {:x?})",
                stops.access.get()
            )));
        }
        if let Some(n) = stops.intno.get() {
            return Err(Skip(format!("unicorn: the capture raised vector {n}")));
        }
        let mut w = [0u8; 8];
        uc.mem_read(CAPTURE_XCR0, &mut w)
            .map_err(|e| uc_err("read XCR0", e))?;
        let xcr0 = u64::from_le_bytes(w);
        // Sized for the case's XCR0 (as the expected outcome is) or a larger XCR0 the
        // case set with XSETBV; a smaller one leaves the rest of the zeroed area as is.
        let mask = Xfeatures::from_bits_retain(xcr0 | c.xcr0);
        let size = layout::standard(&self.model, mask).size as usize;
        let mut final_image = vec![0u8; size];
        uc.mem_read(CAPTURE, &mut final_image)
            .map_err(|e| uc_err("read capture", e))?;
        let xinuse = if self.model.xgetbv1 {
            uc.mem_read(CAPTURE_XINUSE, &mut w)
                .map_err(|e| uc_err("read XINUSE", e))?;
            Some(u64::from_le_bytes(w))
        } else {
            None
        };
        let mut memory = case.memory.bytes.clone();
        for (k, p) in case.memory.prot.iter().enumerate() {
            if *p != Prot::None {
                let off = k * PAGE as usize;
                uc.mem_read(
                    ARENA_BASE + off as u64,
                    &mut memory[off..off + PAGE as usize],
                )
                .map_err(|e| uc_err("read arena", e))?;
            }
        }
        Ok(Outcome {
            fault,
            final_image,
            xinuse,
            gprs,
            memory,
            supervisor: Vec::new(),
        })
    }
}

/// The fault a stopped run stands for.
fn to_fault(err: Option<uc_error>, stops: &Stops, cpl: u8) -> Fault {
    if let Some(n) = stops.intno.get() {
        return match n {
            6 => Fault::Ud,
            7 => Fault::Nm,
            12 => Fault::Ss,
            17 => Fault::Ac,
            _ => Fault::gp0(),
        };
    }
    if let Some((addr, write, mapped)) = stops.access.get() {
        let err = mapped as u32 | (write as u32) << 1 | ((cpl == 3) as u32) << 2;
        return Fault::Pf { err, addr };
    }
    match err {
        Some(uc_error::INSN_INVALID) | None => Fault::Ud,
        Some(_) => Fault::gp0(),
    }
}
