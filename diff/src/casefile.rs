//! Case files: a versioned text form of a [`Case`], human-readable and
//! diff-friendly, with an optional expected outcome and per-model records.
//!
//! ```text
//! # XSAVE64 with RFBM = x87 writes only the x87 part and XSTATE_BV[0].
//! xsave-case 1
//! model host                    # a built-in model name, or `host`
//! rules xsave.saves-rfbm        # optional: the SDM rules (ids of `xsdiff rules`) this case shows
//! target qemu-x86_64 10.0.2     # optional, repeatable: an emulator (program, version) that breaks them
//!
//! [control]                     # only what differs from the model's user default
//! cr0.ts = 1
//!
//! [init]                        # the initial image, sparse, by field name (`xsdiff fields`,
//!                               # diff/CASE-FIELDS.md: every name, its place and its sections)
//! fcw = 0x27f                   # `0x...`: a little-endian number
//! xmm3 = 00112233445566778899aabbccddeeff   # bare hex: bytes in memory order
//! xstate_bv = 0x3
//! tiledata[64..72] = 0102030405060708      # ranges inside a large field
//! init[416..420] = deadbeef     # any other bytes, by image offset (decimal or 0x)
//!
//! [arena]                       # 1 read-write zero page unless said otherwise
//! pages = 2
//! page 1 = none                 # rw | r | none
//! fill = aa                     # optional: every byte 0xAA first (the OFFSET lines then apply)
//! 0x40 = 0011223344             # arena offset = bytes
//! 0x100..0x200 = 55*            # a fill: START..END = XX* (also init[..], mem[..], final[..],
//!                               # supervisor[..], tiledata[..]); xsdiff writes fills for 16+ equal bytes
//!
//! [gprs]                        # only non-zero registers
//! rax = 0x1
//! rdi = arena+0x40
//!
//! [code]                        # one instruction a line: bytes, or Intel-syntax assembly
//! 48 0f ae 27   # xsave64 [rdi] # the disassembly after `#` is ignored when reading
//! xsaves64 [rbx+0x40]           # assembled with iced-x86 (shortest encoding); xsdiff
//!                               # writes bytes and disassembly back
//!
//! [expect]                      # optional: the expected outcome
//! fault = none                  # or `#GP(0x0) at 0`, `#PF(err=0x7, cr2=arena+0x1000) at 1`, `#NM at init`
//! xinuse = 0x3
//! xstate_bv = 0x3               # final-image fields that differ from the initial image
//! mem[0x40..0x42] = 7f03        # arena bytes that changed
//! rax = 0x5                     # GPRs that changed
//!
//! pl0_ssp = 0x0                 # supervisor state by name (CPL 0 cases; `xsdiff fields`)
//! compacted.cet_s = 2448, 24    # the layout a backend enumerates: OFFSET, SIZE of a
//! standard.size = 2432          # component, or an area's size (`xsdiff layout`)
//!
//! only = fault, memory          # optional: check only these parts (fault, gprs, final,
//!                               # xinuse, memory, supervisor, layout); default all
//! accept = sdm                  # optional: a backend other than emu also passes where it
//!                               # differs only by a choice the SDM leaves open
//!
//! [record xeon-amx-vm]          # optional: what that CPU model's silicon did (same keys)
//! ```
//!
//! `rules` names, comma-separated, the rules the case shows: the rules an
//! emulator finding breaks, or the rules a silicon case exercises. `target`
//! names an implementation that breaks them: the program as a backend runs it
//! (`qemu-x86_64`, `valgrind`, `bochs`, `qemu-system-x86_64`, `unicorn`) and
//! its version as `PROGRAM --version` prints it (`10.0.2`; a prefix such as
//! `7.2` stands for every 7.2.x). A campaign reads these lines to tell known
//! findings from new ones ([`crate::known`]).
//!
//! An expected final image is complete: every byte not named is expected to
//! equal the baseline ([`baseline_final`]: the initial image's values in the
//! standard format; a case that changes XCR0 is expected at the new size).
//! Supervisor state's baseline is the starting state ([`baseline_supervisor`]:
//! what the runner's XRSTORS of a compacted initial image loaded at CPL 0).
//! A faulting ring-3 case leaves XSTATE_BV bits 1:0 to the backend (Linux's
//! signal delivery sets XINUSE bits 1:0) unless the section states `xstate_bv`. `xinuse`
//! is checked only where a line gives it. What a backend cannot observe (supervisor state on a ring-3 runner,
//! XSTATE_BV bits outside XCR0 in the final image, a layout where the
//! backend's model is not its own CPUID) is not failed for being absent; an
//! explicit line on it is reported "cannot be checked on BACKEND", and a file
//! whose explicit lines no backend observed is not checked, never a pass.
//!
//! Numbers are `0x` hex, decimal or `0b` binary. Image offsets (`init[..]`,
//! `final[..]`) are written in decimal, arena offsets in hex. Every error names
//! the file, the line and what was expected, on one line.

use crate::fields::{Catalog, Field, ALIASES};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use std::fmt;
use std::fmt::Write as _;
use xsave_emu::case::{ARENA_BASE, CODE_BASE, GPR_NAMES, MAX_ARENA_PAGES, MAX_CODE};
use xsave_emu::layout;
use xsave_emu::memory::PAGE;
use xsave_emu::model::parse_u64;
use xsave_emu::state::{FCW_INIT, MXCSR_INIT};
use xsave_emu::{Case, Control, CpuModel, Fault, FaultAt, Memory, Outcome, Prot, Xfeatures};

/// The case-file format version this code reads and writes.
pub const VERSION: u32 = 1;

/// A case-file error: file, line (0 = the file as a whole) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}
impl std::error::Error for ParseError {}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// An `[expect]` or `[record MODEL]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub line: usize,
    pub items: Vec<Item>,
}

/// A `target PROGRAM VERSION` line: an implementation a finding is seen on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetLine {
    #[serde(skip)]
    pub line: usize,
    /// The program as a backend runs it: `qemu-x86_64`, `valgrind`, `bochs`.
    pub program: String,
    /// As `PROGRAM --version` prints it, or a prefix of it (`7.2`).
    pub version: String,
}

impl fmt::Display for TargetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.program, self.version)
    }
}

/// What a case file says about itself besides the case: the rules it shows
/// and the targets that break them (the `rules` and `target` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Rule ids, in file order.
    pub rules: Vec<String>,
    /// The line of the `rules` line (0: none).
    pub rules_line: usize,
    pub targets: Vec<TargetLine>,
}

/// A case file as read: the case's items, still to be built for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFile {
    pub file: String,
    /// The opening comment lines, without `# `.
    pub comments: Vec<String>,
    pub model: String,
    pub meta: Meta,
    pub control: Vec<Item>,
    pub init: Vec<Item>,
    pub arena: Vec<Item>,
    pub gprs: Vec<Item>,
    /// Instruction bytes, one entry a line.
    pub code: Vec<(usize, Vec<u8>)>,
    pub expect: Option<Section>,
    pub records: Vec<(String, Section)>,
}

/// An expected outcome built from a section; `xinuse` is checked only when
/// given, and `only = fault, memory, ...` limits the check to those parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub outcome: Outcome,
    pub check_xinuse: bool,
    /// Parts checked: fault, gprs, final, xinuse, memory, supervisor, layout (None: all).
    pub only: Option<Vec<String>>,
    /// XSTATE_BV bits of the final image the section leaves to the backend:
    /// those a faulting ring-3 case's signal delivery may change (Linux's
    /// sigreturn XRSTOR sets XINUSE bits 1:0; under `xinuse-by-contents` it also
    /// clears the bit of a component in its init configuration), unless the
    /// section states `xstate_bv`.
    pub free_xstate_bv: u64,
    /// The section states XSTATE_BV, memory or the x87 pointers explicitly:
    /// the model's noise quirks do not apply to them.
    pub explicit_noise_fields: bool,
    /// The section states supervisor state.
    pub states_supervisor: bool,
    /// The XSTATE_BV the section states, if it does.
    pub stated_xstate_bv: Option<u64>,
    /// XCR0 at the start (the ring-3 capture is an XSAVE with RFBM = XCR0).
    pub xcr0: u64,
    /// The layout the section states (`standard.avx = 576, 256`).
    pub layout: Vec<LayoutExpect>,
    /// `accept = sdm`: a backend other than the emulator also passes where it
    /// differs from the section only by a choice the SDM leaves open (inside
    /// the envelope: the modified optimization not taken, a partial restore
    /// before a #GP, ...). The emulator is still held to every value.
    pub accept_sdm: bool,
}

/// One stated layout item: `standard.COMPONENT = OFFSET, SIZE`,
/// `compacted.COMPONENT = OFFSET, SIZE`, `standard.size = N`,
/// `compacted.size = N`; `compacted(MASK).…` names the compacted format's
/// mask (default: the initial image's XCOMP_BV when it is compacted, else
/// XCR0 | IA32_XSS). Checked against the layout a backend enumerates (CPUID
/// leaf 0DH: the standard offset and size of component i are (0DH,i).EBX and
/// EAX; compacted offsets follow SDM1 §13.4.3 from the sizes and
/// (0DH,i).ECX bit 1; the standard size is (0DH,0).EBX for the case's XCR0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutExpect {
    pub line: usize,
    /// The key as written.
    pub key: String,
    /// None: the standard format; Some(mask): the compacted format of `mask`.
    pub compacted: Option<u64>,
    /// The component, or None for the size of the area.
    pub component: Option<usize>,
    /// (offset, size) of the component, or (None, size) of the area.
    pub value: (Option<u32>, u32),
}

impl LayoutExpect {
    /// What `model` enumerates for this item with XCR0 = `xcr0` (None: the
    /// component is not in that format on this model).
    pub fn observed(&self, model: &CpuModel, xcr0: u64) -> Option<(Option<u32>, u32)> {
        let lay = match self.compacted {
            None => layout::standard(
                model,
                Xfeatures::from_bits_retain(match self.component {
                    // A component's standard offset does not depend on XCR0.
                    Some(i) => 1 << i,
                    None => xcr0,
                }),
            ),
            Some(m) => layout::compacted(model, Xfeatures::from_bits_retain(m & !(1 << 63))),
        };
        match self.component {
            None => Some((None, lay.size)),
            Some(i) => lay.slot(i).map(|s| (Some(s.offset), s.size)),
        }
    }

    /// The item's name in a difference: `layout standard AVX`, `layout compacted 0x18e7 size`.
    pub fn what(&self) -> String {
        let f = match self.compacted {
            None => "standard".to_string(),
            Some(m) => format!("compacted {:#x}", m & !(1 << 63)),
        };
        let c = match self.component {
            Some(i) => format!(
                "{} (offset, size)",
                xsave_emu::component::component_name(i).unwrap_or("?")
            ),
            None => "size".into(),
        };
        format!("layout {f} {c}")
    }
}

/// `576, 256` or `2432`; absent: `none`.
pub fn fmt_layout_value(v: Option<(Option<u32>, u32)>) -> String {
    match v {
        None => "none (not in this format)".into(),
        Some((Some(o), s)) => format!("{o}, {s}"),
        Some((None, s)) => s.to_string(),
    }
}

/// The parts an `only` line may name.
pub const PARTS: [&str; 7] = [
    "fault",
    "gprs",
    "final",
    "xinuse",
    "memory",
    "supervisor",
    "layout",
];

impl Expected {
    /// What the section states explicitly that a backend cannot observe, as
    /// (key, what) pairs: supervisor state where the backend does not read it
    /// (a ring-3 runner), XSTATE_BV bits outside XCR0 (the final image is an
    /// XSAVE with RFBM = XCR0, which never writes them), a layout where the
    /// backend's model is not its enumerated CPUID. A part `only` leaves out
    /// is not stated.
    pub fn unobservable(
        &self,
        observes_supervisor: bool,
        enumerates_layout: bool,
    ) -> Vec<(String, String)> {
        let on = |p: &str| self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == p));
        let mut v = Vec::new();
        if self.states_supervisor && !observes_supervisor && on("supervisor") {
            v.push((
                "supervisor".into(),
                "supervisor state (a ring-3 runner cannot read IA32_XSS components)".into(),
            ));
        }
        let outside = self.stated_xstate_bv.unwrap_or(0) & !self.xcr0;
        if outside != 0 && on("final") {
            for i in Xfeatures::from_bits_retain(outside).indices() {
                v.push((
                    format!("xstate_bv:{i}"),
                    format!(
                        "XSTATE_BV bit {i} ({}) (the final image is an XSAVE with RFBM = XCR0 = {:#x})",
                        xsave_emu::component::component_name(i).unwrap_or("?"),
                        self.xcr0
                    ),
                ));
            }
        }
        if !self.layout.is_empty() && !enumerates_layout && on("layout") {
            v.push((
                "layout".into(),
                "the layout (its model is not read from its CPUID)".into(),
            ));
        }
        v
    }

    /// The layout lines this section checks (none when `only` leaves layout out).
    pub fn checked_layout(&self) -> &[LayoutExpect] {
        match &self.only {
            Some(o) if !o.iter().any(|x| x == "layout") => &[],
            _ => &self.layout,
        }
    }

    /// `self.outcome` with every part this section does not check taken from `obs`.
    pub fn against(&self, obs: &Outcome) -> Outcome {
        let mut e = self.outcome.clone();
        // XSTATE_BV bits left free, and those no capture can hold.
        let free = self.free_xstate_bv | !self.xcr0;
        if e.final_image.len() >= 520 && obs.final_image.len() >= 520 {
            let q = |b: &[u8]| u64::from_le_bytes(b[512..520].try_into().unwrap());
            let v = q(&e.final_image) & !free | q(&obs.final_image) & free;
            e.final_image[512..520].copy_from_slice(&v.to_le_bytes());
        }
        let on = |p: &str| self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == p));
        if !self.check_xinuse || !on("xinuse") {
            e.xinuse = obs.xinuse;
        }
        if !on("fault") {
            e.fault = obs.fault;
        }
        if !on("gprs") {
            e.gprs = obs.gprs;
        }
        if !on("final") {
            e.final_image = obs.final_image.clone();
        }
        if !on("memory") {
            e.memory = obs.memory.clone();
        }
        if !on("supervisor") {
            e.supervisor = obs.supervisor.clone();
        }
        e
    }
}

#[derive(PartialEq)]
enum Sec {
    Top,
    Control,
    Init,
    Arena,
    Gprs,
    Code,
    Expect,
    Record,
}

impl CaseFile {
    /// Reads a case file's text (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<CaseFile, ParseError> {
        let err = |line: usize, m: String| ParseError {
            file: file.to_string(),
            line,
            message: m,
        };
        let mut cf = CaseFile {
            file: file.to_string(),
            comments: Vec::new(),
            model: String::new(),
            meta: Meta::default(),
            control: Vec::new(),
            init: Vec::new(),
            arena: Vec::new(),
            gprs: Vec::new(),
            code: Vec::new(),
            expect: None,
            records: Vec::new(),
        };
        let mut version_seen = false;
        let mut sec = Sec::Top;
        for (n, raw) in text.lines().enumerate() {
            let ln = n + 1;
            let trimmed = raw.trim();
            if !version_seen {
                if let Some(c) = trimmed.strip_prefix('#') {
                    cf.comments
                        .push(c.strip_prefix(' ').unwrap_or(c).to_string());
                    continue;
                }
                if trimmed.is_empty() {
                    continue;
                }
                let v = trimmed
                    .strip_prefix("xsave-case")
                    .map(str::trim)
                    .ok_or_else(|| err(ln, format!("expected `xsave-case {VERSION}` as the first line that is not a comment, found `{trimmed}`")))?;
                match v.parse::<u32>() {
                    Ok(VERSION) => {}
                    _ => {
                        return Err(err(
                            ln,
                            format!("unsupported case-file version `{v}` (this xsdiff reads version {VERSION})"),
                        ))
                    }
                }
                version_seen = true;
                continue;
            }
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(h) = line.strip_prefix('[') {
                let h = h.strip_suffix(']').ok_or_else(|| {
                    err(
                        ln,
                        format!("expected a section header `[name]`, found `{line}`"),
                    )
                })?;
                let h = h.trim();
                sec = match h {
                    "control" => Sec::Control,
                    "init" => Sec::Init,
                    "arena" => Sec::Arena,
                    "gprs" => Sec::Gprs,
                    "code" => Sec::Code,
                    "expect" => {
                        if cf.expect.is_some() {
                            return Err(err(ln, "a second [expect] section".into()));
                        }
                        cf.expect = Some(Section {
                            line: ln,
                            items: Vec::new(),
                        });
                        Sec::Expect
                    }
                    _ => {
                        let m = h.strip_prefix("record").map(str::trim).filter(|m| !m.is_empty()).ok_or_else(|| {
                            err(ln, format!("unknown section `[{h}]` (expected control, init, arena, gprs, code, expect or record MODEL)"))
                        })?;
                        if cf.records.iter().any(|(r, _)| r == m) {
                            return Err(err(ln, format!("a second [record {m}] section")));
                        }
                        cf.records.push((
                            m.to_string(),
                            Section {
                                line: ln,
                                items: Vec::new(),
                            },
                        ));
                        Sec::Record
                    }
                };
                continue;
            }
            if sec == Sec::Code {
                let bytes = if crate::assemble::is_hex_line(line) {
                    let hex: String = line.split_whitespace().collect();
                    parse_hex(&hex).expect("two hex digits a token")
                } else {
                    let ip = CODE_BASE + cf.code.iter().map(|c| c.1.len() as u64).sum::<u64>();
                    crate::assemble::assemble(line, ip).map_err(|e| {
                        err(ln, format!("expected instruction bytes in hex (`48 0f ae 27`) or Intel-syntax assembly (`xsaves64 [rbx+0x40]`): {e}"))
                    })?
                };
                cf.code.push((ln, bytes));
                continue;
            }
            if sec == Sec::Top {
                let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let v = v.trim();
                match k {
                    "model" if !v.is_empty() => cf.model = v.to_string(),
                    "rules" if !v.is_empty() => {
                        if cf.meta.rules_line != 0 {
                            return Err(err(ln, format!("a second `rules` line (the first is line {})", cf.meta.rules_line)));
                        }
                        for r in v.split(',').map(str::trim) {
                            if !is_rule_id(r) {
                                return Err(err(ln, format!("expected rule ids like `xsave.saves-rfbm`, comma-separated, found `{r}` in `{line}`")));
                            }
                            cf.meta.rules.push(r.to_string());
                        }
                        cf.meta.rules_line = ln;
                    }
                    "target" => {
                        let mut w = v.split_whitespace();
                        match (w.next(), w.next(), w.next()) {
                            (Some(p), Some(ver), None) => cf.meta.targets.push(TargetLine {
                                line: ln,
                                program: p.to_string(),
                                version: ver.to_string(),
                            }),
                            _ => {
                                return Err(err(ln, format!("expected `target PROGRAM VERSION` (e.g. `target qemu-x86_64 10.0.2`), found `{line}`")))
                            }
                        }
                    }
                    _ => {
                        return Err(err(
                            ln,
                            format!("expected `model NAME`, `rules ID, ...`, `target PROGRAM VERSION` or a section header, found `{line}`"),
                        ))
                    }
                }
                continue;
            }
            let item = if sec == Sec::Arena && line.starts_with("page ") {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    err(ln, format!("expected `page N = rw|r|none`, found `{line}`"))
                })?;
                Item {
                    line: ln,
                    key: k.trim().to_string(),
                    value: v.trim().to_string(),
                }
            } else {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| err(ln, format!("expected `name = value`, found `{line}`")))?;
                let (k, v) = (k.trim(), v.trim());
                if k.is_empty() || v.is_empty() {
                    return Err(err(ln, format!("expected `name = value`, found `{line}`")));
                }
                Item {
                    line: ln,
                    key: k.to_string(),
                    value: v.to_string(),
                }
            };
            match sec {
                Sec::Control => cf.control.push(item),
                Sec::Init => cf.init.push(item),
                Sec::Arena => cf.arena.push(item),
                Sec::Gprs => cf.gprs.push(item),
                Sec::Expect => cf.expect.as_mut().unwrap().items.push(item),
                Sec::Record => cf.records.last_mut().unwrap().1.items.push(item),
                Sec::Top | Sec::Code => unreachable!("handled above"),
            }
        }
        if !version_seen {
            return Err(err(0, format!("expected a `xsave-case {VERSION}` line")));
        }
        if cf.model.is_empty() {
            return Err(err(
                0,
                "expected a `model NAME` line (a built-in model or `host`)".into(),
            ));
        }
        Ok(cf)
    }

    /// Reads a case file from disk.
    pub fn load(path: &std::path::Path) -> Result<CaseFile, ParseError> {
        let text = std::fs::read_to_string(path).map_err(|e| ParseError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        CaseFile::parse(&text, &path.display().to_string())
    }

    fn err(&self, line: usize, m: String) -> ParseError {
        ParseError {
            file: self.file.clone(),
            line,
            message: m,
        }
    }

    /// Builds the case for `model` (the file's own model, or the one that
    /// `host` stands for).
    pub fn build(&self, model: &CpuModel) -> Result<Case, ParseError> {
        let mut ctl = Control::user(model);
        for it in &self.control {
            let num = || {
                parse_u64(&it.value).ok_or_else(|| {
                    self.err(
                        it.line,
                        format!("expected a number for `{}`, found `{}`", it.key, it.value),
                    )
                })
            };
            let flag = || -> Result<bool, ParseError> {
                match it.value.as_str() {
                    "0" => Ok(false),
                    "1" => Ok(true),
                    v => Err(self.err(
                        it.line,
                        format!("expected 0 or 1 for `{}`, found `{v}`", it.key),
                    )),
                }
            };
            match it.key.as_str() {
                "xcr0" => ctl.xcr0 = num()?,
                "xss" => ctl.xss = num()?,
                "xfd" => ctl.xfd = num()?,
                "cpl" => {
                    let c = num()?;
                    if c > 3 {
                        return Err(self.err(it.line, format!("expected a CPL 0..3, found {c}")));
                    }
                    ctl.cpl = c as u8
                }
                "cr0.ts" => ctl.cr0_ts = flag()?,
                "cr0.em" => ctl.cr0_em = flag()?,
                "cr0.am" => ctl.cr0_am = flag()?,
                "cr4.osxsave" => ctl.cr4_osxsave = flag()?,
                "cr4.osfxsr" => ctl.cr4_osfxsr = flag()?,
                "eflags.ac" => ctl.eflags_ac = flag()?,
                "vmx_nonroot" => ctl.vmx_nonroot = flag()?,
                k => {
                    return Err(self.err(it.line, format!(
                        "unknown control `{k}` (expected xcr0, xss, xfd, cpl, cr0.ts, cr0.em, cr0.am, cr4.osxsave, cr4.osfxsr, eflags.ac or vmx_nonroot)"
                    )))
                }
            }
        }
        // The image: its format comes from an `xcomp_bv` item, if any.
        let mut xcomp = 0u64;
        let mut size = None;
        for it in &self.init {
            if it.key == "xcomp_bv" {
                xcomp = parse_u64(&it.value).ok_or_else(|| {
                    self.err(
                        it.line,
                        format!("expected a number for xcomp_bv, found `{}`", it.value),
                    )
                })?;
            }
            if it.key == "size" {
                let s = parse_u64(&it.value)
                    .filter(|&s| (576..=1 << 20).contains(&s))
                    .ok_or_else(|| {
                        self.err(
                            it.line,
                            format!("expected an image size 576..1048576, found `{}`", it.value),
                        )
                    })?;
                size = Some(s as usize);
            }
        }
        let compacted = xcomp >> 63 == 1;
        let mut init = default_image(model, ctl.xcr0, xcomp);
        if let Some(s) = size {
            init.resize(s, 0);
        }
        let cat = Catalog::new(model, if compacted { xcomp } else { ctl.xcr0 }, compacted);
        for it in &self.init {
            if it.key == "size" {
                continue;
            }
            self.assign(&cat, "init", &mut init, it)?;
        }
        // Arena.
        let mut pages = 1usize;
        for it in &self.arena {
            if it.key == "pages" {
                pages = parse_u64(&it.value)
                    .filter(|&p| (1..=MAX_ARENA_PAGES as u64).contains(&p))
                    .ok_or_else(|| {
                        self.err(
                            it.line,
                            format!(
                                "expected a page count 1..{MAX_ARENA_PAGES}, found `{}`",
                                it.value
                            ),
                        )
                    })? as usize;
            }
        }
        let mut memory = Memory::new(ARENA_BASE, pages);
        // A fill comes first, wherever its line is.
        for it in self.arena.iter().filter(|it| it.key == "fill") {
            let b = parse_hex(it.value.trim())
                .filter(|b| b.len() == 1)
                .ok_or_else(|| {
                    self.err(
                        it.line,
                        format!(
                            "expected `fill = XX` (one byte in hex), found `{}`",
                            it.value
                        ),
                    )
                })?;
            memory.bytes.fill(b[0]);
        }
        for it in &self.arena {
            if it.key == "pages" {
                continue;
            }
            if let Some(p) = it.key.strip_prefix("page ") {
                let k = parse_u64(p)
                    .filter(|&k| (k as usize) < pages)
                    .ok_or_else(|| {
                        self.err(
                            it.line,
                            format!("expected a page number below {pages}, found `{}`", p.trim()),
                        )
                    })?;
                memory.prot[k as usize] = match it.value.as_str() {
                    "rw" => Prot::ReadWrite,
                    "r" => Prot::Read,
                    "none" => Prot::None,
                    v => {
                        return Err(self.err(
                            it.line,
                            format!("expected a protection rw, r or none, found `{v}`"),
                        ))
                    }
                };
                continue;
            }
            if it.key == "fill" {
                continue;
            }
            let (a, end) = match it.key.split_once("..") {
                Some((a, e)) => (a, Some(e)),
                None => (it.key.as_str(), None),
            };
            let off = parse_u64(a).ok_or_else(|| {
                self.err(
                    it.line,
                    format!(
                        "expected `pages = N`, `page N = PROT`, `fill = XX`, `OFFSET = hex` or `START..END = XX*`, found key `{}`",
                        it.key
                    ),
                )
            })? as usize;
            let b = self.range_bytes(it, off, end)?;
            if off + b.len() > memory.bytes.len() {
                return Err(self.err(
                    it.line,
                    format!(
                        "bytes {off:#x}..{:#x} run past the arena's {pages} page(s)",
                        off + b.len()
                    ),
                ));
            }
            memory.bytes[off..off + b.len()].copy_from_slice(&b);
        }
        // GPRs.
        let mut gprs = [0u64; 16];
        for it in &self.gprs {
            let r = gpr_index(&it.key).ok_or_else(|| {
                self.err(
                    it.line,
                    format!("unknown register `{}` (expected rax..r15)", it.key),
                )
            })?;
            gprs[r] = parse_addr(&it.value).ok_or_else(|| {
                self.err(
                    it.line,
                    format!(
                        "expected a number or `arena+OFFSET` for {}, found `{}`",
                        it.key, it.value
                    ),
                )
            })?;
        }
        let mut code = Vec::new();
        for (_, b) in &self.code {
            code.extend_from_slice(b);
        }
        if code.len() > MAX_CODE {
            let l = self.code.last().map_or(0, |c| c.0);
            return Err(self.err(
                l,
                format!("code is {} bytes; at most {MAX_CODE}", code.len()),
            ));
        }
        Ok(Case {
            control: ctl,
            init,
            memory,
            code,
            gprs,
        })
    }

    /// The bytes of a ranged item `A..END = value`: hex, or a fill `XX*` (the
    /// byte XX repeated to END, which a fill needs).
    fn range_bytes(&self, it: &Item, a: usize, end: Option<&str>) -> Result<Vec<u8>, ParseError> {
        let v = it.value.trim();
        let Some(byte) = v.strip_suffix('*') else {
            return self.hex(it);
        };
        let b = parse_hex(byte.trim())
            .filter(|b| b.len() == 1)
            .ok_or_else(|| {
                self.err(
                    it.line,
                    format!(
                        "expected a fill `XX*` (one byte in hex, then `*`) for `{}`, found `{v}`",
                        it.key
                    ),
                )
            })?;
        let e = end
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .and_then(parse_u64)
            .filter(|&e| e as usize >= a)
            .ok_or_else(|| {
                self.err(
                    it.line,
                    format!("a fill `{v}` needs a range START..END, found `{}`", it.key),
                )
            })? as usize;
        Ok(vec![b[0]; e - a])
    }

    fn hex(&self, it: &Item) -> Result<Vec<u8>, ParseError> {
        let s: String = it.value.split_whitespace().collect();
        parse_hex(&s.replace('_', "")).ok_or_else(|| {
            self.err(
                it.line,
                format!("expected hex bytes for `{}`, found `{}`", it.key, it.value),
            )
        })
    }

    /// Applies one `field = value` to an image.
    fn assign(
        &self,
        cat: &Catalog,
        raw: &str,
        img: &mut [u8],
        it: &Item,
    ) -> Result<(), ParseError> {
        let key = it.key.as_str();
        if let Some((name, range)) = key.split_once('[') {
            let range = range.strip_suffix(']').ok_or_else(|| {
                self.err(
                    it.line,
                    format!("expected `{name}[START..END]`, found `{key}`"),
                )
            })?;
            let (base, limit) = if name == raw {
                (0usize, img.len())
            } else {
                let f = cat.get(name).filter(|f| f.ranged).ok_or_else(|| {
                    self.err(it.line, format!("`{name}[..]` is not a ranged field here (expected {raw}[..] or tiledata[..])"))
                })?;
                (f.offset, f.len)
            };
            let (a, b) = range.split_once("..").ok_or_else(|| {
                self.err(
                    it.line,
                    format!("expected a range START..END or START.., found `{range}`"),
                )
            })?;
            let a = parse_u64(a)
                .ok_or_else(|| self.err(it.line, format!("bad range start `{a}`")))?
                as usize;
            let bytes = self.range_bytes(it, a, Some(b))?;
            if !b.trim().is_empty() {
                let b = parse_u64(b)
                    .ok_or_else(|| self.err(it.line, format!("bad range end `{b}`")))?
                    as usize;
                if b < a || b - a != bytes.len() {
                    return Err(self.err(
                        it.line,
                        format!(
                            "range {a}..{b} holds {} bytes, the value has {}",
                            b.saturating_sub(a),
                            bytes.len()
                        ),
                    ));
                }
            }
            if a + bytes.len() > limit {
                return Err(self.err(
                    it.line,
                    format!(
                        "bytes {a}..{} run past the end ({limit}) of `{name}`",
                        a + bytes.len()
                    ),
                ));
            }
            img[base + a..base + a + bytes.len()].copy_from_slice(&bytes);
            return Ok(());
        }
        let (off, len) = match cat.get(key) {
            Some(f) if !f.ranged => (f.offset, f.len),
            Some(_) => {
                return Err(self.err(
                    it.line,
                    format!("`{key}` is written by ranges: `{key}[START..END] = hex`"),
                ))
            }
            None => match ALIASES.iter().find(|a| a.0 == key) {
                Some(&(_, o, l)) => (o, l),
                None => return Err(self.err(it.line, self.absent_field(key, raw, cat))),
            },
        };
        if off + len > img.len() {
            return Err(self.err(
                it.line,
                format!("`{key}` lies outside the {}-byte image", img.len()),
            ));
        }
        let bytes = parse_value(&it.value, len).ok_or_else(|| {
            self.err(
                it.line,
                format!(
                    "expected a `0x` number or {len} hex bytes for `{key}`, found `{}`",
                    it.value
                ),
            )
        })?;
        img[off..off + len].copy_from_slice(&bytes);
        Ok(())
    }

    /// Why `key` is not a field of this image: a field of a component the
    /// image does not hold (and what would make it hold it), or an unknown
    /// name with the nearest names.
    fn absent_field(&self, key: &str, raw: &str, cat: &Catalog) -> String {
        let model = crate::repro::file_model(self).ok();
        let all = model.as_ref().map(crate::fields::all_fields);
        if let Some(f) = all.as_ref().and_then(|a| a.get(key)) {
            let i = f.component.unwrap_or(0);
            let name = xsave_emu::component::component_name(i).unwrap_or("?");
            let sup = model
                .as_ref()
                .and_then(|m| m.component(i))
                .is_some_and(|c| c.supervisor);
            return if sup && raw == "init" {
                format!("{name} fields need a compacted image: xcomp_bv with bits 63 and {i} (e.g. `xcomp_bv = {:#x}`), for `{key}`", 1u64 << 63 | 1 << i | 3)
            } else if sup {
                format!("`{key}` is {name} state: it is not in the final image (a user XSAVE); state it in [expect] with `xss` bit {i} set in [control]")
            } else if raw == "init" {
                format!("`{key}` is {name} state (component {i}), not in this image: set XCR0 bit {i} in [control] (standard image) or xcomp_bv bit {i} (compacted)")
            } else {
                format!("`{key}` is {name} state (component {i}), not in the final image: XCR0 bit {i} is clear")
            };
        }
        let mut names: Vec<&str> = cat.fields.iter().map(|f| f.name.as_str()).collect();
        if let Some(a) = &all {
            names.extend(a.fields.iter().map(|f| f.name.as_str()));
        }
        names.extend(GPR_NAMES);
        names.extend(["fault", "xinuse", "only", "accept", "xstate_bv", "xcomp_bv"]);
        let near = crate::fields::nearest(key, names.into_iter(), 3);
        let hint = if near.is_empty() {
            String::new()
        } else {
            format!(
                " (did you mean {}?)",
                near.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("unknown field `{key}`{hint}; `xsdiff fields --cpu {}` lists every field, and `{raw}[OFFSET..] = hex` writes any byte", self.model)
    }

    /// The expected outcome of `section` for `case` on `model`.
    pub fn expected(
        &self,
        section: &Section,
        model: &CpuModel,
        case: &Case,
    ) -> Result<Expected, ParseError> {
        let mut out = Outcome {
            fault: None,
            final_image: baseline_final(model, case),
            xinuse: None,
            gprs: case.gprs,
            memory: case.memory.bytes.clone(),
            supervisor: baseline_supervisor(model, case),
        };
        let mut check_xinuse = false;
        let mut only = None;
        let mut accept_sdm = false;
        let cat = Catalog::new(model, case.control.xcr0, false);
        let sup = crate::fields::supervisor_fields(model, case.control.xss);
        let mut explicit_noise_fields = false;
        let mut states_supervisor = false;
        let mut stated_xstate_bv = None;
        let mut layout = Vec::new();
        // A case that changes XCR0 (XSETBV) ends with an image of the new size:
        // the baseline takes the size of the model's prediction.
        if let Ok(p) = xsave_emu::predict(model, case) {
            resize_baseline(model, &mut out.final_image, &p.final_image);
        }
        for it in &section.items {
            let key = it.key.as_str();
            if key == "xstate_bv" {
                stated_xstate_bv = parse_u64(&it.value);
            }
            if key == "xstate_bv"
                || ["fip", "fdp", "fop", "fcs", "fds"].contains(&key)
                || key.starts_with("mem[") && states_noisy_bytes(case, key)
            {
                explicit_noise_fields = true;
            }
            if let Some(l) = self.layout_item(it, case)? {
                layout.push(l);
                continue;
            }
            if let Some(f) = sup.iter().find(|f| f.name == key) {
                states_supervisor = true;
                let b = parse_value(&it.value, f.len).ok_or_else(|| {
                    self.err(
                        it.line,
                        format!(
                            "expected a `0x` number or {} hex bytes for `{key}`, found `{}`",
                            f.len, it.value
                        ),
                    )
                })?;
                out.supervisor[f.offset..f.offset + f.len].copy_from_slice(&b);
                continue;
            }
            if let Some(i) = supervisor_component_of(model, key) {
                return Err(self.err(
                    it.line,
                    format!(
                        "`{key}` is {} state (component {i}): the case's IA32_XSS needs bit {i} (`xss = {:#x}` in [control]), and only a CPL 0 case with XSAVES/XRSTORS changes it",
                        xsave_emu::component::component_name(i).unwrap_or("?"),
                        case.control.xss | 1 << i
                    ),
                ));
            }
            match key {
                "accept" => {
                    if it.value != "sdm" {
                        return Err(self.err(
                            it.line,
                            format!(
                                "expected `accept = sdm` (another backend passes inside the SDM's latitude), found `accept = {}`",
                                it.value
                            ),
                        ));
                    }
                    accept_sdm = true;
                }
                "only" => {
                    let v: Vec<String> =
                        it.value.split(',').map(|p| p.trim().to_string()).collect();
                    if let Some(bad) = v.iter().find(|p| !PARTS.contains(&p.as_str())) {
                        return Err(self.err(
                            it.line,
                            format!(
                                "unknown part `{bad}` in `only` (expected some of {})",
                                PARTS.join(", ")
                            ),
                        ));
                    }
                    only = Some(v);
                }
                "fault" => {
                    out.fault = parse_fault(&it.value).ok_or_else(|| {
                        self.err(it.line, format!("expected `none` or a fault such as `#GP(0x0) at 0`, `#PF(err=0x6, cr2=arena+0x1000) at 1`, `#NM at init`; found `{}`", it.value))
                    })?;
                }
                "xinuse" => {
                    check_xinuse = true;
                    out.xinuse = if it.value == "none" {
                        None
                    } else {
                        Some(parse_u64(&it.value).ok_or_else(|| {
                            self.err(
                                it.line,
                                format!(
                                    "expected a number or `none` for xinuse, found `{}`",
                                    it.value
                                ),
                            )
                        })?)
                    };
                }
                k if k.starts_with("supervisor[") => {
                    states_supervisor = true;
                    let r = k[11..].strip_suffix(']').and_then(|r| r.split_once(".."));
                    let a = r.and_then(|(a, _)| parse_u64(a)).ok_or_else(|| {
                        self.err(
                            it.line,
                            format!("expected `supervisor[START..END] = hex`, found `{k}`"),
                        )
                    })? as usize;
                    let b = self.range_bytes(it, a, r.map(|x| x.1))?;
                    if a + b.len() > out.supervisor.len() {
                        return Err(self.err(
                            it.line,
                            format!(
                                "bytes {a}..{} run past the {}-byte supervisor state",
                                a + b.len(),
                                out.supervisor.len()
                            ),
                        ));
                    }
                    out.supervisor[a..a + b.len()].copy_from_slice(&b);
                }
                k if k.starts_with("mem[") => {
                    let r = k[4..].strip_suffix(']').and_then(|r| r.split_once(".."));
                    let a = r.and_then(|(a, _)| parse_u64(a)).ok_or_else(|| {
                        self.err(
                            it.line,
                            format!("expected `mem[START..END] = hex`, found `{k}`"),
                        )
                    })? as usize;
                    let b = self.range_bytes(it, a, r.map(|x| x.1))?;
                    if a + b.len() > out.memory.len() {
                        return Err(self.err(
                            it.line,
                            format!("bytes {a:#x}..{:#x} run past the arena", a + b.len()),
                        ));
                    }
                    out.memory[a..a + b.len()].copy_from_slice(&b);
                }
                k => {
                    if let Some(r) = gpr_index(k) {
                        out.gprs[r] = parse_addr(&it.value).ok_or_else(|| {
                            self.err(
                                it.line,
                                format!("expected a number for {k}, found `{}`", it.value),
                            )
                        })?;
                    } else {
                        self.assign(&cat, "final", &mut out.final_image, it)?;
                    }
                }
            }
        }
        // Signal delivery after a ring-3 fault (see `free_xstate_bv`).
        let mut free_xstate_bv = 0;
        if out.fault.is_some() && case.control.cpl == 3 && stated_xstate_bv.is_none() {
            free_xstate_bv = 3;
            if model.quirks.xinuse_by_contents {
                let std = layout::standard(model, Xfeatures::from_bits_retain(case.control.xcr0));
                for sl in &std.slots {
                    let (a, b) = (sl.offset as usize, (sl.offset + sl.size) as usize);
                    if out
                        .final_image
                        .get(a..b)
                        .is_some_and(|r| r.iter().all(|&x| x == 0))
                    {
                        free_xstate_bv |= 1 << sl.index;
                    }
                }
            }
        }
        Ok(Expected {
            outcome: out,
            check_xinuse,
            only,
            free_xstate_bv,
            explicit_noise_fields,
            states_supervisor,
            stated_xstate_bv,
            xcr0: case.control.xcr0,
            layout,
            accept_sdm,
        })
    }

    /// A layout item (`standard.avx = 576, 256`, `compacted(0x18e7).size =
    /// 2472`), or None when `it` is not one.
    fn layout_item(&self, it: &Item, case: &Case) -> Result<Option<LayoutExpect>, ParseError> {
        let key = it.key.as_str();
        let (compacted, rest) = if let Some(r) = key.strip_prefix("standard.") {
            (None, r)
        } else if let Some(r) = key.strip_prefix("compacted.") {
            let xcomp = if case.init.len() >= 528 {
                case.init_xcomp_bv()
            } else {
                0
            };
            let m = if xcomp >> 63 == 1 {
                xcomp
            } else {
                case.control.xcr0 | case.control.xss
            };
            (Some(m & !(1 << 63)), r)
        } else if let Some(r) = key.strip_prefix("compacted(") {
            let (m, r) = r
                .split_once(").")
                .and_then(|(m, r)| Some((parse_u64(m)?, r)))
                .ok_or_else(|| {
                    self.err(
                        it.line,
                        format!("expected `compacted(MASK).COMPONENT` or `compacted(MASK).size`, found `{key}`"),
                    )
                })?;
            (Some(m & !(1 << 63)), r)
        } else {
            return Ok(None);
        };
        let component = if rest == "size" {
            None
        } else {
            Some(
                parse_u64(rest)
                    .map(|i| i as usize)
                    .filter(|&i| i <= xsave_emu::component::MAX_COMPONENT)
                    .or_else(|| xsave_emu::component::component_by_name(rest))
                    // `tilecfg`, `tiledata`: the names of the fields.
                    .or_else(|| xsave_emu::component::component_by_name(&format!("x{rest}")))
                    .ok_or_else(|| {
                        let names: Vec<&str> = xsave_emu::component::COMPONENTS
                            .iter()
                            .map(|c| c.name)
                            .collect();
                        self.err(
                            it.line,
                            format!(
                                "unknown component `{rest}` in `{key}` (expected `size`, a component number or name: {})",
                                names.join(", ")
                            ),
                        )
                    })?,
            )
        };
        let nums: Vec<Option<u32>> = it
            .value
            .split(',')
            .map(|v| parse_u64(v.trim()).and_then(|n| u32::try_from(n).ok()))
            .collect();
        let value = match (component, nums.as_slice()) {
            (Some(_), [Some(o), Some(s)]) => (Some(*o), *s),
            (None, [Some(s)]) => (None, *s),
            (Some(_), _) => {
                return Err(self.err(
                    it.line,
                    format!("expected `OFFSET, SIZE` (as `xsdiff layout` prints them) for `{key}`, found `{}`", it.value),
                ))
            }
            (None, _) => {
                return Err(self.err(
                    it.line,
                    format!("expected the area's size in bytes for `{key}`, found `{}`", it.value),
                ))
            }
        };
        Ok(Some(LayoutExpect {
            line: it.line,
            key: key.to_string(),
            compacted,
            component,
            value,
        }))
    }
}

/// Whether a `mem[A..B]` key covers bytes a noise quirk would excuse: the
/// XSTATE_BV (512..520) or the x87 pointers (6..24) of an area the case saves to.
fn states_noisy_bytes(case: &Case, key: &str) -> bool {
    let Some((a, b)) = key[4..]
        .strip_suffix(']')
        .and_then(|r| r.split_once(".."))
        .and_then(|(a, b)| Some((parse_u64(a)?, parse_u64(b)?)))
    else {
        return false;
    };
    let (a, b) = (case.memory.base + a, case.memory.base + b);
    crate::compare::save_areas(case)
        .iter()
        .any(|&s| a < s + 520 && b > s + 512 || a < s + 24 && b > s + 6)
}

/// The supervisor component of `model` whose state a field name names
/// (`pl0_ssp`: 12).
fn supervisor_component_of(model: &CpuModel, key: &str) -> Option<usize> {
    let i = crate::fields::all_fields(model).get(key)?.component?;
    model.component(i).filter(|c| c.supervisor).map(|_| i)
}

/// Sizes a baseline final image as the predicted one: truncated (XSTATE_BV
/// losing the bits of the components cut off), or extended with the
/// prediction's bytes.
fn resize_baseline(model: &CpuModel, img: &mut Vec<u8>, pred: &[u8]) {
    if img.len() == pred.len() {
        return;
    }
    if pred.len() < img.len() {
        img.truncate(pred.len());
        let all = layout::standard(model, Xfeatures::from_bits_retain(model.xcr0_supported));
        let mut keep = 3u64;
        for sl in &all.slots {
            if (sl.offset + sl.size) as usize <= pred.len() {
                keep |= 1 << sl.index;
            }
        }
        if img.len() >= 520 {
            let v = u64::from_le_bytes(img[512..520].try_into().unwrap()) & keep;
            img[512..520].copy_from_slice(&v.to_le_bytes());
        }
    } else {
        let n = img.len();
        img.extend_from_slice(&pred[n..]);
    }
}

/// A line without its comment: `#` starts a comment at the start of a line or
/// when followed by a space or the end of the line (so `#GP(0x0)` is a value).
/// Whether `s` is spelled as a rule id: `scope.what`, lower-case letters,
/// digits and `-`, one or more dots.
pub fn is_rule_id(s: &str) -> bool {
    s.contains('.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

pub fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())) {
            return &line[..i];
        }
    }
    line
}

/// The default image: FCW = 037FH, MXCSR = 1F80H, the rest zero; standard
/// size for `xcr0`, or at least the compacted size when XCOMP_BV bit 63 = 1.
pub fn default_image(model: &CpuModel, xcr0: u64, xcomp: u64) -> Vec<u8> {
    let mut size = layout::standard(model, Xfeatures::from_bits_retain(xcr0)).size as usize;
    if xcomp >> 63 == 1 {
        let c = layout::compacted(model, Xfeatures::from_bits_retain(xcomp & !(1 << 63)));
        size = size.max(c.size as usize);
    }
    let mut v = vec![0u8; size];
    v[0..2].copy_from_slice(&FCW_INIT.to_le_bytes());
    v[24..28].copy_from_slice(&MXCSR_INIT.to_le_bytes());
    v
}

/// What an expected final image starts from: the initial image's legacy
/// region and XSTATE_BV, MXCSR_MASK as the model has it, and the extended
/// components where the initial image holds them, in the standard format.
pub fn baseline_final(model: &CpuModel, case: &Case) -> Vec<u8> {
    let xcr0 = Xfeatures::from_bits_retain(case.control.xcr0);
    let std = layout::standard(model, xcr0);
    let mut img = vec![0u8; std.size as usize];
    let n = case.init.len().min(416);
    img[..n].copy_from_slice(&case.init[..n]);
    img[28..32].copy_from_slice(&model.mxcsr_mask.to_le_bytes());
    if case.init.len() >= 520 {
        // The capture is an XSAVE with RFBM = XCR0: it never writes the bits of
        // supervisor components a compacted initial image holds.
        let v = u64::from_le_bytes(case.init[512..520].try_into().unwrap()) & case.control.xcr0;
        img[512..520].copy_from_slice(&v.to_le_bytes());
    }
    let xcomp = if case.init.len() >= 528 {
        case.init_xcomp_bv()
    } else {
        0
    };
    let src = if xcomp >> 63 == 1 {
        layout::compacted(model, Xfeatures::from_bits_retain(xcomp & !(1 << 63)))
    } else {
        std.clone()
    };
    for s in &std.slots {
        if let Some(from) = src.slot(s.index) {
            let (a, b) = (from.offset as usize, s.offset as usize);
            if a + s.size as usize <= case.init.len() {
                img[b..b + s.size as usize].copy_from_slice(&case.init[a..a + s.size as usize]);
            }
        }
    }
    img
}

/// The supervisor state a case starts from: each supervisor component enabled
/// in IA32_XSS, ascending, concatenated, as the runner's initial restore left
/// it: at CPL 0 that restore of a compacted image is XRSTORS, which loads
/// component i from the image where XSTATE_BV bit i = 1 (and XCOMP_BV bit i = 1)
/// and initializes it otherwise (SDM1 §13.12); at CPL 3 it is XRSTOR, which
/// leaves supervisor state as it was: in its init configuration.
pub fn baseline_supervisor(model: &CpuModel, case: &Case) -> Vec<u8> {
    let mut v = Vec::new();
    let xcomp = if case.init.len() >= 528 {
        case.init_xcomp_bv()
    } else {
        0
    };
    let xstate_bv = case
        .init
        .get(512..520)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let restores = xcomp >> 63 == 1 && case.control.cpl == 0 && model.xsaves;
    let lay = layout::compacted(model, Xfeatures::from_bits_retain(xcomp & !(1 << 63)));
    for i in Xfeatures::from_bits_retain(case.control.xss).indices() {
        if let Some(c) = model.component(i).filter(|c| c.supervisor) {
            let mut b = vec![0u8; c.size as usize];
            let q = xsave_emu::component::COMPONENTS
                .get(i)
                .map_or(0, |c| c.init_qword0)
                .to_le_bytes();
            let n = b.len().min(8);
            b[..n].copy_from_slice(&q[..n]);
            if restores && xstate_bv >> i & 1 == 1 {
                if let Some(sl) = lay.slot(i) {
                    let (a, e) = (sl.offset as usize, (sl.offset + sl.size) as usize);
                    if let Some(src) = case.init.get(a..e) {
                        let k = b.len().min(src.len());
                        b[..k].copy_from_slice(&src[..k]);
                    }
                }
            }
            v.extend_from_slice(&b);
        }
    }
    v
}

fn gpr_index(name: &str) -> Option<usize> {
    GPR_NAMES.iter().position(|g| *g == name)
}

/// Parses hex digits (even count) into bytes.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A field value: `0x...` is a little-endian number of `len` bytes, bare hex
/// is `len` bytes in memory order.
fn parse_value(v: &str, len: usize) -> Option<Vec<u8>> {
    let v: String = v.split_whitespace().collect::<String>().replace('_', "");
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = h.trim_start_matches('0');
        if h.len() > 2 * len {
            return None;
        }
        let padded = format!("{:0>w$}", h, w = 2 * len);
        let mut b = parse_hex(&padded)?;
        b.reverse();
        return Some(b);
    }
    if v.chars().all(|c| c.is_ascii_digit()) && len <= 8 && v.len() < 20 {
        let n: u64 = v.parse().ok()?;
        if len < 8 && n >> (8 * len) != 0 {
            return None;
        }
        return Some(n.to_le_bytes()[..len].to_vec());
    }
    let b = parse_hex(&v)?;
    (b.len() == len).then_some(b)
}

/// A field value as a case file writes it: `0x` number up to 8 bytes, hex beyond.
pub fn fmt_value(b: &[u8]) -> String {
    if b.len() <= 8 {
        let mut q = [0u8; 8];
        q[..b.len()].copy_from_slice(b);
        format!("{:#x}", u64::from_le_bytes(q))
    } else {
        hex(b)
    }
}

/// `arena+0x40`, `code+0x3`, or a number.
pub fn parse_addr(v: &str) -> Option<u64> {
    let v = v.trim();
    for (name, base) in [("arena", ARENA_BASE), ("code", CODE_BASE)] {
        if let Some(r) = v.strip_prefix(name) {
            let r = r.trim();
            if r.is_empty() {
                return Some(base);
            }
            if let Some(o) = r.strip_prefix('+') {
                return Some(base.wrapping_add(parse_u64(o.trim())?));
            }
            if let Some(o) = r.strip_prefix('-') {
                return Some(base.wrapping_sub(parse_u64(o.trim())?));
            }
            return None;
        }
    }
    parse_u64(v)
}

/// Symbolic form of an address near the arena or the code.
pub fn fmt_addr(v: u64) -> String {
    for (name, base) in [("arena", ARENA_BASE), ("code", CODE_BASE)] {
        let span = (MAX_ARENA_PAGES as u64 + 1) * PAGE;
        if v >= base && v < base + span {
            return if v == base {
                name.to_string()
            } else {
                format!("{name}+{:#x}", v - base)
            };
        }
        if v < base && base - v <= 0x1000 {
            return format!("{name}-{:#x}", base - v);
        }
    }
    format!("{v:#x}")
}

/// `none`, `#GP(0x0) at 0`, `#PF(err=0x6, cr2=arena+0x1000) at 1`, `#NM at init`.
pub fn fmt_fault(f: &Option<FaultAt>) -> String {
    let Some(fa) = f else {
        return "none".into();
    };
    let at = match fa.insn {
        Some(k) => k.to_string(),
        None => "init".into(),
    };
    format!("{} at {at}", fmt_fault_kind(&fa.fault))
}

pub fn fmt_fault_kind(f: &Fault) -> String {
    match f {
        Fault::Pf { err, addr } => format!("#PF(err={err:#x}, cr2={})", fmt_addr(*addr)),
        Fault::Gp(e) => format!("#GP({e:#x})"),
        Fault::Ss => "#SS(0)".into(),
        Fault::Ac => "#AC(0)".into(),
        f => f.to_string(),
    }
}

pub fn parse_fault(v: &str) -> Option<Option<FaultAt>> {
    let v = v.trim();
    if v == "none" {
        return Some(None);
    }
    let (kind, at) = v.rsplit_once(" at ")?;
    let insn = match at.trim() {
        "init" => None,
        n => Some(n.parse().ok()?),
    };
    let kind = kind.trim();
    let fault = match kind {
        "#UD" => Fault::Ud,
        "#NM" => Fault::Nm,
        "#SS" | "#SS(0)" => Fault::Ss,
        "#AC" | "#AC(0)" => Fault::Ac,
        k if k.starts_with("#GP(") => Fault::Gp(parse_u64(k[4..].strip_suffix(')')?)? as u32),
        k if k.starts_with("#PF(") => {
            let inner = k[4..].strip_suffix(')')?;
            let (e, c) = inner.split_once(',')?;
            let e = e.trim().strip_prefix("err=")?;
            let c = c.trim().strip_prefix("cr2=")?;
            Fault::Pf {
                err: parse_u64(e)? as u32,
                addr: parse_addr(c)?,
            }
        }
        _ => return None,
    };
    Some(Some(FaultAt { fault, insn }))
}

/// The shortest run written as a fill `XX*` rather than hex.
pub const FILL_MIN: usize = 16;

/// One written run of `a` against `b`: bytes `start..end`, as a fill of one
/// byte or as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub end: usize,
    pub fill: Option<u8>,
}

impl Run {
    /// The value as a case file writes it.
    pub fn value(&self, a: &[u8]) -> String {
        match self.fill {
            Some(x) => format!("{x:02x}*"),
            None => hex(&a[self.start..self.end]),
        }
    }
}

/// `runs`, with every stretch of at least [`FILL_MIN`] equal bytes that
/// differs from `b` somewhere written as one fill.
pub fn fill_runs(a: &[u8], b: &[u8], lo: usize, hi: usize) -> Vec<Run> {
    let mut v = Vec::new();
    let mut i = lo;
    while i < hi {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < hi && a[j] == a[i] {
            j += 1;
        }
        // The stretch ends at its last byte that differs.
        while j > i && a[j - 1] == b[j - 1] {
            j -= 1;
        }
        if j - i >= FILL_MIN {
            v.push(Run {
                start: i,
                end: j,
                fill: Some(a[i]),
            });
            i = j;
            continue;
        }
        // Hex up to the next fill-long stretch.
        let mut k = i;
        let mut stop = hi;
        while k < hi {
            let mut e = k;
            while e < hi && a[e] == a[k] {
                e += 1;
            }
            if e - k >= FILL_MIN && k > i {
                stop = k;
                break;
            }
            k = e.max(k + 1);
        }
        for (s, e) in runs(a, b, i, stop) {
            v.push(Run {
                start: s,
                end: e,
                fill: None,
            });
        }
        i = stop;
    }
    v
}

/// Runs of differing bytes in `a` vs `b` within `range`, gaps below 4 merged,
/// each at most 64 bytes.
fn runs(a: &[u8], b: &[u8], lo: usize, hi: usize) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = Vec::new();
    let mut i = lo;
    while i < hi {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        let mut j = end;
        while j < hi && j - start < 64 {
            if a[j] != b[j] {
                end = j + 1;
            } else if j - end >= 3 {
                break;
            }
            j += 1;
        }
        v.push((start, end));
        i = end;
    }
    v
}

/// Writes `img` sparsely against `base`: catalog fields by name, ranged
/// fields and uncovered bytes by ranges.
fn write_image(out: &mut String, raw: &str, cat: &Catalog, img: &[u8], base: &[u8]) {
    let n = img.len().min(base.len());
    let mut covered = vec![false; n];
    let mut lines: Vec<(usize, String)> = Vec::new();
    // Runs of one byte over more than one field (or over unnamed bytes) as
    // fills, `init[576..2432] = aa*`; the lines below then write what differs
    // from the image with the fills applied. Every line writes the image's own
    // bytes, so their order does not matter when reading.
    // XSTATE_BV and XCOMP_BV (512..528) are always written by name: the
    // reader takes the image's format from the `xcomp_bv` line.
    let mut filled = base[..n].to_vec();
    for r in fill_runs(img, base, 0, n) {
        let Some(x) = r.fill else { continue };
        let parts = [(r.start, r.end.min(512)), (r.start.max(528), r.end)];
        for (a, b) in parts {
            let in_one_field = cat
                .fields
                .iter()
                .any(|f| f.offset <= a && b <= f.offset + f.len);
            if b < a + FILL_MIN || in_one_field || img[a..b] == base[a..b] {
                continue;
            }
            filled[a..b].fill(x);
            lines.push((a, format!("{raw}[{a}..{b}] = {x:02x}*")));
        }
    }
    let base = &filled[..];
    for f in &cat.fields {
        let Field { offset, len, .. } = *f;
        if offset + len > n {
            continue;
        }
        covered[offset..offset + len]
            .iter_mut()
            .for_each(|c| *c = true);
        if f.ranged {
            for r in fill_runs(img, base, offset, offset + len) {
                lines.push((
                    r.start,
                    format!(
                        "{}[{}..{}] = {}",
                        f.name,
                        r.start - offset,
                        r.end - offset,
                        r.value(img)
                    ),
                ));
            }
        } else if img[offset..offset + len] != base[offset..offset + len] {
            lines.push((
                offset,
                format!("{} = {}", f.name, fmt_value(&img[offset..offset + len])),
            ));
        }
    }
    let mut i = 0;
    while i < n {
        if covered[i] || img[i] == base[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        while end < n && end - start < 64 && !covered[end] && img[end] != base[end] {
            end += 1;
        }
        lines.push((
            start,
            format!("{raw}[{start}..{end}] = {}", hex(&img[start..end])),
        ));
        i = end;
    }
    lines.sort_by_key(|l| l.0);
    for (_, l) in lines {
        out.push_str(&l);
        out.push('\n');
    }
}

/// Disassembles `code` (at CODE_BASE): (bytes, text) per instruction.
pub fn disassemble(code: &[u8]) -> Vec<(Vec<u8>, String)> {
    let mut d = Decoder::with_ip(64, code, CODE_BASE, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut v = Vec::new();
    let mut pos = 0usize;
    while d.can_decode() {
        let ins = d.decode();
        let len = ins.len().max(1).min(code.len() - pos);
        let mut s = String::new();
        if ins.is_invalid() {
            s.push_str("(invalid)");
        } else {
            f.format(&ins, &mut s);
        }
        v.push((code[pos..pos + len].to_vec(), s));
        pos += len;
    }
    v
}

/// Writes a case file: the header comments, the model name, and the case
/// sparsely against the model's defaults.
pub fn write_case(comments: &[String], model_name: &str, model: &CpuModel, case: &Case) -> String {
    write_case_meta(comments, model_name, &Meta::default(), model, case)
}

/// [`write_case`] with `rules` and `target` lines after the model line.
pub fn write_case_meta(
    comments: &[String],
    model_name: &str,
    meta: &Meta,
    model: &CpuModel,
    case: &Case,
) -> String {
    let mut out = String::new();
    for c in comments {
        if c.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {c}");
        }
    }
    let _ = writeln!(out, "xsave-case {VERSION}\nmodel {model_name}");
    if !meta.rules.is_empty() {
        let _ = writeln!(out, "rules {}", meta.rules.join(", "));
    }
    for t in &meta.targets {
        let _ = writeln!(out, "target {t}");
    }
    // Control.
    let d = Control::user(model);
    let c = &case.control;
    let mut ctl = String::new();
    let mut num = |k: &str, a: u64, b: u64| {
        if a != b {
            let _ = writeln!(ctl, "{k} = {a:#x}");
        }
    };
    num("xcr0", c.xcr0, d.xcr0);
    num("xss", c.xss, d.xss);
    num("xfd", c.xfd, d.xfd);
    if c.cpl != d.cpl {
        let _ = writeln!(ctl, "cpl = {}", c.cpl);
    }
    for (k, a, b) in [
        ("cr0.ts", c.cr0_ts, d.cr0_ts),
        ("cr0.em", c.cr0_em, d.cr0_em),
        ("cr0.am", c.cr0_am, d.cr0_am),
        ("cr4.osxsave", c.cr4_osxsave, d.cr4_osxsave),
        ("cr4.osfxsr", c.cr4_osfxsr, d.cr4_osfxsr),
        ("eflags.ac", c.eflags_ac, d.eflags_ac),
        ("vmx_nonroot", c.vmx_nonroot, d.vmx_nonroot),
    ] {
        if a != b {
            let _ = writeln!(ctl, "{k} = {}", a as u8);
        }
    }
    if !ctl.is_empty() {
        let _ = write!(out, "\n[control]\n{ctl}");
    }
    // Init image.
    let xcomp = if case.init.len() >= 528 {
        case.init_xcomp_bv()
    } else {
        0
    };
    let compacted = xcomp >> 63 == 1;
    let mut base = default_image(model, c.xcr0, xcomp);
    let mut init = String::new();
    if base.len() != case.init.len() {
        let _ = writeln!(init, "size = {}", case.init.len());
        base.resize(case.init.len(), 0);
    }
    let cat = Catalog::new(model, if compacted { xcomp } else { c.xcr0 }, compacted);
    write_image(&mut init, "init", &cat, &case.init, &base);
    if !init.is_empty() {
        let _ = write!(out, "\n[init]\n{init}");
    }
    // Arena.
    let mut arena = String::new();
    let pages = case.memory.prot.len();
    if pages != 1 {
        let _ = writeln!(arena, "pages = {pages}");
    }
    for (k, p) in case.memory.prot.iter().enumerate() {
        match p {
            Prot::ReadWrite => {}
            Prot::Read => {
                let _ = writeln!(arena, "page {k} = r");
            }
            Prot::None => {
                let _ = writeln!(arena, "page {k} = none");
            }
        }
    }
    // The most common byte fills the arena when it is not zero.
    let mut count = [0usize; 256];
    case.memory
        .bytes
        .iter()
        .for_each(|&x| count[x as usize] += 1);
    let common = (0..256).max_by_key(|&x| (count[x], x == 0)).unwrap_or(0) as u8;
    if common != 0 {
        let _ = writeln!(arena, "fill = {common:02x}");
    }
    let base = vec![common; case.memory.bytes.len()];
    for r in fill_runs(&case.memory.bytes, &base, 0, base.len()) {
        match r.fill {
            Some(x) => {
                let _ = writeln!(arena, "{:#x}..{:#x} = {x:02x}*", r.start, r.end);
            }
            None => {
                let _ = writeln!(arena, "{:#x} = {}", r.start, r.value(&case.memory.bytes));
            }
        }
    }
    if !arena.is_empty() {
        let _ = write!(out, "\n[arena]\n{arena}");
    }
    // GPRs.
    if case.gprs.iter().any(|&g| g != 0) {
        out.push_str("\n[gprs]\n");
        for (k, &g) in case.gprs.iter().enumerate() {
            if g != 0 {
                let _ = writeln!(out, "{} = {}", GPR_NAMES[k], fmt_addr(g));
            }
        }
    }
    if !case.code.is_empty() {
        out.push_str("\n[code]\n");
        for (b, s) in disassemble(&case.code) {
            let bytes: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            let _ = writeln!(out, "{:<24} # {s}", bytes.join(" "));
        }
    }
    out
}

/// Writes an `[expect]` or `[record MODEL]` section for `outcome`.
pub fn write_outcome(title: &str, model: &CpuModel, case: &Case, o: &Outcome) -> String {
    let mut out = format!("\n[{title}]\n");
    let _ = writeln!(out, "fault = {}", fmt_fault(&o.fault));
    match o.xinuse {
        Some(x) => {
            let _ = writeln!(out, "xinuse = {x:#x}");
        }
        None => out.push_str("xinuse = none\n"),
    }
    for (k, (&a, &b)) in o.gprs.iter().zip(&case.gprs).enumerate() {
        if a != b {
            let _ = writeln!(out, "{} = {}", GPR_NAMES[k], fmt_addr(a));
        }
    }
    let base = baseline_final(model, case);
    let cat = Catalog::new(model, case.control.xcr0, false);
    let mut img = o.final_image.clone();
    let mut b = base.clone();
    let n = img.len().max(b.len());
    img.resize(n, 0);
    b.resize(n, 0);
    write_image(&mut out, "final", &cat, &img, &b);
    // Supervisor state by field name (`pl0_ssp = ...`), other bytes by ranges.
    let mut sb = baseline_supervisor(model, case);
    if sb.len() == o.supervisor.len() {
        for f in crate::fields::supervisor_fields(model, case.control.xss) {
            let r = f.offset..f.offset + f.len;
            if r.end <= sb.len() && o.supervisor[r.clone()] != sb[r.clone()] {
                let _ = writeln!(out, "{} = {}", f.name, fmt_value(&o.supervisor[r.clone()]));
                sb[r.clone()].copy_from_slice(&o.supervisor[r]);
            }
        }
        for (a, e) in runs(&o.supervisor, &sb, 0, sb.len()) {
            let _ = writeln!(out, "supervisor[{a}..{e}] = {}", hex(&o.supervisor[a..e]));
        }
    }
    for r in fill_runs(
        &o.memory,
        &case.memory.bytes,
        0,
        o.memory.len().min(case.memory.bytes.len()),
    ) {
        let _ = writeln!(
            out,
            "mem[{:#x}..{:#x}] = {}",
            r.start,
            r.end,
            r.value(&o.memory)
        );
    }
    out
}
