//! Instruction-level execution: iced-x86 decodes the case's bytes and computes
//! effective addresses; each XSAVE-family instruction has its own file.

use crate::case::{Case, CODE_BASE, INIT_BASE};
use crate::control::Control;
use crate::fault::{Fault, FaultAt};
use crate::layout;
use crate::memory::Memory;
use crate::model::CpuModel;
use crate::outcome::Outcome;
use crate::state::XState;
use crate::{envelope::Latitude, Xfeatures};
use iced_x86::{Code, CpuidFeature, Decoder, DecoderError, DecoderOptions, Instruction, Register};

/// How the machine resolves what the SDM leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Exactly what the model's silicon does, quirks included.
    Predict,
    /// The architecture alone: no quirks; choices the SDM leaves open are
    /// recorded as latitude for the envelope.
    Architectural,
}

/// Why the emulator cannot run a case (not a fault: a limit of the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub struct Machine<'m> {
    pub model: &'m CpuModel,
    pub ctl: Control,
    pub st: XState,
    pub mem: Memory,
    pub gprs: [u64; 16],
    pub policy: Policy,
    pub lat: Latitude,
    /// A save's write collection, kept between instructions for its capacity.
    spare_writes: crate::area::Writes,
    /// While the runner's initial XRSTOR runs from a borrowed image: that image
    /// at [`INIT_BASE`] (reads come from it, not from the arena; see
    /// [`Machine::read_check`]).
    image: Option<&'m [u8]>,
}

/// The decoded memory operand of an XSAVE-family instruction.
#[derive(Debug, Clone, Copy)]
pub struct Operand {
    pub addr: u64,
    /// REX.W form (XSAVE64 and friends): 64-bit FIP/FDP layout.
    pub rex_w: bool,
    /// The segment is SS (base RSP or RBP): limit/canonical faults are #SS.
    pub ss: bool,
}

impl<'m> Machine<'m> {
    /// An empty write collection (the machine's spare one: no allocation once
    /// it has grown).
    pub fn writes(&mut self) -> crate::area::Writes {
        let mut w = std::mem::take(&mut self.spare_writes);
        w.clear();
        w.reserve();
        w
    }
    /// #PF if any of the `len` bytes at `addr` cannot be read: from the arena,
    /// or, during [`Machine::load_initial_borrowed`], from the initial image
    /// mapped the way [`Machine::load_initial`] maps it (read-write pages from
    /// [`INIT_BASE`] to the end of the image's last page, nothing else).
    pub fn read_check(&self, addr: u64, len: u64) -> Result<(), Fault> {
        let cpl = self.ctl.cpl;
        match self.image {
            None => self.mem.check(addr, len, false, cpl),
            Some(img) => {
                let end = INIT_BASE
                    + (img.len() as u64).div_ceil(crate::memory::PAGE) * crate::memory::PAGE;
                let fault = |a| Fault::Pf {
                    err: ((cpl == 3) as u32) << 2,
                    addr: a,
                };
                if len == 0 {
                    Ok(())
                } else if !(INIT_BASE..end).contains(&addr) {
                    Err(fault(addr))
                } else if len > end - addr {
                    Err(fault(end))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The borrowed initial image while [`Machine::load_initial_borrowed`] runs.
    pub fn image(&self) -> Option<&'m [u8]> {
        self.image
    }

    /// The `len` bytes at `addr`, already checked by [`Machine::read_check`].
    pub fn read_slice(&self, addr: u64, len: usize) -> std::borrow::Cow<'_, [u8]> {
        read_source(self.image, &self.mem, addr, len)
    }

    /// Gives a write collection back for the next instruction.
    pub fn recycle_writes(&mut self, w: crate::area::Writes) {
        self.spare_writes = w;
    }
    pub fn new(model: &'m CpuModel, ctl: Control, mem: Memory, policy: Policy) -> Machine<'m> {
        let st = XState::reset(model);
        Machine::with_buffers(model, ctl, mem, policy, st, crate::area::Writes::default())
    }

    /// [`Machine::new`] from a power-on state `st` of `model` and an empty
    /// write collection (`run` reuses the last run's, see `reuse.rs`).
    fn with_buffers(
        model: &'m CpuModel,
        ctl: Control,
        mem: Memory,
        policy: Policy,
        st: XState,
        spare_writes: crate::area::Writes,
    ) -> Machine<'m> {
        Machine {
            model,
            ctl,
            st,
            mem,
            gprs: [0; 16],
            policy,
            lat: Latitude::default(),
            spare_writes,
            image: None,
        }
    }

    /// The model's quirks. Both policies follow them: every quirk is a choice the
    /// SDM leaves open (or the OS's doing, within it), so the architectural run
    /// takes the model's path and records the other choices as latitude. That
    /// keeps the envelope sound along data flow (a recomputed FSW saved, then
    /// reloaded as other state) at the price of admitting the other choices only
    /// where they show directly. A model without quirks gives the SDM alone.
    pub fn quirks(&self) -> crate::model::Quirks {
        self.model.quirks
    }

    /// EDX:EAX, the instruction mask.
    pub fn edx_eax(&self) -> u64 {
        (self.gprs[2] << 32) | (self.gprs[0] & 0xFFFF_FFFF)
    }

    /// Linear addresses are canonical: 48 bits, or 57 with LA57.
    pub fn canonical(&self, a: u64) -> bool {
        crate::non_canonical::canonical(self.model, a)
    }

    /// #UD conditions common to the XSAVE family (SDM2 exception tables): no
    /// XSAVE, CR4.OSXSAVE = 0; then #NM if CR0.TS = 1.
    pub fn xsave_family_gate(&self, feature: bool) -> Result<(), Fault> {
        if !self.model.xsave || !feature || !self.ctl.cr4_osxsave {
            return Err(Fault::Ud);
        }
        if self.ctl.cr0_ts {
            return Err(Fault::Nm);
        }
        Ok(())
    }

    /// Canonical and alignment checks on an area's base (SDM2 exception tables:
    /// the canonical check first, #SS(0) for an SS-based operand). A misaligned
    /// base is #GP(0) "regardless of segment"; with alignment checking on
    /// (CR0.AM, CPL 3, EFLAGS.AC) "#AC may occur instead" (SDM1 §13.7 footnote,
    /// SDM2 FXSAVE): the prediction is #AC, the envelope admits #GP(0) as well.
    ///
    /// A base both non-canonical and misaligned: the SDM lists both faults in no
    /// order, so the envelope admits either; the prediction follows the model
    /// (`xsave-alignment-first`: the XSAVE family's 64-byte check first).
    pub fn check_area(&mut self, op: &Operand, align: u64) -> Result<(), Fault> {
        let misaligned = op.addr & (align - 1) != 0;
        if !self.canonical(op.addr) {
            let nc = if op.ss { Fault::Ss } else { Fault::gp0() };
            if !misaligned {
                return Err(nc);
            }
            let arch = self.policy == Policy::Architectural;
            if align == 64 && self.quirks().xsave_alignment_first {
                if arch {
                    self.lat.alt_fault.push(nc);
                }
                return self.misaligned_area(op);
            }
            if arch {
                let al = self.misaligned_area(op).unwrap_err();
                self.lat.alt_fault.push(al);
            }
            return Err(nc);
        }
        if misaligned {
            return self.misaligned_area(op);
        }
        Ok(())
    }

    /// The fault of a misaligned area (see [`Machine::check_area`]).
    fn misaligned_area(&mut self, op: &Operand) -> Result<(), Fault> {
        if !self.ctl.alignment_checking() {
            return Err(Fault::gp0());
        }
        let q = self.quirks();
        let ac = !(q.misaligned_gp_not_ac || q.ac_width_4 && op.addr & 3 == 0);
        let (f, other) = if ac {
            (Fault::Ac, Fault::gp0())
        } else {
            (Fault::gp0(), Fault::Ac)
        };
        if self.policy == Policy::Architectural {
            self.lat.alt_fault.push(other);
        }
        Err(f)
    }

    /// Notes, for the envelope, the region of `len` bytes at `base` the current
    /// instruction may access (SDM1 §13.13: any byte of any component it operates
    /// on, whether or not it writes it), so that a #PF on any of its bytes is allowed.
    pub fn note_region(&mut self, base: u64, len: u64, write: bool) {
        if self.policy == Policy::Architectural && len > 0 {
            self.lat.pf_region = Some(crate::envelope::PfRegion {
                first: base,
                last: base.saturating_add(len - 1),
                write,
            });
        }
    }

    /// The `pf-last-byte` quirk: the instruction probes the last byte of its region
    /// before touching anything else; a #PF there stops it with nothing written.
    /// Its own accesses follow (saves: every write checked in address order before
    /// any is made). Without the quirk, nothing happens here.
    pub fn probe_last_byte(&self, base: u64, len: u64, write: bool) -> Result<(), Fault> {
        if !self.quirks().pf_last_byte || len == 0 {
            return Ok(());
        }

        if !write {
            return self.read_check(base.wrapping_add(len - 1), 1);
        }
        let cpl = self.ctl.cpl;
        self.mem.check(base.wrapping_add(len - 1), 1, write, cpl)
    }

    /// The `pf-first-byte` quirk (AMD): an XSAVE-family save or XRSTOR touches
    /// byte 0 of its area before anything else (XRSTOR: before the header).
    pub fn probe_first_byte(&self, base: u64, write: bool) -> Result<(), Fault> {
        match (self.quirks().pf_first_byte, write) {
            (false, _) => Ok(()),
            (true, false) => self.read_check(base, 1),
            (true, true) => self.mem.check(base, 1, true, self.ctl.cpl),
        }
    }

    /// Under the architectural policy, records the state `f` leaves as another one
    /// the SDM allows (a partial update before a fault, reference S2); the
    /// machine's own state is left as it was. Under [`Policy::Predict`], nothing.
    pub fn alternative(&mut self, f: impl FnOnce(&mut Machine)) {
        if self.policy != Policy::Architectural {
            return;
        }
        let saved = self.st.clone();
        f(self);
        let alt = std::mem::replace(&mut self.st, saved);
        self.lat.partial_states.push(alt);
    }

    /// [`Machine::note_region`] then [`Machine::probe_last_byte`].
    pub fn access_region(&mut self, base: u64, len: u64, write: bool) -> Result<(), Fault> {
        self.note_region(base, len, write);
        self.probe_last_byte(base, len, write)
    }

    fn effective_address(&self, ins: &Instruction) -> Result<Operand, Unsupported> {
        let seg = ins.memory_segment();
        if matches!(seg, Register::FS | Register::GS) {
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
        let ss = stack_based(ins);
        Ok(Operand {
            addr,
            rex_w: false,
            ss,
        })
    }

    /// Runs one instruction. `Ok(Err(f))` is a fault (an outcome).
    pub fn step(&mut self, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
        let r = self.step_inner(ins);
        self.xinuse_quirk();
        r
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
            return Ok(Err(Fault::Ud));
        }
        if ins.has_lock_prefix() && !ins.op_code().can_use_lock_prefix() {
            // LOCK on an instruction that does not take it (every one modelled
            // here) is #UD (SDM2 exception tables). A lockable one with a memory
            // destination (`lock inc [rcx]`) is legal and not modelled: it falls
            // through to the helpers, which decline it.
            return Ok(Err(Fault::Ud));
        }
        let mem_op = |m: &Self, w: bool| -> Result<Operand, Unsupported> {
            let mut op = m.effective_address(ins)?;
            op.rex_w = w;
            Ok(op)
        };
        let r = match ins.code() {
            Code::Xsave_mem | Code::Xsave64_mem => {
                let op = mem_op(self, ins.code() == Code::Xsave64_mem)?;
                crate::xsave::xsave(self, &op)
            }
            Code::Xsaveopt_mem | Code::Xsaveopt64_mem => {
                let op = mem_op(self, ins.code() == Code::Xsaveopt64_mem)?;
                crate::xsaveopt::xsaveopt(self, &op)
            }
            Code::Xsavec_mem | Code::Xsavec64_mem => {
                let op = mem_op(self, ins.code() == Code::Xsavec64_mem)?;
                crate::xsavec::xsavec(self, &op)
            }
            Code::Xsaves_mem | Code::Xsaves64_mem => {
                let op = mem_op(self, ins.code() == Code::Xsaves64_mem)?;
                crate::xsaves::xsaves(self, &op)
            }
            Code::Xrstor_mem | Code::Xrstor64_mem => {
                let op = mem_op(self, ins.code() == Code::Xrstor64_mem)?;
                crate::xrstor::xrstor(self, &op)
            }
            Code::Xrstors_mem | Code::Xrstors64_mem => {
                let op = mem_op(self, ins.code() == Code::Xrstors64_mem)?;
                crate::xrstors::xrstors(self, &op)
            }
            Code::Fxsave_m512byte | Code::Fxsave64_m512byte => {
                let op = mem_op(self, ins.code() == Code::Fxsave64_m512byte)?;
                crate::fxsave::fxsave(self, &op)
            }
            Code::Fxrstor_m512byte | Code::Fxrstor64_m512byte => {
                let op = mem_op(self, ins.code() == Code::Fxrstor64_m512byte)?;
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
        Ok(r)
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
            bytes,
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
        crate::xsave::store_standard(self, &mut area, self.ctl.xcr0, true, true);
        let hdr = crate::xsave::xinuse_for_xstate_bv(self, self.ctl.xcr0);
        area[512..520].copy_from_slice(&hdr.to_le_bytes());
        let xinuse = if self.model.xgetbv1 {
            Some(crate::xgetbv::xgetbv1_value(self))
        } else {
            None
        };
        (area, xinuse)
    }
}

impl Machine<'_> {
    /// The contents of each supervisor component enabled in IA32_XSS (and
    /// supported by the model), ascending, concatenated ([`Outcome::supervisor`]).
    pub fn supervisor_contents(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for i in Xfeatures::from_bits_retain(self.ctl.xss).indices() {
            if self.model.component(i).is_some_and(|c| c.supervisor) {
                v.extend_from_slice(self.st.comp(i));
            }
        }
        v
    }
}

/// Decodes the case's code into instructions (at [`CODE_BASE`]). A truncated
/// last instruction comes out as an invalid instruction; [`decode_checked`] tells
/// it apart.
pub fn decode(code: &[u8]) -> Vec<Instruction> {
    decode_checked(code).into_iter().map(|(i, _)| i).collect()
}

/// Decodes the case's code; each instruction comes with `true` when the code
/// ended inside it (hardware would fetch bytes past the case's code).
pub fn decode_checked(code: &[u8]) -> Vec<(Instruction, bool)> {
    decode_with_errors(code)
        .into_iter()
        .map(|(ins, e)| (ins, e == DecoderError::NoMoreBytes))
        .collect()
}

/// Whether a memory operand's access uses SS: in 64-bit mode the ES, CS, SS and
/// DS overrides are ignored (SDM1 §3.3.7.1), so SS is used exactly when the base
/// register is RSP or RBP (ESP/EBP with a 67H prefix). Intel host: a
/// non-canonical `ds: ldmxcsr [rbp]` and `ds: xsave64 [rbp]` give #SS(0), `ss:
/// ldmxcsr [rbx]` gives #GP(0) (corpus/silicon/non-canonical-stack-base-ss.case).
pub fn stack_based(ins: &Instruction) -> bool {
    matches!(
        ins.memory_base(),
        Register::RSP | Register::RBP | Register::ESP | Register::EBP
    )
}

/// Whether the (invalid) instruction at `ins` is longer than 15 bytes (SDM
/// Vol.2 §2.3.11: #GP(0)). iced-x86 rejects such an instruction without saying
/// how long it is; its length is measured by decoding it again with the run of
/// prefixes collapsed (one copy of each distinct legacy prefix, in the order of
/// its last occurrence, so the last segment or F2/F3 prefix still wins, and the
/// REX prefix if it is the last byte before the opcode), then adding back the
/// bytes removed. 15 or more prefix bytes can never end within 15 bytes.
/// `None`: the length cannot be told (see the end).
fn too_long(code: &[u8], ins: &Instruction, options: u32) -> Option<bool> {
    let start = ins.ip().wrapping_sub(CODE_BASE) as usize;
    let Some(rest) = code.get(start..) else {
        return Some(false);
    };
    let is_rex = |b: u8| (0x40..=0x4f).contains(&b);
    let is_prefix = |b: u8| {
        matches!(
            b,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
        ) || is_rex(b)
    };
    let run = rest.iter().take_while(|&&b| is_prefix(b)).count();
    if run >= 15 {
        return Some(true);
    }
    let (prefixes, tail) = rest.split_at(run);
    let mut kept: Vec<u8> = Vec::new();
    for &b in prefixes.iter().filter(|&&b| !is_rex(b)) {
        kept.retain(|&k| k != b);
        kept.push(b);
    }
    if let Some(&last) = prefixes.last().filter(|&&b| is_rex(b)) {
        kept.push(last);
    }
    // The length decoder sizes an opcode before anything checks that it is
    // valid: an undefined form (66H 0F 78 /6 on Intel) still has the length of
    // its opcode map entry. When the collapsed bytes do not decode, they are
    // sized again without the mandatory prefixes (66H, F2H, F3H), which select
    // the form but not the ModRM and displacement (NP 0F 78 /r is VMREAD).
    let without_mandatory: Vec<u8> = kept
        .iter()
        .copied()
        .filter(|b| !matches!(b, 0x66 | 0xf2 | 0xf3))
        .collect();
    // Sized by the first candidate that decodes. An opcode of AMD's retired
    // extensions (3DNow!, SSE4a, XOP, FMA4, TBM), which iced-x86 decodes for any
    // CPU, is sized by a CPU without them as something else: Intel host, 13 REX
    // prefixes then 0F 0F 0F 1C (3DNow! with ModRM and suffix, 17 bytes) is #UD,
    // not #GP(0) (fuzz/artifacts-found/diff_native-3dnow-length-ud.bin). Unknown.
    let sized = [kept, without_mandatory].into_iter().find_map(|mut p| {
        let removed = run - p.len();
        p.extend_from_slice(tail);
        let ins = Decoder::with_ip(64, &p, CODE_BASE, options).decode();
        if ins.is_invalid() {
            return None;
        }
        let retired = ins.cpuid_features().iter().any(|f| {
            matches!(
                f,
                CpuidFeature::D3NOW
                    | CpuidFeature::D3NOWEXT
                    | CpuidFeature::SSE4A
                    | CpuidFeature::XOP
                    | CpuidFeature::FMA4
                    | CpuidFeature::TBM
            )
        });
        Some((!retired).then(|| ins.len() + removed > 15))
    });
    // Neither decodes (or only as a retired AMD opcode): the length is the
    // hardware length decoder's. The longest form (3-byte opcode, ModRM, SIB,
    // disp32, imm32) is 13 bytes, so after at most two prefixes it cannot pass
    // 15 bytes.
    sized.flatten().or((run <= 2).then_some(false))
}

/// Whether the undefined instruction `ins` is LOCK MOV to or from CR0 on an AMD
/// model: AMD's alternative encoding of MOV CR8, which iced-x86 calls invalid in
/// 64-bit mode (Zen 5 host: F0 0F 22 00 and F0 0F 20 00 at CPL 3 are #GP(0), as
/// MOV CRn is; diff_native finding).
fn amd_lock_mov_cr(model: &CpuModel, code: &[u8], ins: &Instruction) -> bool {
    let at = ins.ip().wrapping_sub(CODE_BASE) as usize;
    let bytes = code.get(at..).unwrap_or_default();
    let prefix = |b: &u8| {
        matches!(
            b,
            0xF0 | 0x66 | 0x67 | 0xF2 | 0xF3 | 0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65
        ) || (0x40..=0x4F).contains(b)
    };
    let n = bytes.iter().take_while(|b| prefix(b)).count();
    model.vendor == crate::model::Vendor::Amd
        && bytes[..n].contains(&0xF0)
        && matches!(bytes[n..], [0x0F, 0x20 | 0x22, ..])
}

/// Decodes the case's code with iced-x86's verdict on each instruction
/// (`DecoderError::None` for a valid one).
pub fn decode_with_errors(code: &[u8]) -> Vec<(Instruction, DecoderError)> {
    decode_lazily(code, DecoderOptions::NONE).collect()
}

/// [`decode_with_errors`] one instruction at a time, as the run reaches it
/// (nothing after a fault is decoded), with `options` ([`CpuModel::decoder_options`]).
pub fn decode_lazily(
    code: &[u8],
    options: u32,
) -> impl Iterator<Item = (Instruction, DecoderError)> + '_ {
    let mut d = Decoder::with_ip(64, code, CODE_BASE, options);
    std::iter::from_fn(move || {
        d.can_decode().then(|| {
            let ins = d.decode();
            let e = if ins.is_invalid() {
                d.last_error()
            } else {
                DecoderError::None
            };
            (ins, e)
        })
    })
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
) -> Result<(Outcome, Latitude), Unsupported> {
    run_forced(model, case, policy, None)
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
) -> Result<(Outcome, Latitude), Unsupported> {
    validate(model, case)?;
    let (st, writes) = crate::reuse::take(model);
    let mut m = Machine::with_buffers(model, case.control, case.memory.clone(), policy, st, writes);
    let mut fault = None;
    if let Err(f) = m.load_initial_borrowed(&case.init)? {
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
            if error == DecoderError::InvalidInstruction && amd_lock_mov_cr(model, &case.code, ins)
            {
                return Err(Unsupported(format!(
                    "instruction {k}: LOCK MOV CRn, MOV CR8 on AMD (CPUID 80000001H:ECX[4]); MOV CRn is not modelled"
                )));
            }
            if error == DecoderError::InvalidInstruction {
                match too_long(&case.code, ins, options) {
                    // SDM Vol.2 §2.3.11: longer than 15 bytes is #GP(0), before anything runs.
                    Some(true) => {
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
            let forced_here = forced.filter(|f| f.insn == Some(k));
            let before = forced_here.map(|_| (m.st.clone(), m.mem.bytes.clone(), m.gprs));
            let gprs_before = m.gprs;
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
            if let (Some(f), Some((st, mem, gprs))) = (forced_here, before) {
                if policy == Policy::Architectural {
                    let base = m.mem.base;
                    for (a, (&new, &old)) in m.mem.bytes.iter().zip(&mem).enumerate() {
                        if new != old {
                            m.lat.alt(base.wrapping_add(a as u64), &[new]);
                        }
                    }
                    let after = std::mem::replace(&mut m.st, st);
                    m.lat.partial_states.push(after);
                } else {
                    m.st = st;
                }
                m.mem.bytes = mem;
                m.gprs = gprs;
                fault = Some(f);
                break;
            }
            if let Err(f) = r {
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
    for alt in std::mem::take(&mut m.lat.partial_states) {
        let own = std::mem::replace(&mut m.st, alt);
        let (img, _) = m.capture();
        m.st = own;
        for (k, (&a, &b)) in img.iter().zip(&final_image).enumerate() {
            if a != b {
                let e = m.lat.final_alt.entry(k).or_default();
                if !e.contains(&a) {
                    e.push(a);
                }
            }
        }
    }
    let out = Outcome {
        fault,
        final_image,
        xinuse,
        gprs: m.gprs,
        memory: std::mem::take(&mut m.mem.bytes),
        supervisor: m.supervisor_contents(),
    };
    crate::reuse::give(m.st, m.spare_writes);
    Ok((out, m.lat))
}

/// The `len` bytes at `addr` of the image (zero past its end, to the end of
/// its last page) or else of the arena; the range is already checked readable.
pub fn read_source<'a>(
    image: Option<&'a [u8]>,
    mem: &'a Memory,
    addr: u64,
    len: usize,
) -> std::borrow::Cow<'a, [u8]> {
    match image {
        None => std::borrow::Cow::Borrowed(mem.slice(addr, len)),
        Some(img) => {
            let o = (addr - INIT_BASE) as usize;
            if o + len <= img.len() {
                std::borrow::Cow::Borrowed(&img[o..o + len])
            } else {
                let mut v = vec![0u8; len];
                if o < img.len() {
                    v[..img.len() - o].copy_from_slice(&img[o..]);
                }
                std::borrow::Cow::Owned(v)
            }
        }
    }
}
