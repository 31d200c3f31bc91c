//! The machine the instructions run on: the model, the control state, the
//! architectural state, memory, GPRs, and (under [`Policy::Architectural`]) the
//! latitude and provenance a run records. The instruction files use it; it
//! uses none of them ([`crate::exec`] dispatches).

use crate::case::INIT_BASE;
use crate::control::Control;
use crate::fault::Fault;
use crate::latitude::{self, Freedoms, PfRegion};
use crate::memory::Memory;
use crate::model::CpuModel;
use crate::provenance::{Provenance, Site};
use crate::rules::{self, Rule};
use crate::state::XState;
use crate::Xfeatures;
use std::cell::Cell;

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
    /// Boxed: a run takes it from the last run and gives it back
    /// ([`crate::reuse`]) without moving its 600 bytes each way.
    pub st: Box<XState>,
    pub mem: Memory,
    pub gprs: [u64; 16],
    pub policy: Policy,
    /// The latitude the run met (architectural policy only).
    pub lat: Freedoms,
    /// The rules behind the values the run produced (architectural policy only).
    pub prov: Provenance,
    /// The step running: the initial load or instruction k (for [`Machine::prov`]).
    pub site: Site,
    /// The rule behind the fault being raised ([`Machine::raise`]).
    why: Cell<Option<&'static Rule>>,
    /// A save's write collection, kept between instructions for its capacity.
    pub(crate) spare_writes: crate::writes::Writes,
    /// While the runner's initial XRSTOR runs from a borrowed image: that image
    /// at [`INIT_BASE`] (reads come from it, not from the arena; see
    /// [`Machine::read_check`]).
    pub(crate) image: Option<&'m [u8]>,
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
    /// it has grown). It was emptied when given back
    /// ([`Machine::recycle_writes`]): emptied here, it would be moved right
    /// after its lengths were written, and read back wider than written (a
    /// store-forwarding stall).
    pub fn writes(&mut self) -> crate::writes::Writes {
        let mut w = std::mem::take(&mut self.spare_writes);
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

    /// Gives a write collection back for the next instruction, emptied.
    pub fn recycle_writes(&mut self, w: crate::writes::Writes) {
        self.spare_writes = w;
        self.spare_writes.clear();
    }
    pub fn new(model: &'m CpuModel, ctl: Control, mem: Memory, policy: Policy) -> Machine<'m> {
        let st = Box::new(XState::reset(model));
        Machine::with_buffers(
            model,
            ctl,
            mem,
            policy,
            st,
            crate::writes::Writes::default(),
        )
    }

    /// [`Machine::new`] from a power-on state `st` of `model` and an empty
    /// write collection (`run` reuses the last run's, see `reuse.rs`).
    pub(crate) fn with_buffers(
        model: &'m CpuModel,
        ctl: Control,
        mem: Memory,
        policy: Policy,
        st: Box<XState>,
        spare_writes: crate::writes::Writes,
    ) -> Machine<'m> {
        Machine {
            model,
            ctl,
            st,
            mem,
            gprs: [0; 16],
            policy,
            lat: Freedoms::default(),
            prov: Provenance::default(),
            site: Site::Initial,
            why: Cell::new(None),
            spare_writes,
            image: None,
        }
    }

    /// `f`, raised by `rule`: the rule is kept for the verdict
    /// ([`Machine::take_why`]).
    pub fn raise(&self, rule: &'static Rule, f: Fault) -> Fault {
        self.why.set(Some(rule));
        f
    }

    /// The rule behind the fault just raised (taken: the next fault starts
    /// with none); a #PF without one is [`rules::MEM_PF`].
    pub fn take_why(&self, f: &Fault) -> &'static Rule {
        match (self.why.take(), f) {
            (Some(r), _) => r,
            (None, Fault::Pf { .. }) => &rules::MEM_PF,
            (None, _) => &rules::FAULT_ONLY_AS_LISTED,
        }
    }

    /// Clears the rule behind a fault (before each instruction).
    pub fn clear_why(&self) {
        self.why.set(None);
    }

    /// Under the architectural policy, notes that `rule` set the components of
    /// `mask`: the alternatives their bytes had end ([`Freedoms::state_alt`]),
    /// unless the rule is that a fault left them as they were.
    pub fn set_by(&mut self, mask: u64, rule: &'static Rule) {
        if self.policy == Policy::Architectural {
            self.prov.components(mask, rule, self.site);
            if rule.id != rules::FAULT_LEAVES_STATE.id {
                for i in Xfeatures::from_bits_retain(mask).indices() {
                    self.lat.state_ended(i, 0..u32::MAX);
                }
            }
        }
    }

    /// Under the architectural policy, notes that `rule` set bytes `bytes` of
    /// component i's registers (one XMM register, one opmask): only their
    /// alternatives end.
    pub fn set_bytes_by(&mut self, i: usize, bytes: std::ops::Range<u32>, rule: &'static Rule) {
        if self.policy == Policy::Architectural {
            self.prov.components(1 << i, rule, self.site);
            self.lat.state_ended(i, bytes);
        }
    }

    /// Under the architectural policy, component i's `len` bytes were just
    /// loaded from the arena at `addr` (x87: the area's base, its bytes at
    /// their legacy-region offsets; SSE: XMM0's first byte; i >= 2: the slot):
    /// they take the alternatives of the arena bytes they come from
    /// ([`Freedoms::state_loaded`]). A supervisor component takes none (XRSTORS
    /// checks its values).
    pub fn state_loaded(&mut self, i: usize, addr: u64, len: u32) {
        if self.policy != Policy::Architectural {
            return;
        }
        if self.model.component(i).is_some_and(|c| c.supervisor) {
            self.lat.state_ended(i, 0..u32::MAX);
        } else {
            self.lat.state_loaded(i, addr, len, &self.mem);
        }
    }

    /// Under the architectural policy, component i was initialized: its
    /// bytes' alternatives end.
    pub fn state_initialized(&mut self, i: usize) {
        if self.policy == Policy::Architectural {
            self.lat.state_ended(i, 0..u32::MAX);
        }
    }

    /// Under the architectural policy, notes that `rule` set MXCSR.
    pub fn mxcsr_by(&mut self, rule: &'static Rule) {
        if self.policy == Policy::Architectural {
            self.prov.mxcsr = Some((rule, self.site));
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
    /// XSAVE, CR4.OSXSAVE = 0, the instruction's own CPUID bit (`feature`,
    /// rule `not_advertised`) clear; then #NM if CR0.TS = 1.
    pub fn xsave_family_gate(
        &self,
        feature: bool,
        not_advertised: &'static Rule,
    ) -> Result<(), Fault> {
        if !self.model.xsave || !self.ctl.cr4_osxsave {
            return Err(self.raise(&rules::XSAVE_UD_DISABLED, Fault::Ud));
        }
        if !feature {
            return Err(self.raise(not_advertised, Fault::Ud));
        }
        if self.ctl.cr0_ts {
            return Err(self.raise(&rules::XSAVE_NM_TS, Fault::Nm));
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
                return Err(self.raise(&rules::MEM_GP_NON_CANONICAL, nc));
            }
            let arch = self.policy == Policy::Architectural;
            if align == 64 && self.quirks().xsave_alignment_first {
                if arch {
                    self.lat
                        .alt_fault
                        .push((nc, &latitude::CANONICAL_OR_ALIGNMENT));
                }
                return self.misaligned_area(op, align);
            }
            if arch {
                let al = self.misaligned_area(op, align).unwrap_err();
                self.lat
                    .alt_fault
                    .push((al, &latitude::CANONICAL_OR_ALIGNMENT));
            }
            return Err(self.raise(&rules::MEM_GP_NON_CANONICAL, nc));
        }
        if misaligned {
            return self.misaligned_area(op, align);
        }
        Ok(())
    }

    /// The fault of a misaligned area (see [`Machine::check_area`]).
    fn misaligned_area(&mut self, op: &Operand, align: u64) -> Result<(), Fault> {
        let rule = if align == 64 {
            &rules::XSAVE_GP_MISALIGNED
        } else {
            &rules::FXSAVE_GP_MISALIGNED
        };
        if !self.ctl.alignment_checking() {
            return Err(self.raise(rule, Fault::gp0()));
        }
        let q = self.quirks();
        let ac = !(q.misaligned_gp_not_ac || q.ac_width_4 && op.addr & 3 == 0);
        let (f, other) = if ac {
            (Fault::Ac, Fault::gp0())
        } else {
            (Fault::gp0(), Fault::Ac)
        };
        if self.policy == Policy::Architectural {
            self.lat.alt_fault.push((other, &latitude::AC_OR_GP));
        }
        Err(self.raise(rule, f))
    }

    /// Notes, for the envelope, the region of `len` bytes at `base` the current
    /// instruction may access (SDM1 §13.13: any byte of any component it operates
    /// on, whether or not it writes it), so that a #PF on any of its bytes is allowed.
    pub fn note_region(&mut self, base: u64, len: u64, write: bool) {
        if self.policy == Policy::Architectural && len > 0 {
            self.lat.pf_region = Some(PfRegion {
                first: base,
                last: base.saturating_add(len - 1),
                write,
                wrap32: false,
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
        let saved = XState::clone(&self.st);
        let prov = self.prov.clone();
        let state_alt = self.lat.state_alt.clone();
        f(self);
        let alt = std::mem::replace(&mut *self.st, saved);
        self.prov = prov;
        self.lat.state_alt = state_alt;
        self.lat.partial_states.push(alt);
    }

    /// [`Machine::note_region`] then [`Machine::probe_last_byte`].
    pub fn access_region(&mut self, base: u64, len: u64, write: bool) -> Result<(), Fault> {
        self.note_region(base, len, write);
        self.probe_last_byte(base, len, write)
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
