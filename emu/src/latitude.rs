//! The latitude the SDM grants, as data ([`LATITUDES`]: a stable id, one
//! sentence, its citation, like [`crate::rules`]), and [`Freedoms`]: what a
//! run under [`Policy::Architectural`](crate::machine::Policy) recorded of it,
//! each freedom tagged with the latitude that grants it, so that a verdict
//! inside the envelope but off the model names the latitude taken.
//!
//! Coupled choices are recorded jointly ([`Coupled`]): a compacted save or
//! XSAVEOPT writes XSTATE_BV[i] and component i's bytes from one choice of
//! XINUSE[i] (and XMODIFIED[i]), so a header bit cannot flip alone.
//!
//! Freedom flows through the state ([`Freedoms::state_alt`]): a restore that
//! loads register bytes from arena bytes that may hold other values gives the
//! registers those values as alternatives, and a save that writes such a
//! register byte gives the arena byte them in turn.

use crate::fault::Fault;
use crate::memory::{Memory, Prot};
use crate::state::XState;
use std::collections::BTreeMap;
use std::fmt;

/// One freedom the SDM grants (or, where it is silent, that this project
/// grants and says so).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Latitude {
    pub id: &'static str,
    pub sentence: &'static str,
    pub citation: &'static str,
}

impl fmt::Display for Latitude {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

macro_rules! latitudes {
    ($($name:ident = $id:literal, $sentence:literal, $citation:literal;)*) => {
        $(pub static $name: Latitude = Latitude { id: $id, sentence: $sentence, citation: $citation };)*
        /// Every latitude, in the order of this file.
        pub static LATITUDES: &[&Latitude] = &[$(&$name),*];
    };
}

latitudes! {
    XINUSE_1_OVER_INIT = "xinuse-1-over-init",
        "XINUSE[i] may be 1 while state component i is in its initial configuration: XSTATE_BV[i] and XGETBV(1) bit i may read 1, and a save with the init optimization then writes the component (its init values) with XSTATE_BV[i] = 1.",
        "SDM1 §13.6, §13.8.3 (after XRSTOR initializes i, XINUSE[i] may be 0 or 1)";
    MODIFIED_OPTIMIZATION = "modified-optimization",
        "When XRSTOR_INFO matches, XSAVEOPT and XSAVES may skip a component not modified since the last XRSTOR(S) (XMODIFIED[i] = 0) or save it (XMODIFIED[i] = 1 is always allowed); XSTATE_BV is written as if saved.",
        "SDM1 §13.6, §13.9, §13.11; SDM2 XSAVEOPT, XSAVES Operation";
    PF_ANY_BYTE = "pf-any-byte-of-region",
        "An instruction may access any byte of any state component it operates on, written or not, in an order the SDM does not give: a #PF may be reported on any of them whose page refuses the access, before the other checks of the instruction.",
        "SDM1 §13.13; reference S1 (order of #PF and header #GP silent)";
    PARTIAL_SAVE = "partial-save-before-fault",
        "A save that faults may have written any part of what it would have written, on the pages that allow it.",
        "SDM silent (reference §5.2 item 9)";
    PARTIAL_RESTORE = "partial-restore-before-fault",
        "A restore that raises #GP on a value it would load (MXCSR reserved bits, a supervisor value) may have loaded or initialized part of the state it would have; after an XRSTORS fault each element of a supervisor component may hold its old, loaded or initial value. Other faults (#PF) leave the state as it was.",
        "SDM1 §13.12 (supervisor); SDM silent for user components (reference S2, §5.2 item 8); SDM3 §6.5 (faults)";
    CANONICAL_OR_ALIGNMENT = "canonical-or-alignment-first",
        "A base both non-canonical and misaligned may raise either fault: the SDM lists both, in no order.",
        "SDM2 XSAVE, XRSTOR, XSAVEOPT, XSAVEC, XSAVES, XRSTORS, FXSAVE, FXRSTOR exceptions";
    AC_OR_GP = "ac-or-gp-misaligned",
        "With alignment checking on, a misaligned area may raise #AC instead of #GP(0) (the width of the alignment check may vary).",
        "SDM1 §13.7 footnote; SDM2 XSAVE, FXSAVE #AC notes";
    FSW_ES_B = "fsw-es-b-recomputed",
        "After an x87 load, FSW.ES (bit 7) and FSW.B (bit 15) may be as loaded or recomputed from the unmasked exception flags.",
        "SDM1 §8.1.3 (ES summarizes unmasked exceptions, B mirrors ES)";
    FIP_CANONICAL = "fip-canonicalized",
        "A 64-bit FIP may be kept as loaded or canonicalized (sign-extended from bit 47 or bit 56).",
        "SDM silent (FIP is a linear address, SDM1 §8.1.8)";
    X87_POINTERS = "x87-pointers-implementation",
        "FOP, FIP and FDP hold implementation-dependent values (FOP compatibility mode, FDP_EXCPTN_ONLY, AMD's rule for ES = 0) where the model says so.",
        "SDM1 §8.1.8, §8.1.9.1; AMD APM Vol.4 FXSAVE";
    PF_P_BIT_OUTSIDE_CASE = "pf-p-bit-outside-case",
        "Whether a page outside the case's pages is present is the OS's page tables, not the CPU's: the P bit of a #PF there may be either value.",
        "SDM3 §4.7 (P bit of the error code)";
}

/// The latitude with this id.
pub fn by_id(id: &str) -> Option<&'static Latitude> {
    LATITUDES.iter().copied().find(|l| l.id == id)
}

/// One coupled choice of a save: XSTATE_BV bit `bit` of the header qword at
/// `header` and component `bit`'s bytes are decided together; `choices` lists
/// the (bit, written) pairs the SDM allows. Taking (1, unwritten) is the
/// modified optimization, the others XINUSE[i] = 1 or 0 over init contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupled {
    pub header: u64,
    pub bit: u32,
    /// Each written byte: address, value written, value before the save.
    pub bytes: Vec<(u64, u8, u8)>,
    pub choices: Vec<(bool, bool)>,
    /// What bytes that fit no choice break.
    pub save_rule: &'static crate::rules::Rule,
    /// What a bit that fits no choice (given the bytes) breaks.
    pub header_rule: &'static crate::rules::Rule,
    /// The header bit is still this save's (no later save rewrote it).
    pub header_live: bool,
    /// The save's instruction.
    pub site: crate::provenance::Site,
}

/// What a run recorded of the latitude (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freedoms {
    /// Arena byte -> values it may hold besides the predicted one, and why.
    pub mem_alt: BTreeMap<u64, Vec<(u8, &'static Latitude)>>,
    /// Arena bytes given alternatives by the current instruction -> how many
    /// of their alternatives are older (a definitive write of the byte ends
    /// those, not its own: [`Freedoms::bytes_written`]).
    pub alt_fresh: BTreeMap<u64, usize>,
    /// Address of an XSTATE_BV qword written by XSAVE -> bits that may be
    /// either value (XINUSE[i] = 1 over init contents; XSAVE writes the bytes
    /// anyway, so the bit is not coupled with them).
    pub header_free: BTreeMap<u64, u64>,
    /// Coupled choices of completed saves.
    pub coupled: Vec<Coupled>,
    /// Coupled choices of the current instruction, until its writes commit.
    pub pending: Vec<Coupled>,
    /// An x87 load happened: FSW bits 7 (ES) and 15 (B) may have been recomputed.
    pub fsw_es_b: bool,
    /// The region the current (last run) instruction may access (SDM1 §13.13: any
    /// byte of any component it operates on): a #PF may be reported on any byte of
    /// it whose page refuses the access.
    pub pf_region: Option<PfRegion>,
    /// Faults the current instruction may raise instead of the predicted one,
    /// before any access (#GP(0) for #AC), and the latitude that allows it;
    /// moved into `alt_faults` by the run.
    pub alt_fault: Vec<(Fault, &'static Latitude)>,
    /// Instruction index -> faults it may raise instead of the predicted one.
    pub alt_faults: BTreeMap<usize, Vec<(Fault, &'static Latitude)>>,
    /// Instruction index -> the region it may access (see `pf_region`).
    pub pf_regions: BTreeMap<usize, PfRegion>,
    /// States the SDM also allows after a fault (partial updates), turned into
    /// `final_alts` by the run.
    pub partial_states: Vec<XState>,
    /// Final images the SDM also allows (partial restores before a fault),
    /// each judged component by component: a component's bytes all from the
    /// architectural image or all from one of these.
    pub final_alts: Vec<Vec<u8>>,
    /// Supervisor contents (laid out as [`crate::outcome::Outcome::supervisor`])
    /// the SDM also allows after an XRSTORS fault, judged element by element
    /// (8 bytes, an MSR): SDM1 §13.12 lets each element of a supervisor
    /// component hold its old value, the loaded one or its initial one.
    pub supervisor_alts: Vec<Vec<u8>>,
    /// GPR -> bits that may be either value (XGETBV(1) of components in init
    /// configuration: XINUSE[i] = 1 is always allowed, SDM1 §13.6).
    pub gpr_free: [u64; 16],
    /// State byte -> values it may hold besides the predicted one, and why: a
    /// restore loaded it from an arena byte with alternatives (its own, a
    /// coupled byte or XSTATE_BV bit of an earlier save, a free XSTATE_BV bit
    /// of XSAVE). A coupled choice becomes independent per-byte alternatives
    /// here (looser than the SDM, never tighter). Only bytes that round-trip
    /// bit-exactly ([`round_trips`]); a later load, initialization or write
    /// of the byte ends them ([`Freedoms::state_ended`]), a save of it passes
    /// them on to the arena ([`Freedoms::state_saved`]). Judged on the final
    /// image ([`crate::envelope`]).
    pub state_alt: BTreeMap<StateByte, Vec<(u8, &'static Latitude)>>,
}

/// A byte of state: component i and the byte's offset in the component's part
/// of a standard-format image (x87: its legacy-region offset, 0..160; SSE: the
/// offset from XMM0's first byte, area offset 160; i >= 2: the offset in the
/// component).
pub type StateByte = (usize, u32);

/// Whether state byte `j` of user component `i` round-trips bit-exactly
/// through a restore and a save, and so may take an arena byte's alternatives:
/// the ST0..ST7 bytes 0..9 of each 16 (x87), the XMM registers, the extended
/// components but TILECFG. Left out, as control values that can change what
/// happens: FCW, FSW, FTW, FOP and the x87 pointers (masked, recomputed or
/// canonicalized on load), MXCSR (#GP on reserved bits), TILECFG (an
/// unsupported value initializes it, SDM1 §13.5.11), XSTATE_BV and XCOMP_BV
/// of a later restore's header (they choose what is loaded), and the
/// supervisor components (XRSTORS checks their values).
pub fn round_trips(i: usize, j: u32) -> bool {
    match i {
        0 => (32..160).contains(&j) && (j - 32) % 16 < 10,
        17 => false,
        _ => true,
    }
}

/// Bytes an instruction may touch, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PfRegion {
    /// First and last byte (inclusive).
    pub first: u64,
    pub last: u64,
    /// The instruction writes the region (a save); it may still read it first.
    pub write: bool,
    /// Its operand has a 32-bit address size: addresses past 4 GiB are seen
    /// wrapped (`decode::a32_wrap`).
    pub wrap32: bool,
}

/// `wrap32` only where it is set: a region of a 64-bit address reads as before.
impl std::fmt::Debug for PfRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("PfRegion");
        d.field("first", &self.first)
            .field("last", &self.last)
            .field("write", &self.write);
        if self.wrap32 {
            d.field("wrap32", &true);
        }
        d.finish()
    }
}

impl PfRegion {
    /// Whether `addr` lies in the region.
    pub fn contains(&self, addr: u64) -> bool {
        let unwrapped = if self.wrap32 && addr < self.first {
            addr + crate::decode::FOUR_GIB
        } else {
            addr
        };
        (self.first..=self.last).contains(&unwrapped)
    }
    /// Whether `Pf{err, addr}` is a fault an access to this region may raise.
    pub fn allows(&self, mem: &Memory, cpl: u8, err: u32, addr: u64) -> bool {
        if !self.contains(addr) {
            return false;
        }
        let prot = mem.prot_at(addr);
        let present = prot != Prot::None;
        let w = err & 2 != 0;
        let expect_u = (cpl == 3) as u32;
        if err & 1 != present as u32 || (err >> 2) & 1 != expect_u || err & !7 != 0 {
            return false;
        }
        match prot {
            Prot::None => !w || self.write,
            Prot::Read => w && self.write,
            Prot::ReadWrite => false,
        }
    }
}

impl Freedoms {
    /// Byte `addr..` may hold `vals` instead, by latitude `why`.
    pub fn alt(&mut self, addr: u64, vals: &[u8], why: &'static Latitude) {
        for (k, &v) in vals.iter().enumerate() {
            let a = addr.wrapping_add(k as u64);
            let e = self.mem_alt.entry(a).or_default();
            self.alt_fresh.entry(a).or_insert(e.len());
            if !e.iter().any(|&(x, _)| x == v) {
                e.push((v, why));
            }
        }
    }
    pub fn header_bits(&mut self, addr: u64, bits: u64) {
        *self.header_free.entry(addr).or_default() |= bits;
    }
    /// The latitude that lets byte `addr` hold `v`, if any.
    pub fn mem_allows(&self, addr: u64, v: u8) -> Option<&'static Latitude> {
        self.mem_alt
            .get(&addr)
            .and_then(|e| e.iter().find(|&&(x, _)| x == v))
            .map(|&(_, l)| l)
    }

    /// `[first, first + len)` was written definitively (a completed save's
    /// data, a MOV): the alternatives earlier instructions gave its bytes end
    /// (those of the writing instruction stay), and the coupled bytes of earlier saves there no longer apply,
    /// nor their XSTATE_BV bits or XSAVE's free bits where the write covers
    /// the header qword (another area's data over it). `own_header`: the
    /// writing save's own XSTATE_BV qword, whose bits [`Freedoms::header_rewritten`]
    /// judges (an XSAVE keeps the bits outside RFBM, and their freedom).
    pub fn bytes_written(&mut self, first: u64, len: u64, own_header: Option<u64>) {
        if len == 0 {
            return;
        }
        let last = first.wrapping_add(len - 1);
        // The alternatives earlier instructions gave these bytes: the byte
        // now holds this write's value (or one of this instruction's own).
        let fresh = &self.alt_fresh;
        self.mem_alt.retain(|&a, v| {
            if a < first || a > last {
                return true;
            }
            match fresh.get(&a) {
                Some(&old) => {
                    v.drain(..old.min(v.len()));
                    !v.is_empty()
                }
                None => false,
            }
        });
        self.alt_fresh.retain(|&a, n| {
            if (first..=last).contains(&a) {
                *n = 0;
            }
            true
        });
        self.end_coupling(first, len, own_header);
    }

    /// The coupled bytes of earlier saves in `[first, first + len)` no longer
    /// apply, nor their XSTATE_BV bits or XSAVE's free bits where the range
    /// covers the header qword (see [`Freedoms::bytes_written`]).
    fn end_coupling(&mut self, first: u64, len: u64, own_header: Option<u64>) {
        if len == 0 {
            return;
        }
        let last = first.wrapping_add(len - 1);
        let hit = |h: u64| own_header != Some(h) && h <= last && first <= h.wrapping_add(7);
        for c in &mut self.coupled {
            c.bytes.retain(|&(a, _, _)| a < first || a > last);
            if hit(c.header) {
                c.header_live = false;
            }
        }
        self.coupled
            .retain(|c| c.header_live || !c.bytes.is_empty());
        self.header_free.retain(|&h, _| !hit(h));
    }

    /// `[first, first + len)` may have been written by a save that then
    /// faulted: the coupled bytes of earlier saves there are judged alone from
    /// now on (their old or new value, or what the faulting save wrote), and
    /// their XSTATE_BV bits no longer where the write may cover the header.
    pub fn bytes_maybe_written(&mut self, first: u64, len: u64, own_header: Option<u64>) {
        if len == 0 {
            return;
        }
        let last = first.wrapping_add(len - 1);
        let mut loose = Vec::new();
        for c in &self.coupled {
            for &(a, new, old) in &c.bytes {
                if (first..=last).contains(&a) {
                    loose.push((a, new, old));
                }
            }
        }
        for (a, new, old) in loose {
            self.alt(a, &[new, old], &XINUSE_1_OVER_INIT);
        }
        // Each byte may still hold its old value: its alternatives stay.
        self.end_coupling(first, len, own_header);
    }

    /// A completed save rewrote `bits` of the XSTATE_BV qword at `header`:
    /// earlier choices of those bits no longer show.
    pub fn header_rewritten(&mut self, header: u64, bits: u64) {
        for c in &mut self.coupled {
            if c.header == header && bits >> c.bit & 1 != 0 {
                c.header_live = false;
            }
        }
        self.coupled
            .retain(|c| c.header_live || !c.bytes.is_empty());
        if let Some(f) = self.header_free.get_mut(&header) {
            *f &= !bits;
        }
    }

    /// The arena bytes of `[addr, addr + len)` that may hold other values
    /// than `mem` holds, and those values: a byte's alternatives, either value
    /// of a coupled byte (written or left, where the save's choices allow
    /// both), and each free XSTATE_BV bit over it (XSAVE's, or an earlier
    /// save's coupled bit its choices allow both ways) flipped.
    pub fn mem_values(
        &self,
        addr: u64,
        len: u64,
        mem: &Memory,
    ) -> BTreeMap<u64, Vec<(u8, &'static Latitude)>> {
        let mut out = BTreeMap::new();
        let Some(last) = len.checked_sub(1).map(|n| addr.wrapping_add(n)) else {
            return out;
        };
        if last < addr {
            return out;
        }
        let r = addr..=last;
        let mut vals: BTreeMap<u64, Vec<(u8, &'static Latitude)>> = self
            .mem_alt
            .range(r.clone())
            .map(|(&a, v)| (a, v.clone()))
            .collect();
        let mut free: BTreeMap<u64, Vec<(u8, &'static Latitude)>> = BTreeMap::new();
        for c in &self.coupled {
            let written = c.choices.iter().any(|ch| ch.1);
            let left = c.choices.iter().any(|ch| !ch.1);
            let why = if c.choices.contains(&(false, false)) {
                &XINUSE_1_OVER_INIT
            } else {
                &MODIFIED_OPTIMIZATION
            };
            if written && left {
                for &(a, new, old) in c.bytes.iter().filter(|b| r.contains(&b.0)) {
                    vals.entry(a).or_default().extend([(new, why), (old, why)]);
                }
            }
            let both = c.choices.iter().any(|ch| ch.0) && c.choices.iter().any(|ch| !ch.0);
            let h = c.header.wrapping_add(u64::from(c.bit / 8));
            if c.header_live && both && r.contains(&h) {
                free.entry(h)
                    .or_default()
                    .push((1 << (c.bit % 8), &XINUSE_1_OVER_INIT));
            }
        }
        for (&h, &bits) in &self.header_free {
            for k in 0..8u64 {
                let b = (bits >> (8 * k)) as u8;
                if b != 0 && r.contains(&h.wrapping_add(k)) {
                    free.entry(h.wrapping_add(k))
                        .or_default()
                        .push((b, &XINUSE_1_OVER_INIT));
                }
            }
        }
        let at: std::collections::BTreeSet<u64> = vals.keys().chain(free.keys()).copied().collect();
        for a in at {
            if a < mem.base || a >= mem.end() {
                continue;
            }
            let cur = mem.bytes[(a - mem.base) as usize];
            let mut v: Vec<(u8, &'static Latitude)> = Vec::new();
            let add = |x: u8, l: &'static Latitude, v: &mut Vec<(u8, &'static Latitude)>| {
                if x != cur && !v.iter().any(|&(y, _)| y == x) {
                    v.push((x, l));
                }
            };
            for &(x, l) in vals.get(&a).into_iter().flatten() {
                add(x, l, &mut v);
            }
            for &(bits, l) in free.get(&a).into_iter().flatten() {
                for b in (0..8).map(|k| 1u8 << k).filter(|&b| bits & b != 0) {
                    let seen: Vec<u8> = std::iter::once(cur).chain(v.iter().map(|p| p.0)).collect();
                    for x in seen {
                        add(x ^ b, l, &mut v);
                    }
                }
            }
            if !v.is_empty() {
                out.insert(a, v);
            }
        }
        out
    }

    /// Bytes `bytes` of component `i` were loaded, initialized or written: the
    /// alternatives they had end.
    pub fn state_ended(&mut self, i: usize, bytes: std::ops::Range<u32>) {
        if self.state_alt.is_empty() || bytes.is_empty() {
            return;
        }
        let gone: Vec<StateByte> = self
            .state_alt
            .range((i, bytes.start)..(i, bytes.end))
            .map(|(&k, _)| k)
            .collect();
        for k in gone {
            self.state_alt.remove(&k);
        }
    }

    /// Component `i`'s bytes `0..len` were loaded from the arena bytes at
    /// `addr` (`mem` as it is): each byte that round-trips takes the values
    /// its arena byte may hold besides the loaded one ([`Freedoms::mem_values`]),
    /// and loses those it had.
    pub fn state_loaded(&mut self, i: usize, addr: u64, len: u32, mem: &Memory) {
        self.state_ended(i, 0..len);
        if self.mem_alt.is_empty() && self.coupled.is_empty() && self.header_free.is_empty() {
            return;
        }
        for (a, v) in self.mem_values(addr, u64::from(len), mem) {
            let j = a.wrapping_sub(addr) as u32;
            if round_trips(i, j) {
                self.state_alt.insert((i, j), v);
            }
        }
    }

    /// A save wrote component `i`'s bytes `j0..j0 + len` at `addr`: each arena
    /// byte may hold the alternatives of the state byte it copies. `writable`:
    /// whether the save may have written the byte at all.
    pub fn state_saved(
        &mut self,
        i: usize,
        j0: u32,
        addr: u64,
        len: u32,
        writable: impl Fn(u64) -> bool,
    ) {
        let found: Vec<(u64, Vec<(u8, &'static Latitude)>)> = self
            .state_alt
            .range((i, j0)..(i, j0.saturating_add(len)))
            .map(|(&(_, j), v)| (addr.wrapping_add(u64::from(j - j0)), v.clone()))
            .collect();
        for (a, v) in found {
            if writable(a) {
                for (x, l) in v {
                    self.alt(a, &[x], l);
                }
            }
        }
    }

    /// Removes and returns the alternatives of component `i`'s bytes (to be
    /// put back where an instruction moves the bytes: [`Freedoms::state_put`]).
    pub fn state_taken(&mut self, i: usize) -> Vec<(u32, Vec<(u8, &'static Latitude)>)> {
        let keys: Vec<StateByte> = self
            .state_alt
            .range((i, 0)..(i, u32::MAX))
            .map(|(&k, _)| k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.state_alt.remove(&k).map(|v| (k.1, v)))
            .collect()
    }

    /// Puts alternatives taken by [`Freedoms::state_taken`] back on component
    /// `i`'s bytes, byte `j`'s on byte `to(j)`.
    pub fn state_put(
        &mut self,
        i: usize,
        taken: Vec<(u32, Vec<(u8, &'static Latitude)>)>,
        to: impl Fn(u32) -> u32,
    ) {
        for (j, v) in taken {
            self.state_alt.insert((i, to(j)), v);
        }
    }

    /// For the 16 bytes of component `i` at `d` and at `s` (values `dv`, `sv`):
    /// each byte's values, the predicted one first and then its alternatives,
    /// where either has alternatives.
    #[allow(clippy::type_complexity)]
    pub fn state_pairs(
        &self,
        i: usize,
        d: u32,
        s: u32,
        dv: &[u8; 16],
        sv: &[u8; 16],
    ) -> Vec<(
        u32,
        Vec<(u8, &'static Latitude)>,
        Vec<(u8, &'static Latitude)>,
    )> {
        let vals = |j: u32, v: u8| {
            let mut x = vec![(v, &XINUSE_1_OVER_INIT)];
            x.extend(self.state_alt.get(&(i, j)).into_iter().flatten().copied());
            x
        };
        (0..16u32)
            .filter(|&k| {
                self.state_alt.contains_key(&(i, d + k)) || self.state_alt.contains_key(&(i, s + k))
            })
            .map(|k| (k, vals(d + k, dv[k as usize]), vals(s + k, sv[k as usize])))
            .collect()
    }

    /// Bytes `d + k` of component `i` became `f(a, b)` of the pairs of values
    /// [`Freedoms::state_pairs`] gave: their alternatives are `f` of every
    /// pair but the predicted one (the latitude of the alternative taken).
    #[allow(clippy::type_complexity)]
    pub fn state_combined(
        &mut self,
        i: usize,
        d: u32,
        pairs: Vec<(
            u32,
            Vec<(u8, &'static Latitude)>,
            Vec<(u8, &'static Latitude)>,
        )>,
        f: impl Fn(u8, u8) -> u8,
    ) {
        for (k, a, b) in pairs {
            let cur = f(a[0].0, b[0].0);
            let mut v: Vec<(u8, &'static Latitude)> = Vec::new();
            for (x, &(av, al)) in a.iter().enumerate() {
                for (y, &(bv, bl)) in b.iter().enumerate() {
                    let r = f(av, bv);
                    let l = if x > 0 { al } else { bl };
                    if (x, y) != (0, 0) && r != cur && !v.iter().any(|p| p.0 == r) {
                        v.push((r, l));
                    }
                }
            }
            if !v.is_empty() {
                self.state_alt.insert((i, d + k), v);
            }
        }
    }

    /// The latitude that lets state byte `j` of component `i` hold `v`, if any.
    pub fn state_allows(&self, i: usize, j: u32, v: u8) -> Option<&'static Latitude> {
        self.state_alt
            .get(&(i, j))
            .and_then(|e| e.iter().find(|&&(x, _)| x == v))
            .map(|&(_, l)| l)
    }

    /// The current save completed: its pending choices hold.
    pub fn commit_pending(&mut self) {
        self.coupled.append(&mut self.pending);
    }

    /// The current save faulted: any part of its writes may have been made
    /// (on the pages `writable` allows), so its pending choices become
    /// byte alternatives and free header bits.
    pub fn fault_pending(&mut self, writable: impl Fn(u64) -> bool) {
        for c in std::mem::take(&mut self.pending) {
            for &(a, new, _) in &c.bytes {
                if writable(a) {
                    self.alt(a, &[new], &PARTIAL_SAVE);
                }
            }
            if writable(c.header) {
                self.header_bits(c.header, 1 << c.bit);
            }
        }
    }
}

/// FIP as loaded, or canonicalized to 48 or 57 bits (a linear address; the SDM
/// does not say whether XRSTOR keeps non-canonical bits of it).
pub fn fip_variants(v: u64) -> [u64; 3] {
    [
        v,
        ((v << 16) as i64 >> 16) as u64,
        ((v << 7) as i64 >> 7) as u64,
    ]
}
