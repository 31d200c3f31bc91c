//! Instruction-level execution: iced-x86 decodes the case's bytes
//! ([`crate::decode`]) and computes effective addresses; each XSAVE-family
//! instruction has its own file, and this one dispatches to them, loads the
//! initial image and captures the final state the way the runner does.

use crate::case::{Case, INIT_BASE};
use crate::fault::{Fault, FaultAt};
use crate::latitude::{Freedoms, PARTIAL_SAVE};
use crate::layout;
use crate::memory::Memory;
use crate::model::CpuModel;
use crate::outcome::Outcome;
use crate::provenance::{Provenance, Site};
use crate::rules;
use crate::Xfeatures;
use iced_x86::{Code, DecoderError, Instruction, Register};

use crate::decode::{amd_lock_accepted, too_long};
pub use crate::decode::{decode, decode_checked, decode_lazily, decode_with_errors, stack_based};
pub use crate::machine::{read_source, Machine, Operand, Policy, Unsupported};

impl<'m> Machine<'m> {
    /// The memory operand's address: the common form, [r64 + disp], here
    /// (iced's general evaluation is a tenth of an XSAVEC's time; the
    /// displacement is sign-extended to 64 bits; segments ES, CS, SS, DS have
    /// base 0), the others by [`Machine::general_address`]. Inlined, and an
    /// address rather than an [`Operand`]: an operand returned through memory
    /// is read back wider than it was written (a store-forwarding stall).
    #[inline(always)]
    fn effective_address(&self, ins: &Instruction) -> Result<u64, Unsupported> {
        let base = ins.memory_base();
        if base.is_gpr64()
            && ins.memory_index() == Register::None
            && !matches!(ins.memory_segment(), Register::FS | Register::GS)
        {
            return Ok(self.gprs[base.number()].wrapping_add(ins.memory_displacement64()));
        }
        self.general_address(ins)
    }

    /// The memory operand, `rex_w` for the REX.W form.
    #[inline(always)]
    fn mem_operand(&self, ins: &Instruction, rex_w: bool) -> Result<Operand, Unsupported> {
        let addr = self.effective_address(ins)?;
        Ok(Operand {
            addr,
            rex_w,
            ss: stack_based(ins),
        })
    }

    #[inline(never)]
    fn general_address(&self, ins: &Instruction) -> Result<u64, Unsupported> {
        if matches!(ins.memory_segment(), Register::FS | Register::GS) {
            return Err(Unsupported("FS/GS segment override".into()));
        }
        let gprs = self.gprs;
        let rip = ins.next_ip();
        let addr = ins
            .virtual_address(0, 0, |reg, _, _| match reg {
                Register::RIP => Some(rip),
                Register::None => Some(0),
                Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
                r if r.is_gpr64() => Some(gprs[r.number()]),
                r if r.is_gpr32() => Some(gprs[r.number()] & 0xFFFF_FFFF),
                _ => None,
            })
            .ok_or_else(|| Unsupported(format!("cannot compute the address of `{ins}`")))?;
        crate::decode::a32_wrap(ins, addr, None, &self.mem)?;
        Ok(addr)
    }

    /// Runs one instruction. `Ok(Err(f))` is a fault (an outcome).
    pub fn step(&mut self, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
        let r = self.step_inner(ins);
        self.xinuse_quirk();
        // A 32-bit address size: the bytes' addresses wrap at 4 GiB
        // (`decode::a32_wrap`), for the fault and for the region it may hit.
        if let Some(region) = &mut self.lat.pf_region {
            region.wrap32 = crate::decode::is_a32(ins);
        }
        match r {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(f)) => Ok(Err(crate::decode::wrap_fault(ins, f))),
            Err(u) => Err(u),
        }
    }

    /// Quirk `xinuse-from-contents`: XINUSE is recomputed from the registers
    /// after every instruction, so every reader (XSAVE*, XGETBV(1)) sees it as
    /// the implementation computes it.
    fn xinuse_quirk(&mut self) {
        if self.model.quirks.xinuse_from_contents {
            self.st.xinuse =
                crate::state::xinuse_from_contents(&self.st, self.model.supported().bits());
        }
    }

    fn step_inner(&mut self, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
        if ins.is_invalid() {
            return Ok(Err(self.raise(&rules::INSN_UD_INVALID, Fault::Ud)));
        }
        if ins.has_lock_prefix() && !ins.op_code().can_use_lock_prefix() {
            // LOCK on an instruction that does not take it (every one modelled
            // here) is #UD (SDM2 exception tables). A lockable one with a memory
            // destination (`lock inc [rcx]`) is legal and not modelled: it falls
            // through to the helpers, which decline it.
            return Ok(Err(self.raise(&rules::INSN_UD_LOCK, Fault::Ud)));
        }
        let r = match ins.code() {
            Code::Xsave_mem | Code::Xsave64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xsave64_mem)?;
                crate::xsave::xsave(self, &op)
            }
            Code::Xsaveopt_mem | Code::Xsaveopt64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xsaveopt64_mem)?;
                crate::xsaveopt::xsaveopt(self, &op)
            }
            Code::Xsavec_mem | Code::Xsavec64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xsavec64_mem)?;
                crate::xsavec::xsavec(self, &op)
            }
            Code::Xsaves_mem | Code::Xsaves64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xsaves64_mem)?;
                crate::xsaves::xsaves(self, &op)
            }
            Code::Xrstor_mem | Code::Xrstor64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xrstor64_mem)?;
                crate::xrstor::xrstor(self, &op)
            }
            Code::Xrstors_mem | Code::Xrstors64_mem => {
                let op = self.mem_operand(ins, ins.code() == Code::Xrstors64_mem)?;
                crate::xrstors::xrstors(self, &op)
            }
            Code::Fxsave_m512byte | Code::Fxsave64_m512byte => {
                let op = self.mem_operand(ins, ins.code() == Code::Fxsave64_m512byte)?;
                crate::fxsave::fxsave(self, &op)
            }
            Code::Fxrstor_m512byte | Code::Fxrstor64_m512byte => {
                let op = self.mem_operand(ins, ins.code() == Code::Fxrstor64_m512byte)?;
                crate::fxrstor::fxrstor(self, &op)
            }
            Code::Xgetbv => crate::xgetbv::xgetbv(self),
            Code::Xsetbv => {
                if crate::xsetbv::exits_to_vmm(self) {
                    return Err(Unsupported(
                        "XSETBV in VMX non-root operation exits to the VMM".into(),
                    ));
                }
                crate::xsetbv::xsetbv(self)
            }
            _ => return crate::helpers::step_helper(self, ins),
        };
        // The fault, if any, by its variant: a whole-result copy reads the
        // callee's narrower writes back at once (a store-forwarding stall).
        match r {
            Ok(()) => Ok(Ok(())),
            Err(f) => Ok(Err(f)),
        }
    }

    /// Loads the case's initial image the way the runner's stub does: XRSTOR64
    /// (XRSTORS64 for a compacted image at CPL 0) with EDX:EAX = all ones. The
    /// runner sets up before the case's own control bits apply: the load (like the
    /// capture) runs with CR4.OSXSAVE = 1, CR0.TS = 0 and EFLAGS.AC = 0; XCR0,
    /// IA32_XSS, IA32_XFD and CPL are the case's.
    pub fn load_initial(&mut self, init: &[u8]) -> Result<Result<(), Fault>, Unsupported> {
        let ctl = self.ctl;
        self.ctl.cr4_osxsave = true;
        self.ctl.cr0_ts = false;
        self.ctl.eflags_ac = false;
        let r = self.load_initial_image(init);
        // XCR0 cannot change here; restore the case's own bits.
        self.ctl = ctl;
        r
    }

    /// [`Machine::load_initial`] reading the image where it is, without copying
    /// it into memory of its own.
    pub fn load_initial_borrowed(
        &mut self,
        init: &'m [u8],
    ) -> Result<Result<(), Fault>, Unsupported> {
        let ctl = self.ctl;
        self.ctl.cr4_osxsave = true;
        self.ctl.cr0_ts = false;
        self.ctl.eflags_ac = false;
        self.image = Some(init);
        let saved = self.gprs;
        self.gprs[0] = 0xFFFF_FFFF;
        self.gprs[2] = 0xFFFF_FFFF;
        let r = self.initial_restore(init);
        self.xinuse_quirk();
        self.gprs = saved;
        self.image = None;
        self.ctl = ctl;
        Ok(r)
    }

    /// The runner's XRSTOR64 (XRSTORS64 for a compacted image at CPL 0) of the
    /// image at [`INIT_BASE`].
    fn initial_restore(&mut self, init: &[u8]) -> Result<(), Fault> {
        let op = Operand {
            addr: INIT_BASE,
            rex_w: true,
            ss: false,
        };
        let xcomp = init
            .get(520..528)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        if xcomp >> 63 == 1 && self.ctl.cpl == 0 && self.model.xsaves {
            crate::xrstors::xrstors(self, &op)
        } else {
            crate::xrstor::xrstor(self, &op)
        }
    }

    fn load_initial_image(&mut self, init: &[u8]) -> Result<Result<(), Fault>, Unsupported> {
        let pages = init.len().div_ceil(crate::memory::PAGE as usize);
        // The image, zero to the end of its last page (no zeroing of what the
        // image covers).
        let mut bytes = Vec::with_capacity(pages * crate::memory::PAGE as usize);
        bytes.extend_from_slice(init);
        bytes.resize(pages * crate::memory::PAGE as usize, 0);
        let m = Memory {
            base: INIT_BASE,
            bytes: bytes.into(),
            prot: vec![crate::memory::Prot::ReadWrite; pages],
        };
        let arena = std::mem::replace(&mut self.mem, m);
        let saved = self.gprs;
        self.gprs[0] = 0xFFFF_FFFF;
        self.gprs[2] = 0xFFFF_FFFF;
        let r = self.initial_restore(init);
        self.xinuse_quirk();
        self.gprs = saved;
        self.mem = arena;
        Ok(r)
    }

    /// The runner's capture: XSAVE64 with RFBM = all ones into a zeroed
    /// standard-format area, and XGETBV(1).
    pub fn capture(&mut self) -> (Vec<u8>, Option<u64>) {
        let size = layout::standard_end(self.model, Xfeatures::from_bits_retain(self.ctl.xcr0));
        let mut area = vec![0u8; size as usize];
        crate::save::store_standard(self, &mut area, self.ctl.xcr0, true, true);
        let hdr = crate::save::xinuse_for_xstate_bv(self, self.ctl.xcr0);
        area[512..520].copy_from_slice(&hdr.to_le_bytes());
        let xinuse = if self.model.xgetbv1 {
            Some(crate::xgetbv::xgetbv1_value(self))
        } else {
            None
        };
        (area, xinuse)
    }
}

/// The components (and whether MXCSR) a restore instruction loads or
/// initializes: FXRSTOR x87, SSE and MXCSR; XRSTOR(S) its RFBM (MXCSR with
/// SSE, or AVX in the standard form). Nothing for any other instruction.
fn restore_targets(m: &Machine, ins: &Instruction) -> (u64, bool) {
    let edx_eax = (m.gprs[2] << 32) | (m.gprs[0] & 0xFFFF_FFFF);
    match ins.code() {
        Code::Fxrstor_m512byte | Code::Fxrstor64_m512byte => (0b11, true),
        Code::Xrstor_mem | Code::Xrstor64_mem => {
            let rfbm = edx_eax & m.ctl.xcr0;
            (rfbm, rfbm & 0b110 != 0)
        }
        Code::Xrstors_mem | Code::Xrstors64_mem => {
            let rfbm = edx_eax & (m.ctl.xcr0 | m.ctl.xss);
            (rfbm, rfbm & 0b10 != 0)
        }
        _ => (0, false),
    }
}

/// Checks that a case is one the emulator can run on `model`: a valid XCR0 for the
/// model, IA32_XSS and IA32_XFD within what it supports, an initial image of at
/// least 576 bytes, a page-aligned arena with one protection per page that does
/// not wrap the address space, and code of at most [`crate::case::MAX_CODE`] bytes.
pub fn validate(model: &CpuModel, case: &Case) -> Result<(), Unsupported> {
    let all = layout::compacted_slots(model, model.supported())
        .last()
        .map_or(layout::EXTENDED_START, |s| s.offset.saturating_add(s.size));
    let std = layout::standard_end(model, Xfeatures::from_bits_retain(model.xcr0_supported));
    if all.max(std) > 1 << 20 {
        return Err(Unsupported(format!(
            "model {} describes an XSAVE area of {} bytes (at most 1 MiB)",
            model.name,
            all.max(std)
        )));
    }
    let c = &case.control;
    if !crate::xsetbv::valid_xcr0(model.xcr0_supported, c.xcr0) {
        return Err(Unsupported(format!(
            "XCR0 {:#x} is not a valid XCR0 for model {} (supported {:#x})",
            c.xcr0, model.name, model.xcr0_supported
        )));
    }
    if c.xss & !model.xss_supported != 0 {
        return Err(Unsupported(format!(
            "IA32_XSS {:#x} sets bits model {} does not support ({:#x})",
            c.xss, model.name, model.xss_supported
        )));
    }
    // Of the supervisor components only CET_U and CET_S are modelled: PT (TraceEn
    // handling), PASID, HDC, UINTR (UINV), Arch LBR (depth) and HWP have XSAVES/
    // XRSTORS rules of their own (reference §3.4, §6.3-6.6) that are not.
    let unmodelled = c.xss & !(Xfeatures::CET_U | Xfeatures::CET_S).bits();
    if unmodelled != 0 {
        return Err(Unsupported(format!(
            "IA32_XSS enables {}: their XSAVES/XRSTORS rules are not modelled",
            Xfeatures::from_bits_retain(unmodelled).names()
        )));
    }
    // (`indices` leaves bit 63 out: no component 63 supports XFD.)
    let xfd_ok = || {
        c.xfd >> 63 == 0
            && Xfeatures::from_bits_retain(c.xfd)
                .indices()
                .all(|i| model.component(i).is_some_and(|d| d.xfd))
    };
    if c.xfd != 0 && (!model.xfd || !xfd_ok()) {
        return Err(Unsupported(format!(
            "IA32_XFD {:#x} sets bits model {} does not support",
            c.xfd, model.name
        )));
    }
    if case.init.len() < layout::EXTENDED_START as usize {
        return Err(Unsupported(format!(
            "initial image of {} bytes (at least 576)",
            case.init.len()
        )));
    }
    let mem = &case.memory;
    let page = crate::memory::PAGE;
    if !mem.base.is_multiple_of(page)
        || mem.bytes.len() as u64 != mem.prot.len() as u64 * page
        || mem.base.checked_add(mem.bytes.len() as u64).is_none()
    {
        return Err(Unsupported(format!(
            "arena at {:#x}: {} bytes and {} page protections (page-aligned, one per 4 KiB page)",
            mem.base,
            mem.bytes.len(),
            mem.prot.len()
        )));
    }
    if case.code.len() > crate::case::MAX_CODE {
        return Err(Unsupported(format!(
            "{} bytes of code (at most {})",
            case.code.len(),
            crate::case::MAX_CODE
        )));
    }
    Ok(())
}

/// Runs a case on the emulator.
pub fn run(
    model: &CpuModel,
    case: &Case,
    policy: Policy,
) -> Result<(Outcome, Freedoms), Unsupported> {
    run_forced(model, case, policy, None).map(|(o, f, _)| (o, f))
}

/// Runs a case, stopping with `forced` (a fault another implementation reported)
/// when the run reaches that instruction: under [`Policy::Architectural`] the
/// instruction's own effects become latitude (what it may have done before the
/// fault: any of its writes, any of its state changes).
pub fn run_forced(
    model: &CpuModel,
    case: &Case,
    policy: Policy,
    forced: Option<FaultAt>,
) -> Result<(Outcome, Freedoms, Provenance), Unsupported> {
    run_then(model, case, policy, forced, |o, lat, prov| (o, lat, prov))
}

/// [`run_forced`], the run's results handed to `keep` where the machine
/// holds them: a prediction drops the latitude and provenance unmoved.
#[inline(always)]
pub(crate) fn run_then<R>(
    model: &CpuModel,
    case: &Case,
    policy: Policy,
    forced: Option<FaultAt>,
    keep: impl FnOnce(Outcome, Freedoms, Provenance) -> R,
) -> Result<R, Unsupported> {
    validate(model, case)?;
    let (st, writes) = crate::reuse::take(model);
    let mut m = Machine::with_buffers(model, case.control, case.memory.clone(), policy, st, writes);
    let mut fault = None;
    m.clear_why();
    m.site = Site::Initial;
    if let Err(f) = m.load_initial_borrowed(&case.init)? {
        m.prov.fault = Some(m.take_why(&f));
        fault = Some(FaultAt {
            fault: f,
            insn: None,
        });
    }
    m.gprs = case.gprs;
    if fault.is_none() {
        let options = model.decoder_options();
        for (k, (ins, error)) in decode_lazily(&case.code, options).enumerate() {
            let ins = &ins;
            if error == DecoderError::NoMoreBytes {
                return Err(Unsupported(format!(
                    "instruction {k} is cut off by the end of the code (hardware would fetch past it)"
                )));
            }
            if let Some(runs_as) = (error == DecoderError::InvalidInstruction)
                .then(|| amd_lock_accepted(model, &case.code, ins))
                .flatten()
            {
                return Err(Unsupported(format!(
                    "instruction {k}: {runs_as} is not modelled"
                )));
            }
            if error == DecoderError::InvalidInstruction {
                match too_long(&case.code, ins, model) {
                    // SDM Vol.2 §2.3.11: longer than 15 bytes is #GP(0), before anything runs.
                    Some(true) => {
                        m.prov.fault = Some(&rules::INSN_GP_TOO_LONG);
                        fault = Some(FaultAt {
                            fault: Fault::gp0(),
                            insn: Some(k),
                        });
                        break;
                    }
                    Some(false) => {}
                    None => {
                        return Err(Unsupported(format!(
                            "instruction {k}: an undefined opcode after prefixes, whose length (#GP(0) past 15 bytes, else #UD) is the hardware length decoder's"
                        )))
                    }
                }
            }
            m.lat.pf_region = None;
            m.lat.alt_fault.clear();
            m.lat.alt_fresh.clear();
            m.site = Site::Insn(k);
            let forced_here = forced.filter(|f| f.insn == Some(k));
            let before = forced_here.map(|_| {
                (
                    crate::state::XState::clone(&m.st),
                    m.mem.bytes.clone(),
                    m.gprs,
                    m.lat.state_alt.clone(),
                )
            });
            let gprs_before = m.gprs;
            let coupled_before = m.lat.coupled.len();
            m.clear_why();
            let r = m.step(ins)?;
            if ins.code() != Code::Xgetbv {
                // A GPR written by anything else loses the latitude XGETBV gave it.
                let dest = (ins.op_count() > 0 && ins.op0_kind() == iced_x86::OpKind::Register)
                    .then(|| ins.op0_register().full_register())
                    .filter(|r| r.is_gpr64())
                    .map(|r| r.number());
                for (k, free) in m.lat.gpr_free.iter_mut().enumerate() {
                    if m.gprs[k] != gprs_before[k] || dest == Some(k) {
                        *free = 0;
                    }
                }
            }
            if let Some(r) = m.lat.pf_region.take() {
                m.lat.pf_regions.insert(k, r);
            }
            if let (Some(f), Some((st, mem, gprs, state_alt))) = (forced_here, before) {
                if policy == Policy::Architectural {
                    let base = m.mem.base;
                    for (a, (&new, &old)) in m.mem.bytes.iter().zip(&mem).enumerate() {
                        if new != old {
                            m.lat
                                .alt(base.wrapping_add(a as u64), &[new], &PARTIAL_SAVE);
                        }
                    }
                    // Its coupled choices: it did not complete.
                    m.lat.coupled.truncate(coupled_before);
                    let after = std::mem::replace(&mut *m.st, st);
                    m.lat.partial_states.push(after);
                    m.lat.state_alt = state_alt;
                    // Beyond that partial update, what it would have loaded
                    // stays as it was (SDM3 §6.5).
                    let (mask, mxcsr) = restore_targets(&m, ins);
                    m.set_by(mask, &rules::FAULT_LEAVES_STATE);
                    if mxcsr {
                        m.mxcsr_by(&rules::FAULT_LEAVES_STATE);
                    }
                } else {
                    *m.st = st;
                }
                m.mem.bytes = mem;
                m.gprs = gprs;
                fault = Some(f);
                break;
            }
            if let Err(f) = r {
                if policy == Policy::Architectural {
                    m.prov.fault = Some(m.take_why(&f));
                    // What a restore would have loaded stays as it was (SDM3 §6.5):
                    // a difference there breaks the fault's rule, not the rule of
                    // whatever set the value before.
                    let (mask, mxcsr) = restore_targets(&m, ins);
                    m.set_by(mask, &rules::FAULT_LEAVES_STATE);
                    if mxcsr {
                        m.mxcsr_by(&rules::FAULT_LEAVES_STATE);
                    }
                }
                let alts = std::mem::take(&mut m.lat.alt_fault);
                if !alts.is_empty() {
                    m.lat.alt_faults.insert(k, alts);
                }
                fault = Some(FaultAt {
                    fault: f,
                    insn: Some(k),
                });
                break;
            }
        }
    }
    if fault.is_some() && m.ctl.cpl == 3 && m.quirks().linux_signal_fpsse {
        // The OS delivers the fault as a signal; sigreturn's XRSTOR sets XINUSE[1:0].
        // Under `xinuse-by-contents` that XRSTOR reloads every component in use
        // (and x87, SSE) and sets each bit as its contents say (AMD Zen 5 host:
        // MOVQ XMM7, R8 with ZMM_Hi256 in use, then a #PF: XINUSE[2] = 0).
        m.st.xinuse = if m.quirks().xinuse_by_contents {
            m.st.not_init(m.st.xinuse | 3)
        } else {
            m.st.xinuse | 3
        };
    }
    let (final_image, xinuse) = m.capture();
    // The capture shows the components of XCR0 not armed for XFD (the others
    // as their init configuration, or not at all): only their bytes keep
    // alternatives.
    let shown = m.ctl.xcr0 & !m.ctl.xfd_armed();
    m.lat.state_alt.retain(|&(i, _), _| shown >> i & 1 == 1);
    let supervisor = m.supervisor_contents();
    for alt in std::mem::take(&mut m.lat.partial_states) {
        let own = std::mem::replace(&mut *m.st, alt);
        let (img, _) = m.capture();
        let sup = m.supervisor_contents();
        *m.st = own;
        if img != final_image && !m.lat.final_alts.contains(&img) {
            m.lat.final_alts.push(img);
        }
        if sup != supervisor && !m.lat.supervisor_alts.contains(&sup) {
            m.lat.supervisor_alts.push(sup);
        }
    }
    let out = Outcome {
        fault,
        final_image,
        xinuse,
        gprs: m.gprs,
        memory: std::mem::take(&mut m.mem.bytes),
        supervisor,
    };
    crate::reuse::give(m.st, m.spare_writes);
    Ok(keep(out, m.lat, m.prov))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's arena is the case's own bytes until the run writes memory
    /// (`ArenaBytes`): a case without code hands them to the outcome uncopied;
    /// FXSAVE64 [RDI] writes the outcome's copy (FCW 037FH at +0, MXCSR 1F80H
    /// at +24: SDM2 FXSAVE, the init values) and leaves the case's zeros alone.
    #[test]
    fn a_run_shares_the_case_arena_until_it_writes_and_never_writes_the_case() {
        let model = CpuModel::builtin("zen5").expect("built-in");
        let mut case = crate::Case::new(&model, crate::Control::user(&model));
        let (o, _) = run(&model, &case, Policy::Predict).expect("supported");
        assert!(o.memory.shares(&case.memory.bytes));
        case.code = vec![0x48, 0x0f, 0xae, 0x07];
        case.gprs[7] = crate::case::ARENA_BASE;
        let (o, _) = run(&model, &case, Policy::Predict).expect("supported");
        assert_eq!(o.fault, None);
        assert!(!o.memory.shares(&case.memory.bytes));
        assert_eq!(o.memory[0..2], [0x7f, 0x03]);
        assert_eq!(o.memory[24..28], [0x80, 0x1f, 0, 0]);
        assert!(case.memory.bytes.iter().all(|&b| b == 0));
    }

    /// The [r64 + disp] shortcut of `effective_address` gives iced's address:
    /// no displacement, disp8 and disp32 of both signs, a wrap past 2^64, RSP
    /// and R13 bases (SIB and mod forms), and the forms left to iced (RIP, an
    /// index, 32-bit addressing) unchanged.
    #[test]
    fn effective_address_shortcut_equals_iced() {
        let model = CpuModel::builtin("zen5").expect("built-in");
        let mut m = Machine::new(
            &model,
            crate::Control::user(&model),
            Memory::new(crate::case::ARENA_BASE, 1),
            Policy::Predict,
        );
        for (k, g) in m.gprs.iter_mut().enumerate() {
            *g = 0x20_0000_0000u64.wrapping_add(k as u64 * 0x1111) ^ if k == 5 { !0 } else { 0 };
        }
        let codes: &[&[u8]] = &[
            &[0x48, 0x0f, 0xae, 0x27],                         // xsave64 [rdi]
            &[0x48, 0x0f, 0xae, 0x67, 0x40],                   // [rdi+40h]
            &[0x48, 0x0f, 0xae, 0x67, 0xc0],                   // [rdi-40h]
            &[0x48, 0x0f, 0xae, 0xa7, 0x00, 0x10, 0, 0],       // [rdi+1000h]
            &[0x48, 0x0f, 0xae, 0xa7, 0x00, 0xf0, 0xff, 0xff], // [rdi-1000h]
            &[0x0f, 0xae, 0x65, 0x10],                         // [rbp+10h], RBP ~ all ones: wraps
            &[0x0f, 0xae, 0x24, 0x24],                         // [rsp]
            &[0x41, 0x0f, 0xae, 0x65, 0x08],                   // [r13+8]
            &[0x0f, 0xae, 0x25, 0x10, 0, 0, 0],                // [rip+10h]
            &[0x0f, 0xae, 0x24, 0x4f],                         // [rdi+rcx*2]
            &[0x67, 0x0f, 0xae, 0x67, 0xf0],                   // [edi-10h]
        ];
        for code in codes {
            let ins = decode(code)[0];
            let gprs = m.gprs;
            let want = ins
                .virtual_address(0, 0, |reg, _, _| match reg {
                    Register::RIP => Some(ins.next_ip()),
                    Register::None => Some(0),
                    Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
                    r if r.is_gpr64() => Some(gprs[r.number()]),
                    r if r.is_gpr32() => Some(gprs[r.number()] & 0xFFFF_FFFF),
                    _ => None,
                })
                .expect("address");
            let got = m.effective_address(&ins).expect("address");
            assert_eq!(got, want, "{ins}");
        }
    }
}
