//! A batch: cases encoded into the image's payload (descriptors, initial
//! images, code, arena pages), the disk image a BIOS boots, and the records
//! that come back, turned into [`Outcome`]s with the emulator's semantics.

use super::image::{Image, TRAILER};
use super::layout::*;
use crate::Refusal;
use iced_x86::DecoderOptions;
use xsave_emu::case::{ARENA_BASE, CODE_BASE, MAX_CODE};
use xsave_emu::component::COMPONENTS;
use xsave_emu::memory::{Prot, PAGE};
use xsave_emu::model::{CpuModel, CpuidDump};
use xsave_emu::{layout, Case, Fault, FaultAt, Outcome, Xfeatures};

/// Why the image cannot run a case at all (whatever the host).
pub fn refuse(case: &Case) -> Option<Refusal> {
    let c = &case.control;
    let r = if c.cpl != 0 && c.cpl != 3 {
        "needs CPL 1 or 2"
    } else if c.vmx_nonroot {
        "needs VMX non-root operation"
    } else if c.cr0_em {
        "needs CR0.EM = 1"
    } else if !c.cr4_osfxsr {
        "needs CR4.OSFXSR = 0"
    } else if case.init.len() < 576 || case.init.len() > INIT_PAGES * PAGE as usize {
        "initial image outside 576 bytes..16 KiB"
    } else if case.memory.base != ARENA_BASE || case.memory.prot.len() > ARENA_PAGES {
        "arena not at ARENA_BASE or larger than 16 pages"
    } else if case.code.len() > MAX_CODE {
        "code longer than 256 bytes"
    } else {
        return None;
    };
    Some(Refusal::new(r))
}

/// Bytes one case takes in the payload at most, as [`load`] lays it out: its
/// table entry, descriptor, up to 63 bytes to align the initial image to 64,
/// the image, the code and up to 7 bytes to align to 8, its non-zero pages.
/// (The alignment padding was left out: SPR batches of 22 cases overflowed.)
fn case_bytes(case: &Case) -> u64 {
    let pages = case.memory.bytes.chunks(PAGE as usize);
    let nonzero = pages.filter(|p| p.iter().any(|&b| b != 0)).count() as u64;
    8 + 8 * DESC_QWORDS as u64
        + 63
        + case.init.len() as u64
        + (case.code.len() + TRAILER.len()) as u64
        + 7
        + nonzero * PAGE
}

/// Splits `cases` (indexes) into batches that each fit in one boot.
pub fn pack(cases: &[&Case], max_per_boot: usize) -> Vec<Vec<usize>> {
    let cap = LOAD_END - PAYLOAD - 64;
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (k, c) in cases.iter().enumerate() {
        let b = case_bytes(c);
        match out.last_mut() {
            Some(cur) if used + b <= cap && cur.len() < max_per_boot => {
                cur.push(k);
                used += b;
            }
            _ => {
                out.push(vec![k]);
                used = b;
            }
        }
    }
    out
}

/// The loaded image for a batch: physical LOAD.. with the payload filled in.
pub struct Loaded {
    pub mem: Vec<u8>,
    pub boot_sector: [u8; 512],
}

impl Loaded {
    /// Sets the kernel variable at `var(off)`.
    pub fn set_var(&mut self, off: u64, v: u64) {
        let o = (var(off) - LOAD) as usize;
        self.mem[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// A raw hard-disk image (Bochs wants whole cylinders of 16 heads x 63 sectors).
    pub fn disk(&self) -> Vec<u8> {
        let mut d = self.boot_sector.to_vec();
        d.extend_from_slice(&self.mem);
        let cyl = 16 * 63 * 512;
        d.resize(d.len().next_multiple_of(cyl), 0);
        d
    }
    pub fn cylinders(&self) -> usize {
        self.disk().len() / (16 * 63 * 512)
    }
}

/// Encodes `cases` behind the image. `mode`: 0 hex through port 0xE9, 1 doorbell.
pub fn load(img: &Image, cases: &[&Case], mode: u64, no_xfam: bool) -> Result<Loaded, String> {
    let mut mem = img.low.clone();
    let set = |mem: &mut Vec<u8>, phys: u64, b: &[u8]| {
        let o = (phys - LOAD) as usize;
        if mem.len() < o + b.len() {
            mem.resize(o + b.len(), 0);
        }
        mem[o..o + b.len()].copy_from_slice(b);
    };
    let q = |v: u64| v.to_le_bytes();
    set(&mut mem, var(V_MAGIC), b"XSR0CASE");
    set(&mut mem, var(V_NCASES), &q(cases.len() as u64));
    set(&mut mem, var(V_MODE), &q(mode));
    set(&mut mem, var(V_NO_XFAM), &q(no_xfam as u64));
    set(&mut mem, var(V_CASE_TABLE), &q(PAYLOAD));
    let mut at = PAYLOAD + 8 * cases.len() as u64;
    for (k, case) in cases.iter().enumerate() {
        if let Some(r) = refuse(case) {
            return Err(format!("case {k} cannot be encoded: {r}"));
        }
        let desc = at;
        at += 8 * DESC_QWORDS as u64;
        set(&mut mem, PAYLOAD + 8 * k as u64, &q(desc));
        let mut d = [0u64; DESC_QWORDS];
        let c = &case.control;
        d[D_XCR0] = c.xcr0;
        d[D_XSS] = c.xss;
        d[D_CPL] = c.cpl as u64;
        d[D_XFD] = c.xfd;
        d[D_FLAGS] = (c.cr0_ts as u64 * F_CR0_TS)
            | (c.cr0_am as u64 * F_CR0_AM)
            | (c.eflags_ac as u64 * F_EFLAGS_AC)
            | (c.cr4_osxsave as u64 * F_CR4_OSXSAVE);
        at = at.next_multiple_of(64);
        d[D_INIT_LEN] = case.init.len() as u64;
        d[D_INIT_PTR] = at;
        set(&mut mem, at, &case.init);
        at += case.init.len() as u64;
        let mut code = case.code.clone();
        code.extend_from_slice(&TRAILER);
        d[D_CODE_LEN] = code.len() as u64;
        d[D_CODE_PTR] = at;
        set(&mut mem, at, &code);
        at = (at + code.len() as u64).next_multiple_of(8);
        d[D_ARENA_PAGES] = case.memory.prot.len() as u64;
        for (p, prot) in case.memory.prot.iter().enumerate() {
            let bytes = &case.memory.bytes[p * PAGE as usize..(p + 1) * PAGE as usize];
            if bytes.iter().any(|&b| b != 0) {
                d[D_ARENA_SRC + p] = at;
                set(&mut mem, at, bytes);
                at += PAGE;
            }
            let phys = ARENA_PHYS + p as u64 * PAGE;
            d[D_ARENA_PTE + p] = match prot {
                Prot::None => 0,
                Prot::Read => phys | PTE_P | PTE_US,
                Prot::ReadWrite => phys | PTE_P | PTE_RW | PTE_US,
            };
        }
        for p in 0..case.init.len().div_ceil(PAGE as usize) {
            d[D_INIT_PTE + p] = (INIT_PHYS + p as u64 * PAGE) | PTE_P | PTE_RW | PTE_US;
        }
        d[D_GPRS..D_GPRS + 16].copy_from_slice(&case.gprs);
        let bytes: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
        set(&mut mem, desc, &bytes);
        if at > LOAD_END {
            return Err(format!(
                "batch of {} cases does not fit below {LOAD_END:#x}",
                cases.len()
            ));
        }
    }
    // Whole chunks of 64 sectors: the boot sector reads the last one in full,
    // and a read past the disk's end fails (Bochs: "logical address out of
    // bounds", the boot stopped).
    mem.resize((mem.len() as u64).next_multiple_of(64 * 512) as usize, 0);
    let chunks = (mem.len() as u64 / (64 * 512)) as u16;
    Ok(Loaded {
        mem,
        boot_sector: super::image::boot_sector(chunks).map_err(|e| e.to_string())?,
    })
}

/// What the image found out at boot: the CPUID dump, MXCSR_MASK and the
/// IA32_XSS bits WRMSR accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub cpuid: CpuidDump,
    /// From FXSAVE64 at boot (0 when not measured: probe boots).
    pub mxcsr_mask: u32,
    /// The IA32_XSS bits WRMSR accepted one at a time (None: not probed, no XSAVES).
    pub xss_accepted: Option<u64>,
}

/// Sizes of the supervisor components whose layout the SDM fixes (SDM1 §13.5):
/// PASID 8, CET_U 16, CET_S 24, HDC 8, UINTR 48, HWP 8 bytes. Used only for a
/// component WRMSR IA32_XSS accepts while CPUID.(0DH,i) reports nothing.
pub const SUPERVISOR_SIZES: [(usize, u32); 6] =
    [(10, 8), (11, 16), (12, 24), (13, 8), (14, 48), (16, 8)];

impl Info {
    pub fn parse(b: &[u8]) -> Result<Info, String> {
        if b.len() < INFO_BYTES as usize {
            return Err(format!("information record of {} bytes", b.len()));
        }
        let d = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let mut cpuid = CpuidDump::new();
        for (n, (leaf, sub)) in cpuid_leaves().into_iter().enumerate() {
            let o = 24 * n;
            if d(o) != leaf || d(o + 4) != sub {
                return Err(format!("CPUID entry {n}: expected ({leaf:#x},{sub})"));
            }
            cpuid.insert((leaf, sub), [d(o + 8), d(o + 12), d(o + 16), d(o + 20)]);
        }
        let q = |o: u64| u64::from_le_bytes(b[o as usize..o as usize + 8].try_into().unwrap());
        Ok(Info {
            cpuid,
            mxcsr_mask: d(INFO_MXCSR_MASK as usize),
            xss_accepted: (q(INFO_XSS_PROBED) == 1).then(|| q(INFO_XSS_ACCEPTED)),
        })
    }

    /// The CPUID dump as implemented: IA32_XSS bits that WRMSR accepts but
    /// CPUID.(0DH,1):EDX:ECX omits are added there, with CPUID.(0DH,i) from
    /// [`SUPERVISOR_SIZES`] where it reports nothing; bits CPUID reports and
    /// WRMSR refuses are removed. Also returns one line per change.
    pub fn cpuid_as_implemented(&self) -> (CpuidDump, Vec<String>) {
        let mut d = self.cpuid.clone();
        let mut notes = Vec::new();
        let Some(acc) = self.xss_accepted else {
            return (d, notes);
        };
        let d1 = self.leaf(0xD, 1);
        let reported = d1[2] as u64 | (d1[3] as u64) << 32;
        if acc == reported {
            return (d, notes);
        }
        let mut keep = acc;
        let mut sized = Vec::new();
        for i in 0..64u32 {
            if acc >> i & 1 == 0 || reported >> i & 1 == 1 || self.leaf(0xD, i)[0] != 0 {
                continue;
            }
            match SUPERVISOR_SIZES.iter().find(|(c, _)| *c == i as usize) {
                Some(&(_, size)) => {
                    d.insert((0xD, i), [size, 0, 1, 0]);
                    sized.push(format!(
                        "CPUID.(0DH,{i}) reports zeros: component {i} taken as a supervisor component of {size} bytes (SDM1 §13.5)"
                    ));
                }
                None => {
                    keep &= !(1 << i);
                    sized.push(format!(
                        "CPUID.(0DH,{i}) reports zeros and the SDM fixes no size for component {i}: left out"
                    ));
                }
            }
        }
        let e = d.entry((0xD, 1)).or_insert([0; 4]);
        e[2] = keep as u32;
        e[3] = (keep >> 32) as u32;
        notes.push(format!(
            "IA32_XSS: WRMSR accepts {acc:#x}, CPUID.(0DH,1):EDX:ECX reports {reported:#x}"
        ));
        notes.extend(sized);
        (d, notes)
    }

    /// The CPU model this CPUID describes as implemented
    /// ([`Info::cpuid_as_implemented`]), MXCSR_MASK as measured.
    pub fn model(&self, name: &str) -> CpuModel {
        let (dump, notes) = self.cpuid_as_implemented();
        let mut m = CpuModel::from_cpuid(name, &dump);
        // The image runs 4-level paging: 48-bit canonical addresses whatever
        // CPUID says about LA57.
        m.os_la57 = false;
        if self.mxcsr_mask != 0 {
            m.mxcsr_mask = self.mxcsr_mask;
        }
        if !notes.is_empty() {
            m.description = format!("as implemented: {}", notes.join("; "));
        }
        m
    }

    pub fn leaf(&self, l: u32, s: u32) -> [u32; 4] {
        self.cpuid.get(&(l, s)).copied().unwrap_or([0; 4])
    }

    /// The model file text (`emu/models/*.cpu` format) of `m`, a model made
    /// from this boot ([`super::host_model`]): the CPUID dump as implemented
    /// (each change a comment), MXCSR_MASK, 4-level paging and `m`'s quirks.
    pub fn model_file(&self, m: &CpuModel) -> String {
        let (dump, notes) = self.cpuid_as_implemented();
        let mut s = String::new();
        for n in &notes {
            s += &format!("# as implemented: {n}\n");
        }
        s += &format!("name {}\ndescription {}\n", m.name, m.description);
        for ((l, sub), r) in &dump {
            if *l == 0xD && r.iter().all(|&x| x == 0) {
                continue;
            }
            s += &format!(
                "cpuid {l:#010x} {sub:#x} eax={:#010x} ebx={:#010x} ecx={:#010x} edx={:#010x}\n",
                r[0], r[1], r[2], r[3]
            );
        }
        s += &format!(
            "mxcsr_mask {:#x}\nxcr0 {:#x}\nxss {:#x}\npaging {}\n",
            m.mxcsr_mask,
            m.os_xcr0,
            m.os_xss,
            if m.os_la57 { 5 } else { 4 }
        );
        for q in m.quirks.names() {
            s += &format!("quirk {q}\n");
        }
        s
    }
}

/// A kernel step that faulted (logged by the image and skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFault {
    pub step: u64,
    pub vector: u64,
    pub error_code: u64,
}

impl std::fmt::Display for KernelFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} raised {}",
            Step::describe(self.step),
            vector_name(self.vector, self.error_code)
        )
    }
}

fn vector_name(v: u64, err: u64) -> String {
    match v {
        6 => "#UD".into(),
        7 => "#NM".into(),
        12 => format!("#SS({err:#x})"),
        13 => format!("#GP({err:#x})"),
        14 => format!("#PF({err:#x})"),
        17 => "#AC(0)".into(),
        _ => format!("vector {v} (error code {err:#x})"),
    }
}

/// One result record as the image wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub q: Vec<u64>,
    /// XSAVE64 capture (standard format, CPUID.(0DH,0):ECX bytes).
    pub xsave: Vec<u8>,
    /// XSAVES64 capture (compacted, CPUID.(0DH,1):EBX bytes), empty without XSAVES.
    pub xsaves: Vec<u8>,
    /// The arena after the case.
    pub arena: Vec<u8>,
}

impl Record {
    pub fn from_parts(res: &[u8], xsave: Vec<u8>, xsaves: Vec<u8>, arena: Vec<u8>) -> Record {
        let q = res
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Record {
            q,
            xsave,
            xsaves,
            arena,
        }
    }
    pub fn kernel_faults(&self) -> Vec<KernelFault> {
        let n = (self.q[R_KF_COUNT] as usize).min(KF_MAX);
        (0..n)
            .map(|k| KernelFault {
                step: self.q[R_KF + 3 * k],
                vector: self.q[R_KF + 3 * k + 1],
                error_code: self.q[R_KF + 3 * k + 2],
            })
            .collect()
    }
    /// IA32_U_CET, IA32_PL3_SSP, IA32_PL0_SSP, IA32_PL1_SSP, IA32_PL2_SSP as RDMSR read them.
    pub fn cet_msrs(&self) -> [Option<u64>; 5] {
        let ok = self.q[R_CET_OK];
        std::array::from_fn(|k| (ok >> k & 1 == 1).then_some(self.q[R_CET + k]))
    }
}

/// Parses the port-0xE9 text of a boot: the information record, then one
/// record per case.
pub fn parse_hex_output(text: &str, cases: &[&Case]) -> Result<(Info, Vec<Record>), String> {
    let unhex = |s: &str| -> Result<Vec<u8>, String> {
        if !s.len().is_multiple_of(2) {
            return Err(format!("odd hex length {}", s.len()));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
            .collect()
    };
    let istart = text
        .find("#I")
        .ok_or("no information record in the output")?;
    let rest = &text[istart + 2..];
    let iend = rest.find('|').ok_or("truncated information record")?;
    let info = Info::parse(&unhex(&rest[..iend])?)?;
    let mut recs = Vec::new();
    let mut t = &rest[iend..];
    while let Some(p) = t.find("#C") {
        let line_end = t[p..].find('\n').map(|e| p + e).unwrap_or(t.len());
        let line = &t[p + 2..line_end];
        let f: Vec<&str> = line.split('|').collect();
        let k = recs.len();
        let case = cases
            .get(k)
            .ok_or_else(|| format!("more records than the {} cases", cases.len()))?;
        let pages = case.memory.prot.len();
        if f.len() < 3 + pages {
            return Err(format!(
                "record {k} truncated ({} fields, {} expected)",
                f.len(),
                3 + pages
            ));
        }
        let res = unhex(f[0])?;
        if res.len() != RES_BYTES as usize {
            return Err(format!("record {k}: {} bytes of result", res.len()));
        }
        let mut arena = Vec::with_capacity(pages * PAGE as usize);
        for pg in &f[3..3 + pages] {
            if *pg == "Z" {
                arena.extend_from_slice(&[0; PAGE as usize]);
            } else {
                let b = unhex(pg)?;
                if b.len() != PAGE as usize {
                    return Err(format!("record {k}: arena page of {} bytes", b.len()));
                }
                arena.extend_from_slice(&b);
            }
        }
        recs.push(Record::from_parts(&res, unhex(f[1])?, unhex(f[2])?, arena));
        t = &t[line_end..];
    }
    if !t.contains("#E") {
        return Err(format!(
            "the guest did not finish: {} of {} records, then: {:?}",
            recs.len(),
            cases.len(),
            t.chars().take(300).collect::<String>()
        ));
    }
    Ok((info, recs))
}

/// A ring-0 run of one case: the outcome plus what only a ring-0 capture shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring0Run {
    pub outcome: Outcome,
    /// The XSAVES64 capture of XCR0 | IA32_XSS (compacted), empty without XSAVES.
    pub xsaves_image: Vec<u8>,
    /// RDMSR of IA32_U_CET, IA32_PL3_SSP, IA32_PL0_SSP, IA32_PL1_SSP, IA32_PL2_SSP.
    pub cet_msrs: [Option<u64>; 5],
    /// Kernel steps that faulted during this case (e.g. an MSR the CPU refuses).
    pub kernel_faults: Vec<KernelFault>,
    /// Disagreements between the two views of the same state (XSAVES vs RDMSR,
    /// XSAVES vs XSAVE for user components): each is a finding about the host.
    pub view_mismatches: Vec<String>,
}

fn fault_from(vector: u64, err: u64, cr2: u64) -> Result<Fault, String> {
    Ok(match vector {
        6 => Fault::Ud,
        7 => Fault::Nm,
        12 => Fault::Ss,
        13 => Fault::Gp(err as u32),
        14 => Fault::Pf {
            err: err as u32,
            addr: cr2,
        },
        17 => Fault::Ac,
        v => return Err(format!("unexpected vector {v} (error code {err:#x})")),
    })
}

/// Turns a record into the emulator's outcome for `case` on a CPU described by
/// `model` (sizes and compacted offsets come from it).
pub fn to_run(
    model: &CpuModel,
    case: &Case,
    rec: &Record,
) -> Result<Result<Ring0Run, Refusal>, String> {
    let q = &rec.q;
    let kf = rec.kernel_faults();
    if q[R_END] == END_SETUP_FAILED {
        let which = kf
            .iter()
            .find(|f| {
                [Step::Xcr0, Step::Xss, Step::Xfd]
                    .iter()
                    .any(|s| f.step == *s as u64)
            })
            .copied();
        let reason = match which {
            Some(f) if f.step == Step::Xcr0 as u64 => {
                format!(
                    "the host refuses the case's XCR0 (XSETBV {})",
                    vector_name(f.vector, f.error_code)
                )
            }
            Some(f) if f.step == Step::Xss as u64 => format!(
                "the host refuses the case's IA32_XSS (WRMSR {})",
                vector_name(f.vector, f.error_code)
            ),
            Some(f) => format!(
                "the host refuses the case's IA32_XFD (WRMSR {})",
                vector_name(f.vector, f.error_code)
            ),
            None => "the case could not be set up".into(),
        };
        return Ok(Err(Refusal { reason }));
    }
    if q[R_XSAVE_OK] != 1 {
        return Err(format!(
            "the capture's XSAVE64 did not run: {}",
            kf.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let fault = match q[R_END] {
        END_NORMAL => {
            let end = CODE_BASE + (case.code.len() + TRAILER.len()) as u64;
            if q[R_RIP] != end {
                return Err(format!(
                    "the case ended at {:#x}, not at the end of its code {end:#x}",
                    q[R_RIP]
                ));
            }
            None
        }
        END_FAULT_INIT => Some(FaultAt {
            fault: fault_from(q[R_VECTOR], q[R_ERR], q[R_CR2])?,
            insn: None,
        }),
        END_FAULT_CODE => {
            let f = fault_from(q[R_VECTOR], q[R_ERR], q[R_CR2])?;
            let insn = crate::runner::insn_index(
                &case.code,
                DecoderOptions::NONE,
                q[R_RIP].wrapping_sub(CODE_BASE) as usize,
            )
            .ok_or_else(|| format!("{f} at {:#x}, not an instruction of the case", q[R_RIP]))?;
            Some(FaultAt {
                fault: f,
                insn: Some(insn),
            })
        }
        e => return Err(format!("bad end kind {e}")),
    };
    let gprs: [u64; 16] = if q[R_END] == END_FAULT_INIT {
        case.gprs
    } else {
        std::array::from_fn(|g| q[R_GPRS + g])
    };
    let final_xcr0 = q[R_FINAL_XCR0];
    let std_size = layout::standard(model, Xfeatures::from_bits_retain(final_xcr0)).size as usize;
    if rec.xsave.len() < std_size {
        return Err(format!(
            "XSAVE capture of {} bytes, {std_size} expected",
            rec.xsave.len()
        ));
    }
    let final_image = rec.xsave[..std_size].to_vec();
    let xinuse = (q[R_XINUSE_OK] == 1).then_some(q[R_XINUSE]);
    let mut mismatches = Vec::new();
    // Supervisor components from the XSAVES capture.
    let xss = case.control.xss;
    let mut supervisor = Vec::new();
    let cet = rec.cet_msrs();
    if q[R_XSAVES_OK] == 1 && rec.xsaves.len() >= 576 {
        let x = &rec.xsaves;
        let xstate_bv = u64::from_le_bytes(x[512..520].try_into().unwrap());
        let xcomp_bv = u64::from_le_bytes(x[520..528].try_into().unwrap());
        let lay = layout::compacted(model, Xfeatures::from_bits_retain(xcomp_bv & !(1 << 63)));
        for i in Xfeatures::from_bits_retain(xss).indices() {
            let Some(c) = model.component(i).filter(|c| c.supervisor) else {
                continue;
            };
            let bytes: Vec<u8> = match lay.slot(i) {
                Some(s) if xstate_bv >> i & 1 == 1 => x
                    .get(s.offset as usize..(s.offset + s.size) as usize)
                    .ok_or_else(|| {
                        format!(
                            "XSAVES capture of {} bytes lacks component {i} at {}",
                            x.len(),
                            s.offset
                        )
                    })?
                    .to_vec(),
                _ => {
                    let mut b = vec![0u8; c.size as usize];
                    let q0 = COMPONENTS[i].init_qword0.to_le_bytes();
                    if b.len() >= 8 {
                        b[..8].copy_from_slice(&q0);
                    }
                    b
                }
            };
            // The RDMSR view of CET_U and CET_S.
            let msr_idx: &[usize] = match i {
                11 => &[0, 1],
                12 => &[2, 3, 4],
                _ => &[],
            };
            // The supervisor contents are the registers' values: the RDMSR view
            // where RDMSR reads them, the XSAVES view otherwise.
            let mut regs = bytes.clone();
            for (k, &m) in msr_idx.iter().enumerate() {
                if let Some(val) = cet[m] {
                    regs[8 * k..8 * k + 8].copy_from_slice(&val.to_le_bytes());
                }
            }
            for (k, &m) in msr_idx.iter().enumerate() {
                if let Some(val) = cet[m] {
                    let saved = u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().unwrap());
                    if saved != val {
                        mismatches.push(format!(
                            "component {i} qword {k}: XSAVES saved {saved:#x}, RDMSR {:#x} reads {val:#x}",
                            CET_MSRS[m]
                        ));
                    }
                }
            }
            supervisor.extend_from_slice(&regs);
        }
        // User components: XSAVES and XSAVE must agree where XSAVES wrote them.
        let std = layout::standard(model, Xfeatures::from_bits_retain(final_xcr0));
        for s in &std.slots {
            if xstate_bv >> s.index & 1 == 1 {
                if let Some(a) = lay
                    .slot(s.index)
                    .and_then(|cs| x.get(cs.offset as usize..(cs.offset + cs.size) as usize))
                {
                    let b = &final_image[s.offset as usize..(s.offset + s.size) as usize];
                    if a != b {
                        mismatches.push(format!(
                            "component {}: XSAVES and XSAVE captures differ",
                            s.index
                        ));
                    }
                }
            }
        }
    } else if xss != 0 {
        return Err("IA32_XSS is set but the capture's XSAVES did not run".into());
    }
    Ok(Ok(Ring0Run {
        outcome: Outcome {
            fault,
            final_image,
            xinuse,
            gprs,
            memory: rec.arena.clone().into(),
            supervisor,
        },
        xsaves_image: rec.xsaves.clone(),
        cet_msrs: cet,
        kernel_faults: kf,
        view_mismatches: mismatches,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::CpuModel;

    fn case(model: &CpuModel, init: usize, code: usize) -> Case {
        let mut c = Case::new(model, xsave_emu::Control::kernel(model));
        c.init.resize(init, 0);
        c.code = vec![0x90; code];
        c
    }

    /// A batch `pack` makes fits below LOAD_END when `load` lays it out, even
    /// one the estimate fills to the byte: cases whose initial images are
    /// whole 64-byte lines after code of odd length need the most alignment
    /// padding (64 Sapphire Rapids cases of a campaign were once skipped as
    /// "does not fit below 0x98000").
    #[test]
    fn a_full_packed_batch_fits_when_loaded() {
        let model = CpuModel::builtin("sapphire-rapids").unwrap();
        let img = super::super::image::build().unwrap();
        let cap = LOAD_END - PAYLOAD - 64;
        let one = case(&model, 576 + 8192, 1);
        let e = case_bytes(&one);
        let n = (cap - 9000) / e;
        let mut cases: Vec<Case> = (0..n).map(|_| one.clone()).collect();
        // A last case that brings the estimate to exactly `cap`.
        let rest = cap - n * e;
        let filler = (1..=64usize)
            .map(|code| case(&model, 0, code))
            .find_map(|c| {
                let init = rest.checked_sub(case_bytes(&c))? as usize;
                let mut c = c;
                c.init.resize(init, 0);
                (case_bytes(&c) == rest && init.is_multiple_of(64)).then_some(c)
            })
            .expect("a filler case");
        cases.push(filler);
        let refs: Vec<&Case> = cases.iter().collect();
        for g in pack(&refs, 200) {
            let batch: Vec<&Case> = g.iter().map(|&i| refs[i]).collect();
            load(&img, &batch, 0, false).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
