//! CPU models as data: what CPUID says about the XSAVE feature set, plus named
//! quirks measured on silicon. Built-in models are text files under `emu/models/`
//! (a raw CPUID dump plus a few lines the dump cannot say); [`CpuModel::from_cpuid`]
//! turns any dump, such as the host's, into a model.

use crate::component::{Xfeatures, COMPONENTS, MAX_COMPONENT};
use std::collections::BTreeMap;
use std::fmt;

/// A raw CPUID dump: (leaf, subleaf) -> [EAX, EBX, ECX, EDX].
pub type CpuidDump = BTreeMap<(u32, u32), [u32; 4]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// What CPUID.(0DH,i) says about component i (SDM1 §13.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComponentDesc {
    /// EAX: size in bytes.
    pub size: u32,
    /// EBX: offset in the standard format (0 for supervisor components).
    pub offset: u32,
    /// ECX[0]: supervisor component (IA32_XSS).
    pub supervisor: bool,
    /// ECX[1]: 64-byte aligned in the compacted format.
    pub align64: bool,
    /// ECX[2]: extended feature disable supported.
    pub xfd: bool,
}

/// Named behaviours of a silicon that the SDM leaves open, each seen on hardware.
/// A model file lists them by name (`quirk NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// `fip-canonical-57`: XSAVE64/FXSAVE64 write FIP sign-extended from bit 56 (Intel with LA57).
    pub fip_canonical_57: bool,
    /// `fsw-es-recompute`: XRSTOR/FXRSTOR set FSW.ES and FSW.B to
    /// ((FSW[5:0] AND NOT FCW[5:0]) != 0) and keep the other FSW bits (Intel).
    pub fsw_es_recompute: bool,
    /// `x87-pointers-uncontrolled`: FIP/FDP/FOP read back with values the case does not set (AMD).
    pub x87_pointers_uncontrolled: bool,
    /// `xinuse-noise`: XINUSE bits of components in init configuration may read 1 or 0
    /// between runs of the same case (AMD, component 2).
    pub xinuse_noise: bool,
    /// `pf-last-byte`: before any access, an XSAVE-family instruction, FXSAVE or
    /// FXRSTOR probes the last byte of the region it operates on (saves: with a
    /// write); a #PF there is reported with CR2 = that byte and nothing is written.
    /// The region ends with the highest component of RFBM, at least at byte 575
    /// (the header); 511 for FXSAVE/FXRSTOR (Intel recording, 41 #PF cases).
    /// XFD-armed components count in full for XSAVE (it writes them) and XRSTOR
    /// (both forms, even with XSTATE_BV[i] = 0), only up to their start for
    /// XSAVEOPT and XSAVEC. XRSTOR probes right after reading the header, before
    /// the header #GP checks and XFD's #NM; the compacted form first checks
    /// XCOMP_BV against XCR0 (corpus/silicon/xrstor-*-probe-*.case).
    pub pf_last_byte: bool,
    /// `linux-signal-fpsse`: not silicon but the OS under a ring-3 runner: a fault
    /// is delivered as a Linux signal and sigreturn restores the FPU state from a
    /// signal frame whose XSTATE_BV has bits 1:0 forced to 1
    /// (`XFEATURE_MASK_FPSSE`), so after a fault at CPL 3 XINUSE[1:0] read 1 (Intel
    /// recording: every faulting case).
    pub linux_signal_fpsse: bool,
    /// `xrstor-compacted-mxcsr-late`: compacted XRSTOR (and XRSTORS) raise the
    /// MXCSR reserved-bit #GP(0) only after every component to be initialized has
    /// been (x87, AVX, opmask, ZMM, ... with XINUSE[i] := 0) and x87 and XMM0..15
    /// have been loaded; MXCSR and the components 2 and up to be loaded keep their
    /// old values. The standard form checks MXCSR before changing anything (Intel
    /// recording: record 680 against 7 standard-form cases, record 1430 among them
    /// with AVX to be initialized and left alone; `xsdiff run` on the Intel host:
    /// AVX, opmask, ZMM_Hi256, Hi16_ZMM initialized before the #GP).
    pub xrstor_compacted_mxcsr_late: bool,
    /// `xrstor-header-xcomp-first`: XRSTOR(S)'s first header access is XCOMP_BV
    /// (bytes 520..527): with the header's page unreadable, #PF reports CR2 =
    /// base + 520 (Intel, native agreement case
    /// `xrstor_header_page_absent_pf_at_xcomp_bv`). Without it, base + 512.
    pub xrstor_header_xcomp_first: bool,
    /// `ac-width-4`: with alignment checking on (CR0.AM, CPL 3, EFLAGS.AC), a
    /// misaligned XSAVE-family, FXSAVE or FXRSTOR area raises #AC only when address
    /// bits 1:0 are not both zero, #GP(0) otherwise (SDM2 XSAVE #AC note: the width
    /// of the check may vary). Intel host: +1, +2 give #AC, +4, +8, +16, +32 #GP(0)
    /// (native cases `*_misaligned_*_with_alignment_check`).
    pub ac_width_4: bool,
    /// `xrstor-compacted-xstate-bv-63-gp`: compacted XRSTOR raises #GP(0) when
    /// XSTATE_BV[63] = 1, although XCOMP_BV[63] = 1 makes it a subset of XCOMP_BV
    /// (SDM2 XRSTOR's list; Bochs accepts it). Intel host: `xsdiff record` of
    /// XSTATE_BV = XCOMP_BV = 8000000000000001H gives #GP(0), 1H does not
    /// (emu/tests/restore_rules.rs). Seen for XRSTOR; XRSTORS not measured.
    pub xrstor_compacted_xstate_bv_63_gp: bool,
    /// `xinuse-by-contents`: XRSTOR and FXRSTOR set XINUSE[i] for a component
    /// they load from memory only when the loaded contents differ from its init
    /// configuration (SSE: XMM0..15 non-zero; MXCSR does not count). SDM1 §13.6
    /// allows XINUSE[i] = 0 for a component in its init configuration. AMD Zen 5
    /// host: XRSTOR of zero opmask/ZMM state leaves XINUSE[5..7] = 0, FXRSTOR of
    /// a zero area leaves XSTATE_BV[1] = 0 in the next XSAVE
    /// (corpus/silicon/fxrstor-fcw-zero.case, generated/gen-2026-00061.case).
    pub xinuse_by_contents: bool,
    /// `x87-pointers-need-es`: XRSTOR and FXRSTOR load FIP, FDP, FOP (and FCS,
    /// FDS) only when the loaded x87 state has an unmasked exception pending
    /// ((FSW[5:0] AND NOT FCW[5:0]) != 0); otherwise they become 0. AMD Zen 5
    /// host: FDP = E723C5FD12AFCD50H loaded with FSW = 0 reads back 0 and leaves
    /// x87 in its init configuration (XINUSE[0] = 0).
    pub x87_pointers_need_es: bool,
    /// `pf-first-byte`: with `pf-last-byte`, the region's first byte is probed
    /// before its last one (AMD Zen 5 host: XSAVEOPT64 at an absent page 0 faults
    /// at base + 0, an XSAVE64 whose header crosses onto an absent page at the
    /// header's last byte).
    pub pf_first_byte: bool,
    /// `xrstor-header-checks-first`: XRSTOR raises its header #GP(0) before it
    /// probes the region's last byte (AMD Zen 5 host: compacted XRSTOR64 with
    /// XSTATE_BV = 2^63 | 1 and the region's end on an absent page is #GP(0);
    /// corpus/silicon/xrstor-compacted-probe-before-bit63-gp.case).
    pub xrstor_header_checks_first: bool,
    /// `fdp-canonical-57`: XSAVE64/FXSAVE64 write FDP sign-extended from bit 56
    /// (AMD Zen 5 host: FDP = 0123456789ABCDEFH saved as FF23456789ABCDEFH, FIP
    /// likewise with `fip-canonical-57`).
    pub fdp_canonical_57: bool,
    /// `sse-write-avx-under-zmm-hi256`: see emu/src/helpers.rs `sse_write`.
    pub sse_write_avx_under_zmm_hi256: bool,
    /// `misaligned-gp-not-ac`: a misaligned XSAVE-family, FXSAVE or FXRSTOR area
    /// is #GP(0) even with alignment checking on (SDM2: "#AC may occur instead of
    /// #GP"; AMD Zen 5 host: +1, +2, +4, +6 and +8 give #GP(0), native cases
    /// `*_misaligned_*_with_alignment_check`).
    pub misaligned_gp_not_ac: bool,
    /// `fxrstor-ends-tracking`: FXRSTOR ends the modified optimization until the
    /// next XRSTOR (as if XRSTOR_INFO no longer matched): AMD Zen 5 host, XRSTOR64
    /// [a] of Hi16_ZMM, a store into its saved ZMM16, FXRSTOR64 elsewhere, then
    /// XSAVEOPT64 [a] writes ZMM16 back; with XSAVE64, XSAVEC64 or FXSAVE64 in place
    /// of the FXRSTOR it does not (corpus/silicon/xsaveopt-after-fxrstor-not-optimized.case).
    pub fxrstor_ends_tracking: bool,
    /// `xsave-alignment-first`: for a base both non-canonical and misaligned, the
    /// XSAVE family raises the alignment fault first (AMD Zen 5 host: XSAVE and
    /// XRSTOR at [RBP] with RBP = F5FF06F0FF62H are #GP(0), aligned #SS(0); FXSAVE
    /// there is #SS(0); diff_native finding).
    pub xsave_alignment_first: bool,
    /// `xinuse-from-contents`: XINUSE[i] is computed from the registers whenever
    /// it is read: 1 exactly when component i is not in its init configuration,
    /// x87 also when FOP != 0, SSE also when MXCSR != 1F80H; an XRSTOR that loads
    /// init values from memory leaves XINUSE[i] = 0 (Bochs: cpu/xsave.cc
    /// `get_xinuse_vector` over the `*_state_xinuse` functions, 2.7, 3.0 and main).
    pub xinuse_from_contents: bool,
}

const QUIRK_NAMES: [&str; 20] = [
    "fip-canonical-57",
    "fsw-es-recompute",
    "x87-pointers-uncontrolled",
    "xinuse-noise",
    "pf-last-byte",
    "linux-signal-fpsse",
    "xrstor-compacted-mxcsr-late",
    "xrstor-header-xcomp-first",
    "ac-width-4",
    "xrstor-compacted-xstate-bv-63-gp",
    "xinuse-by-contents",
    "x87-pointers-need-es",
    "pf-first-byte",
    "xrstor-header-checks-first",
    "fdp-canonical-57",
    "sse-write-avx-under-zmm-hi256",
    "misaligned-gp-not-ac",
    "fxrstor-ends-tracking",
    "xsave-alignment-first",
    "xinuse-from-contents",
];

impl Quirks {
    /// Turns on the quirk called `name`; false if there is none by that name.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "fip-canonical-57" => self.fip_canonical_57 = true,
            "fsw-es-recompute" => self.fsw_es_recompute = true,
            "x87-pointers-uncontrolled" => self.x87_pointers_uncontrolled = true,
            "xinuse-noise" => self.xinuse_noise = true,
            "pf-last-byte" => self.pf_last_byte = true,
            "linux-signal-fpsse" => self.linux_signal_fpsse = true,
            "xrstor-compacted-mxcsr-late" => self.xrstor_compacted_mxcsr_late = true,
            "xrstor-header-xcomp-first" => self.xrstor_header_xcomp_first = true,
            "ac-width-4" => self.ac_width_4 = true,
            "xrstor-compacted-xstate-bv-63-gp" => self.xrstor_compacted_xstate_bv_63_gp = true,
            "xinuse-by-contents" => self.xinuse_by_contents = true,
            "x87-pointers-need-es" => self.x87_pointers_need_es = true,
            "pf-first-byte" => self.pf_first_byte = true,
            "xrstor-header-checks-first" => self.xrstor_header_checks_first = true,
            "fdp-canonical-57" => self.fdp_canonical_57 = true,
            "sse-write-avx-under-zmm-hi256" => self.sse_write_avx_under_zmm_hi256 = true,
            "misaligned-gp-not-ac" => self.misaligned_gp_not_ac = true,
            "fxrstor-ends-tracking" => self.fxrstor_ends_tracking = true,
            "xsave-alignment-first" => self.xsave_alignment_first = true,
            "xinuse-from-contents" => self.xinuse_from_contents = true,
            _ => return false,
        }
        true
    }
    pub fn names(&self) -> Vec<&'static str> {
        let flags = [
            self.fip_canonical_57,
            self.fsw_es_recompute,
            self.x87_pointers_uncontrolled,
            self.xinuse_noise,
            self.pf_last_byte,
            self.linux_signal_fpsse,
            self.xrstor_compacted_mxcsr_late,
            self.xrstor_header_xcomp_first,
            self.ac_width_4,
            self.xrstor_compacted_xstate_bv_63_gp,
            self.xinuse_by_contents,
            self.x87_pointers_need_es,
            self.pf_first_byte,
            self.xrstor_header_checks_first,
            self.fdp_canonical_57,
            self.sse_write_avx_under_zmm_hi256,
            self.misaligned_gp_not_ac,
            self.fxrstor_ends_tracking,
            self.xsave_alignment_first,
            self.xinuse_from_contents,
        ];
        QUIRK_NAMES
            .iter()
            .zip(flags)
            .filter(|(_, f)| *f)
            .map(|(n, _)| *n)
            .collect()
    }
}

impl CpuModel {
    /// iced-x86 decoder options for this CPU's instruction decoder: AMD's
    /// (DecoderOptions::AMD: 66H on a near branch makes it rel16, UD0 has no
    /// ModRM, ...) for an AMD model. Zen 5 host: 10 prefixes + 66 0F 8F rel16
    /// (14 bytes) runs, 12 prefixes + 0F FF 60 00 is #UD, where Intel's lengths
    /// (16 bytes) give #GP(0) (diff_native findings).
    pub fn decoder_options(&self) -> u32 {
        match self.vendor {
            Vendor::Amd => iced_x86::DecoderOptions::AMD,
            _ => iced_x86::DecoderOptions::NONE,
        }
    }
}

/// Everything the emulator needs to know about one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    pub name: String,
    pub description: String,
    pub vendor: Vendor,
    /// CPUID.01H:ECX[26].
    pub xsave: bool,
    /// CPUID.01H:EDX[24].
    pub fxsr: bool,
    /// CPUID.(0DH,1):EAX bits 0..4.
    pub xsaveopt: bool,
    pub xsavec: bool,
    pub xgetbv1: bool,
    pub xsaves: bool,
    pub xfd: bool,
    /// CPUID.(0DH,0):EDX:EAX: bits settable in XCR0.
    pub xcr0_supported: u64,
    /// CPUID.(0DH,1):EDX:ECX: bits settable in IA32_XSS.
    pub xss_supported: u64,
    /// CPUID.(0DH,0):ECX: standard-format size for all supported user components.
    pub std_size_max: u32,
    /// CPUID.(0DH,i) for i = 2..=19 (None where the component is not supported).
    pub components: [Option<ComponentDesc>; MAX_COMPONENT + 1],
    /// CPUID.(07H,0):EBX[13]: FCS and FDS are saved as 0000H.
    pub fcs_fds_deprecated: bool,
    /// CPUID.(07H,0):EBX[6]: FDP is updated only on x87 exceptions.
    pub fdp_excptn_only: bool,
    /// CPUID.80000008H:EBX[2] (AMD): FXSAVE/XSAVE always save the x87 error pointers.
    pub xsaveerptr: bool,
    /// CPUID.80000001H:ECX[6] (AMD): SSE4a (EXTRQ, INSERTQ, MOVNTSS, MOVNTSD); it
    /// decides how the length decoder sizes 66H/F2H 0F 78H and 0F 79H.
    pub sse4a: bool,
    /// CPUID.(07H,0):ECX[16]: 57-bit linear addresses.
    pub la57: bool,
    /// MXCSR_MASK as FXSAVE writes it (not in CPUID; a model-file line, or measured).
    pub mxcsr_mask: u32,
    /// The control state the OS runs this CPU with (XCR0, IA32_XSS, IA32_XFD).
    pub os_xcr0: u64,
    pub os_xss: u64,
    pub os_xfd: u64,
    /// CR4.LA57 as the OS runs it (5-level paging): linear addresses are canonical
    /// to 57 bits, else to 48. Model-file line `paging 4|5`; defaults to `la57`.
    /// Linux on the Intel host runs 4-level paging although CPUID says LA57 (a
    /// 5-level-only mapping cannot be made; native case
    /// `mov_from_address_canonical_only_with_la57`).
    pub os_la57: bool,
    pub quirks: Quirks,
}

/// A model-file or CPUID-dump error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}
impl std::error::Error for ModelError {}

fn leaf(d: &CpuidDump, l: u32, s: u32) -> [u32; 4] {
    d.get(&(l, s)).copied().unwrap_or([0; 4])
}

impl CpuModel {
    /// Builds a model from a raw CPUID dump. Leaves used: 0 (vendor), 1, (7,0),
    /// (0DH, 0..=19), 80000001H and 80000008H. The OS control state defaults to everything
    /// the CPU supports; MXCSR_MASK defaults to 0000FFFFH.
    pub fn from_cpuid(name: &str, dump: &CpuidDump) -> CpuModel {
        let l0 = leaf(dump, 0, 0);
        let mut vs = Vec::new();
        for r in [l0[1], l0[3], l0[2]] {
            vs.extend_from_slice(&r.to_le_bytes());
        }
        let vendor = match &vs[..] {
            b"GenuineIntel" => Vendor::Intel,
            b"AuthenticAMD" => Vendor::Amd,
            _ => Vendor::Other,
        };
        let l1 = leaf(dump, 1, 0);
        let l7 = leaf(dump, 7, 0);
        let d0 = leaf(dump, 0xd, 0);
        let d1 = leaf(dump, 0xd, 1);
        let e1 = leaf(dump, 0x8000_0001, 0);
        let e8 = leaf(dump, 0x8000_0008, 0);
        let xcr0_supported = (d0[0] as u64) | ((d0[3] as u64) << 32);
        let xss_supported = (d1[2] as u64) | ((d1[3] as u64) << 32);
        let mut components = [None; MAX_COMPONENT + 1];
        for (i, slot) in components.iter_mut().enumerate().skip(2) {
            let r = leaf(dump, 0xd, i as u32);
            let supported = (xcr0_supported | xss_supported) & (1 << i) != 0;
            if supported && r[0] != 0 {
                *slot = Some(ComponentDesc {
                    size: r[0],
                    offset: r[1],
                    supervisor: r[2] & 1 != 0,
                    align64: r[2] & 2 != 0,
                    xfd: r[2] & 4 != 0,
                });
            }
        }
        CpuModel {
            name: name.to_string(),
            description: String::new(),
            vendor,
            xsave: l1[2] & (1 << 26) != 0,
            fxsr: l1[3] & (1 << 24) != 0,
            xsaveopt: d1[0] & 1 != 0,
            xsavec: d1[0] & 2 != 0,
            xgetbv1: d1[0] & 4 != 0,
            xsaves: d1[0] & 8 != 0,
            xfd: d1[0] & 16 != 0,
            xcr0_supported,
            xss_supported,
            std_size_max: d0[2],
            components,
            fcs_fds_deprecated: l7[1] & (1 << 13) != 0,
            fdp_excptn_only: l7[1] & (1 << 6) != 0,
            xsaveerptr: e8[1] & (1 << 2) != 0,
            sse4a: e1[2] & (1 << 6) != 0,
            la57: l7[2] & (1 << 16) != 0,
            mxcsr_mask: 0x0000_FFFF,
            os_xcr0: xcr0_supported,
            os_xss: xss_supported,
            os_xfd: 0,
            os_la57: l7[2] & (1 << 16) != 0,
            quirks: Quirks::default(),
        }
    }

    /// Parses a model file: `#` comments; `name`, `description`, `mxcsr_mask`, `paging`, `xcr0`,
    /// `xss`, `xfd` (the OS control state), `quirk NAME`, and CPUID lines
    /// `cpuid LEAF SUBLEAF eax=.. ebx=.. ecx=.. edx=..`.
    pub fn parse(text: &str) -> Result<CpuModel, ModelError> {
        let mut dump = CpuidDump::new();
        let mut name = None;
        let mut description = String::new();
        let mut extra: Vec<(usize, String, String)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let err = |m: String| ModelError {
                line: line_no,
                message: m,
            };
            match key {
                "name" => name = Some(rest.to_string()),
                "description" => description = rest.to_string(),
                "cpuid" => {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    if f.len() != 6 {
                        return Err(err(format!(
                            "expected `cpuid LEAF SUBLEAF eax=.. ebx=.. ecx=.. edx=..`, found `{line}`"
                        )));
                    }
                    let l = parse_u64(f[0]).ok_or_else(|| err(format!("bad leaf `{}`", f[0])))?;
                    let s =
                        parse_u64(f[1]).ok_or_else(|| err(format!("bad subleaf `{}`", f[1])))?;
                    let mut regs = [0u32; 4];
                    for (k, (want, item)) in
                        ["eax", "ebx", "ecx", "edx"].iter().zip(&f[2..]).enumerate()
                    {
                        let (r, v) = item
                            .split_once('=')
                            .ok_or_else(|| err(format!("expected {want}=VALUE, found `{item}`")))?;
                        if r != *want {
                            return Err(err(format!("expected register {want}, found `{r}`")));
                        }
                        regs[k] = parse_u64(v)
                            .ok_or_else(|| err(format!("bad value `{v}` for {want}")))?
                            as u32;
                    }
                    dump.insert((l as u32, s as u32), regs);
                }
                "mxcsr_mask" | "xcr0" | "xss" | "xfd" | "quirk" | "paging" => {
                    extra.push((line_no, key.to_string(), rest.to_string()))
                }
                _ => return Err(err(format!("unknown key `{key}`"))),
            }
        }
        let name = name.ok_or(ModelError {
            line: 0,
            message: "missing `name` line".into(),
        })?;
        let mut m = CpuModel::from_cpuid(&name, &dump);
        m.description = description;
        for (line, key, v) in extra {
            let err = |message: String| ModelError { line, message };
            if key == "quirk" {
                if !m.quirks.set(&v) {
                    return Err(err(format!(
                        "unknown quirk `{v}` (known: {})",
                        QUIRK_NAMES.join(", ")
                    )));
                }
                continue;
            }
            let x = parse_u64(&v).ok_or_else(|| err(format!("bad number `{v}` for {key}")))?;
            match key.as_str() {
                "mxcsr_mask" => m.mxcsr_mask = x as u32,
                "xcr0" => m.os_xcr0 = x,
                "xss" => m.os_xss = x,
                "paging" => {
                    m.os_la57 = match x {
                        4 => false,
                        5 => true,
                        _ => return Err(err(format!("paging {x}: expected 4 or 5 (levels)"))),
                    }
                }
                _ => m.os_xfd = x,
            }
        }
        Ok(m)
    }

    /// The CPUID facts of `self` that differ from `other` (name and description
    /// excluded), one line each; empty when the two describe the same CPU.
    pub fn differences(&self, other: &CpuModel) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{what}: {a} vs {b}"));
            }
        };
        cmp(
            "vendor",
            format!("{:?}", self.vendor),
            format!("{:?}", other.vendor),
        );
        let feats = |m: &CpuModel| {
            format!(
                "xsave={} fxsr={} xsaveopt={} xsavec={} xgetbv1={} xsaves={} xfd={}",
                m.xsave as u8,
                m.fxsr as u8,
                m.xsaveopt as u8,
                m.xsavec as u8,
                m.xgetbv1 as u8,
                m.xsaves as u8,
                m.xfd as u8
            )
        };
        cmp("features", feats(self), feats(other));
        cmp(
            "xcr0_supported",
            format!("{:#x}", self.xcr0_supported),
            format!("{:#x}", other.xcr0_supported),
        );
        cmp(
            "xss_supported",
            format!("{:#x}", self.xss_supported),
            format!("{:#x}", other.xss_supported),
        );
        cmp(
            "std_size_max",
            self.std_size_max.to_string(),
            other.std_size_max.to_string(),
        );
        for (i, info) in COMPONENTS.iter().enumerate().skip(2) {
            cmp(
                &format!("component {i} ({})", info.name),
                format!("{:?}", self.components[i]),
                format!("{:?}", other.components[i]),
            );
        }
        cmp(
            "fcs_fds_deprecated",
            self.fcs_fds_deprecated.to_string(),
            other.fcs_fds_deprecated.to_string(),
        );
        cmp(
            "fdp_excptn_only",
            self.fdp_excptn_only.to_string(),
            other.fdp_excptn_only.to_string(),
        );
        cmp(
            "xsaveerptr",
            self.xsaveerptr.to_string(),
            other.xsaveerptr.to_string(),
        );
        cmp("sse4a", self.sse4a.to_string(), other.sse4a.to_string());
        cmp("la57", self.la57.to_string(), other.la57.to_string());
        cmp(
            "mxcsr_mask",
            format!("{:#x}", self.mxcsr_mask),
            format!("{:#x}", other.mxcsr_mask),
        );
        cmp(
            "os xcr0",
            format!("{:#x}", self.os_xcr0),
            format!("{:#x}", other.os_xcr0),
        );
        cmp(
            "os xss",
            format!("{:#x}", self.os_xss),
            format!("{:#x}", other.os_xss),
        );
        cmp(
            "os paging (CR4.LA57)",
            self.os_la57.to_string(),
            other.os_la57.to_string(),
        );
        out
    }

    pub fn component(&self, i: usize) -> Option<&ComponentDesc> {
        self.components.get(i).and_then(|c| c.as_ref())
    }

    /// All components this CPU can enable, in XCR0 or IA32_XSS.
    pub fn supported(&self) -> Xfeatures {
        Xfeatures::from_bits_retain(self.xcr0_supported | self.xss_supported)
    }

    /// Every built-in model.
    pub fn builtin_all() -> Vec<CpuModel> {
        BUILTIN
            .iter()
            .map(|(n, t)| CpuModel::parse(t).unwrap_or_else(|e| panic!("built-in model {n}: {e}")))
            .collect()
    }

    /// A built-in model by name.
    pub fn builtin(name: &str) -> Option<CpuModel> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| CpuModel::parse(t).unwrap_or_else(|e| panic!("built-in model {n}: {e}")))
    }

    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }
}

/// Built-in model files (name, text), embedded from `emu/models/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("zen5", include_str!("../models/zen5.cpu")),
    ("xeon-amx-vm", include_str!("../models/xeon-amx-vm.cpu")),
    (
        "sapphire-rapids",
        include_str!("../models/sapphire-rapids.cpu"),
    ),
    ("qemu-max-7.2", include_str!("../models/qemu-max-7.2.cpu")),
    ("qemu-max-10.0", include_str!("../models/qemu-max-10.0.cpu")),
    ("valgrind-3.19", include_str!("../models/valgrind-3.19.cpu")),
    (
        "unicorn-haswell",
        include_str!("../models/unicorn-haswell.cpu"),
    ),
    (
        "unicorn-skylake-server",
        include_str!("../models/unicorn-skylake-server.cpu"),
    ),
    (
        "bochs-2.7-tigerlake",
        include_str!("../models/bochs-2.7-tigerlake.cpu"),
    ),
    (
        "bochs-3.0-tigerlake",
        include_str!("../models/bochs-3.0-tigerlake.cpu"),
    ),
    (
        "bochs-3.0-sapphire_rapids",
        include_str!("../models/bochs-3.0-sapphire_rapids.cpu"),
    ),
    (
        "bochs-head-tigerlake",
        include_str!("../models/bochs-head-tigerlake.cpu"),
    ),
    (
        "bochs-head-sapphire_rapids",
        include_str!("../models/bochs-head-sapphire_rapids.cpu"),
    ),
];

/// Parses `0x1f`, `31` or `0b11`.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(b) = s.strip_prefix("0b") {
        u64::from_str_radix(b, 2).ok()
    } else {
        s.parse().ok()
    }
}
