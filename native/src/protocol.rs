//! The wire format between a backend and the `xsave-harness` binary: a
//! versioned, line-oriented text format (UTF-8, one record field per line), so
//! it survives any user-mode emulator's stdin/stdout and can be read by eye.
//!
//! ```text
//! xsave-harness-cases 1            (first line: kind and version)
//! case                             (one block per case)
//! control xcr0=0x600e7 xss=0x0 xfd=0x40000 cpl=3 ts=0 em=0 am=1 osxsave=1 osfxsr=1 ac=0 vmx=0
//! init BYTES                       (the initial image)
//! arena BASE PROTS BYTES           (PROTS: one of n r w per page)
//! code BYTES
//! gprs 16 hex values
//! end
//! ```
//! ```text
//! xsave-harness-outcomes 1
//! hello                            (what the harness sees, from its own CPUID)
//! xcr0 0x600e7 | none
//! mxcsr_mask 0xffff
//! xfd 0x40000
//! paging 4 | 5                     (levels: CR4.LA57)
//! cpuid LEAF SUBLEAF EAX EBX ECX EDX   (the leaves a CpuModel is built from)
//! runner ok | runner error TEXT
//! end
//! outcome                          (one block per case, in order)
//! fault none | fault VECTOR ERR ADDR INSN|-
//! final BYTES
//! xinuse VALUE | none
//! gprs 16 hex values
//! memory BYTES
//! supervisor BYTES
//! end
//! refused REASON                   (instead of an outcome block)
//! ```
//! BYTES is hex, with runs of zero bytes written `zN.` (N zero bytes), so a
//! mostly-zero 11 KiB image stays short. `-` is an empty byte string.

use crate::Refusal;
use std::fmt;
use std::io::{BufRead, Write};
use xsave_emu::model::{parse_u64, CpuidDump};
use xsave_emu::{Case, Control, CpuModel, Fault, FaultAt, Memory, Outcome, Prot};

pub const VERSION: u32 = 1;
const CASES_MAGIC: &str = "xsave-harness-cases";
const OUTCOMES_MAGIC: &str = "xsave-harness-outcomes";

/// A malformed stream: the line number (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "harness protocol, line {}: {}", self.line, self.message)
    }
}
impl std::error::Error for ProtocolError {}

/// What the harness reports about the machine it finds itself on (under an
/// emulator: what the emulator presents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    /// XGETBV(0), or None when XGETBV is not available (CR4.OSXSAVE = 0).
    pub xcr0: Option<u64>,
    pub mxcsr_mask: u32,
    /// IA32_XFD as Linux arms it for the harness's thread.
    pub xfd: u64,
    /// The OS runs 5-level paging (CR4.LA57).
    pub paging57: bool,
    /// The raw CPUID leaves the harness read.
    pub cpuid: CpuidDump,
    /// `Err` when the harness's runner could not start (every case is refused).
    pub runner: Result<(), String>,
}

impl Hello {
    /// The model these facts describe: CPUID plus the measured MXCSR_MASK and the
    /// OS control state (IA32_XSS cannot be seen in ring 3 and is 0 here).
    pub fn model(&self, name: &str) -> CpuModel {
        let mut m = CpuModel::from_cpuid(name, &self.cpuid);
        m.mxcsr_mask = self.mxcsr_mask;
        m.os_xcr0 = self.xcr0.unwrap_or(0);
        m.os_xss = 0;
        m.os_xfd = self.xfd;
        m.os_la57 = self.paging57;
        m
    }
}

/// Bytes as hex with zero runs (`zN.`).
pub fn pack(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    let mut s = String::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        if b[k] == 0 {
            let n = b[k..].iter().take_while(|&&x| x == 0).count();
            if n >= 3 {
                s.push_str(&format!("z{n}."));
                k += n;
                continue;
            }
        }
        s.push_str(&format!("{:02x}", b[k]));
        k += 1;
    }
    s
}

/// The inverse of [`pack`].
pub fn unpack(s: &str) -> Result<Vec<u8>, String> {
    if s == "-" {
        return Ok(Vec::new());
    }
    let b = s.as_bytes();
    let mut v = Vec::new();
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'z' {
            let end = s[k..]
                .find('.')
                .ok_or_else(|| format!("zero run without `.` at column {}", k + 1))?;
            let n: usize = s[k + 1..k + end]
                .parse()
                .map_err(|_| format!("bad zero-run length at column {}", k + 1))?;
            if n > 1 << 24 {
                return Err(format!("zero run of {n} bytes is too long"));
            }
            v.resize(v.len() + n, 0);
            k += end + 1;
            continue;
        }
        let pair = s
            .get(k..k + 2)
            .ok_or_else(|| format!("odd number of hex digits at column {}", k + 1))?;
        v.push(
            u8::from_str_radix(pair, 16)
                .map_err(|_| format!("bad hex `{pair}` at column {}", k + 1))?,
        );
        k += 2;
    }
    Ok(v)
}

fn control_line(c: &Control) -> String {
    format!(
        "control xcr0={:#x} xss={:#x} xfd={:#x} cpl={} ts={} em={} am={} osxsave={} osfxsr={} ac={} vmx={}",
        c.xcr0,
        c.xss,
        c.xfd,
        c.cpl,
        c.cr0_ts as u8,
        c.cr0_em as u8,
        c.cr0_am as u8,
        c.cr4_osxsave as u8,
        c.cr4_osfxsr as u8,
        c.eflags_ac as u8,
        c.vmx_nonroot as u8
    )
}

fn gprs_line(g: &[u64; 16]) -> String {
    let v: Vec<String> = g.iter().map(|x| format!("{x:x}")).collect();
    format!("gprs {}", v.join(" "))
}

/// Writes a batch of cases.
pub fn write_cases(w: &mut impl Write, cases: &[Case]) -> std::io::Result<()> {
    writeln!(w, "{CASES_MAGIC} {VERSION}")?;
    for c in cases {
        writeln!(w, "case")?;
        writeln!(w, "{}", control_line(&c.control))?;
        writeln!(w, "init {}", pack(&c.init))?;
        let prots: String = c
            .memory
            .prot
            .iter()
            .map(|p| match p {
                Prot::None => 'n',
                Prot::Read => 'r',
                Prot::ReadWrite => 'w',
            })
            .collect();
        let prots = if prots.is_empty() { "-".into() } else { prots };
        writeln!(
            w,
            "arena {:#x} {prots} {}",
            c.memory.base,
            pack(&c.memory.bytes)
        )?;
        writeln!(w, "code {}", pack(&c.code))?;
        writeln!(w, "{}", gprs_line(&c.gprs))?;
        writeln!(w, "end")?;
    }
    Ok(())
}

/// A line reader that counts lines for errors.
struct Lines<R> {
    r: R,
    line: usize,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> Result<Option<String>, ProtocolError> {
        let mut s = String::new();
        let n = self.r.read_line(&mut s).map_err(|e| ProtocolError {
            line: self.line + 1,
            message: format!("read error: {e}"),
        })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()))
    }
    fn err<T>(&self, m: impl Into<String>) -> Result<T, ProtocolError> {
        Err(ProtocolError {
            line: self.line,
            message: m.into(),
        })
    }
    fn expect(&mut self, key: &str) -> Result<String, ProtocolError> {
        match self.next()? {
            None => self.err(format!("expected `{key}`, found the end of the stream")),
            Some(l) => {
                let (k, rest) = l.split_once(' ').unwrap_or((&l, ""));
                if k != key {
                    return self.err(format!("expected `{key}`, found `{k}`"));
                }
                Ok(rest.to_string())
            }
        }
    }
    fn header(&mut self, magic: &str) -> Result<u32, ProtocolError> {
        let v = self.expect(magic)?;
        let v: u32 = v
            .trim()
            .parse()
            .or_else(|_| self.err(format!("bad version `{v}`")))?;
        if v != VERSION {
            return self.err(format!("version {v}, this side speaks {VERSION}"));
        }
        Ok(v)
    }
    fn bytes(&self, s: &str, field: &str) -> Result<Vec<u8>, ProtocolError> {
        unpack(s).or_else(|e| self.err(format!("{field}: {e}")))
    }
    fn num(&self, s: &str, field: &str) -> Result<u64, ProtocolError> {
        parse_u64(s).map_or_else(|| self.err(format!("{field}: bad number `{s}`")), Ok)
    }
    fn gprs(&self, s: &str) -> Result<[u64; 16], ProtocolError> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 16 {
            return self.err(format!("gprs: expected 16 values, found {}", f.len()));
        }
        let mut g = [0u64; 16];
        for (k, x) in f.iter().enumerate() {
            g[k] = u64::from_str_radix(x, 16)
                .or_else(|_| self.err(format!("gprs: bad value `{x}`")))?;
        }
        Ok(g)
    }
}

fn parse_control(l: &Lines<impl BufRead>, s: &str) -> Result<Control, ProtocolError> {
    let mut c = Control::user_with(0, 0, 0);
    let mut seen = 0u32;
    for item in s.split_whitespace() {
        let (k, v) = item.split_once('=').map_or_else(
            || l.err(format!("control: expected KEY=VALUE, found `{item}`")),
            Ok,
        )?;
        let x = l.num(v, &format!("control {k}"))?;
        let b = x != 0;
        let bit = match k {
            "xcr0" => {
                c.xcr0 = x;
                0
            }
            "xss" => {
                c.xss = x;
                1
            }
            "xfd" => {
                c.xfd = x;
                2
            }
            "cpl" => {
                c.cpl = x as u8;
                3
            }
            "ts" => {
                c.cr0_ts = b;
                4
            }
            "em" => {
                c.cr0_em = b;
                5
            }
            "am" => {
                c.cr0_am = b;
                6
            }
            "osxsave" => {
                c.cr4_osxsave = b;
                7
            }
            "osfxsr" => {
                c.cr4_osfxsr = b;
                8
            }
            "ac" => {
                c.eflags_ac = b;
                9
            }
            "vmx" => {
                c.vmx_nonroot = b;
                10
            }
            _ => return l.err(format!("control: unknown field `{k}`")),
        };
        seen |= 1 << bit;
    }
    if seen != (1 << 11) - 1 {
        return l.err(
            "control: every field (xcr0 xss xfd cpl ts em am osxsave osfxsr ac vmx) is required",
        );
    }
    Ok(c)
}

/// Reads a batch written by [`write_cases`].
pub fn read_cases(r: impl BufRead) -> Result<Vec<Case>, ProtocolError> {
    let mut l = Lines { r, line: 0 };
    l.header(CASES_MAGIC)?;
    let mut out = Vec::new();
    loop {
        match l.next()? {
            None => return Ok(out),
            Some(s) if s == "case" => {}
            Some(s) if s.is_empty() => continue,
            Some(s) => return l.err(format!("expected `case`, found `{s}`")),
        }
        let s = l.expect("control")?;
        let control = parse_control(&l, &s)?;
        let init = l.expect("init")?;
        let init = l.bytes(&init, "init")?;
        if init.len() < 576 {
            return l.err(format!(
                "init: {} bytes, an XSAVE image has at least 576",
                init.len()
            ));
        }
        let a = l.expect("arena")?;
        let f: Vec<&str> = a.split(' ').collect();
        if f.len() != 3 {
            return l.err("arena: expected BASE PROTS BYTES");
        }
        let base = l.num(f[0], "arena base")?;
        let mut prot = Vec::new();
        for ch in f[1].chars().filter(|&c| c != '-') {
            prot.push(match ch {
                'n' => Prot::None,
                'r' => Prot::Read,
                'w' => Prot::ReadWrite,
                _ => return l.err(format!("arena: bad protection `{ch}` (n, r or w)")),
            });
        }
        let bytes = l.bytes(f[2], "arena bytes")?;
        if bytes.len() != prot.len() * xsave_emu::memory::PAGE as usize {
            return l.err(format!(
                "arena: {} bytes for {} pages",
                bytes.len(),
                prot.len()
            ));
        }
        let code = l.expect("code")?;
        let code = l.bytes(&code, "code")?;
        let g = l.expect("gprs")?;
        let gprs = l.gprs(&g)?;
        l.expect("end")?;
        out.push(Case {
            control,
            init,
            memory: Memory {
                base,
                bytes: bytes.into(),
                prot,
            },
            code,
            gprs,
        });
    }
}

/// Writes the hello record and one outcome or refusal per case.
pub fn write_outcomes(
    w: &mut impl Write,
    hello: &Hello,
    outcomes: &[Result<Outcome, Refusal>],
) -> std::io::Result<()> {
    writeln!(w, "{OUTCOMES_MAGIC} {VERSION}")?;
    writeln!(w, "hello")?;
    match hello.xcr0 {
        Some(x) => writeln!(w, "xcr0 {x:#x}")?,
        None => writeln!(w, "xcr0 none")?,
    }
    writeln!(w, "mxcsr_mask {:#x}", hello.mxcsr_mask)?;
    writeln!(w, "xfd {:#x}", hello.xfd)?;
    writeln!(w, "paging {}", if hello.paging57 { 5 } else { 4 })?;
    for ((l, s), r) in &hello.cpuid {
        writeln!(
            w,
            "cpuid {l:#x} {s:#x} {:#x} {:#x} {:#x} {:#x}",
            r[0], r[1], r[2], r[3]
        )?;
    }
    match &hello.runner {
        Ok(()) => writeln!(w, "runner ok")?,
        Err(e) => writeln!(w, "runner error {}", e.replace('\n', " "))?,
    }
    writeln!(w, "end")?;
    for o in outcomes {
        match o {
            Err(r) => writeln!(w, "refused {}", r.reason.replace('\n', " "))?,
            Ok(o) => {
                writeln!(w, "outcome")?;
                match o.fault {
                    None => writeln!(w, "fault none")?,
                    Some(f) => {
                        let addr = match f.fault {
                            Fault::Pf { addr, .. } => addr,
                            _ => 0,
                        };
                        let insn = f.insn.map_or("-".to_string(), |i| i.to_string());
                        writeln!(
                            w,
                            "fault {} {:#x} {addr:#x} {insn}",
                            f.fault.vector(),
                            f.fault.error_code()
                        )?;
                    }
                }
                writeln!(w, "final {}", pack(&o.final_image))?;
                match o.xinuse {
                    Some(x) => writeln!(w, "xinuse {x:#x}")?,
                    None => writeln!(w, "xinuse none")?,
                }
                writeln!(w, "{}", gprs_line(&o.gprs))?;
                writeln!(w, "memory {}", pack(&o.memory))?;
                writeln!(w, "supervisor {}", pack(&o.supervisor))?;
                writeln!(w, "end")?;
            }
        }
    }
    Ok(())
}

fn fault_from(vector: u64, err: u64, addr: u64) -> Option<Fault> {
    Some(match vector {
        6 => Fault::Ud,
        7 => Fault::Nm,
        12 => Fault::Ss,
        13 => Fault::Gp(err as u32),
        14 => Fault::Pf {
            err: err as u32,
            addr,
        },
        17 => Fault::Ac,
        _ => return None,
    })
}

/// Reads what [`write_outcomes`] wrote.
#[allow(clippy::type_complexity)]
pub fn read_outcomes(
    r: impl BufRead,
) -> Result<(Hello, Vec<Result<Outcome, Refusal>>), ProtocolError> {
    let mut l = Lines { r, line: 0 };
    let version = l.header(OUTCOMES_MAGIC)?;
    l.expect("hello")?;
    let x = l.expect("xcr0")?;
    let xcr0 = if x == "none" {
        None
    } else {
        Some(l.num(&x, "xcr0")?)
    };
    let m = l.expect("mxcsr_mask")?;
    let mxcsr_mask = l.num(&m, "mxcsr_mask")? as u32;
    let x = l.expect("xfd")?;
    let xfd = l.num(&x, "xfd")?;
    let p = l.expect("paging")?;
    let paging57 = match p.as_str() {
        "4" => false,
        "5" => true,
        _ => return l.err(format!("paging: expected 4 or 5, found `{p}`")),
    };
    let mut cpuid = CpuidDump::new();
    let runner;
    loop {
        let Some(s) = l.next()? else {
            return l.err("hello: the stream ends before `runner`");
        };
        let (k, rest) = s.split_once(' ').unwrap_or((&s, ""));
        match k {
            "cpuid" => {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() != 6 {
                    return l.err("cpuid: expected LEAF SUBLEAF EAX EBX ECX EDX");
                }
                let mut v = [0u64; 6];
                for (k, x) in f.iter().enumerate() {
                    v[k] = l.num(x, "cpuid")?;
                }
                cpuid.insert(
                    (v[0] as u32, v[1] as u32),
                    [v[2] as u32, v[3] as u32, v[4] as u32, v[5] as u32],
                );
            }
            "runner" => {
                runner = if rest == "ok" {
                    Ok(())
                } else {
                    Err(rest.strip_prefix("error ").unwrap_or(rest).to_string())
                };
                break;
            }
            _ => return l.err(format!("hello: unexpected `{k}`")),
        }
    }
    l.expect("end")?;
    let hello = Hello {
        version,
        xcr0,
        mxcsr_mask,
        xfd,
        paging57,
        cpuid,
        runner,
    };
    let mut out = Vec::new();
    loop {
        let Some(s) = l.next()? else {
            return Ok((hello, out));
        };
        if let Some(r) = s.strip_prefix("refused ") {
            out.push(Err(Refusal::new(r)));
            continue;
        }
        if s != "outcome" {
            return l.err(format!("expected `outcome` or `refused`, found `{s}`"));
        }
        let f = l.expect("fault")?;
        let fault = if f == "none" {
            None
        } else {
            let p: Vec<&str> = f.split_whitespace().collect();
            if p.len() != 4 {
                return l.err("fault: expected VECTOR ERR ADDR INSN");
            }
            let vector = l.num(p[0], "fault vector")?;
            let err = l.num(p[1], "fault error code")?;
            let addr = l.num(p[2], "fault address")?;
            let insn = if p[3] == "-" {
                None
            } else {
                Some(l.num(p[3], "fault insn")? as usize)
            };
            let Some(fault) = fault_from(vector, err, addr) else {
                return l.err(format!("fault: vector {vector} is not one the model knows"));
            };
            Some(FaultAt { fault, insn })
        };
        let s = l.expect("final")?;
        let final_image = l.bytes(&s, "final")?;
        let s = l.expect("xinuse")?;
        let xinuse = if s == "none" {
            None
        } else {
            Some(l.num(&s, "xinuse")?)
        };
        let g = l.expect("gprs")?;
        let gprs = l.gprs(&g)?;
        let s = l.expect("memory")?;
        let memory = l.bytes(&s, "memory")?;
        let s = l.expect("supervisor")?;
        let supervisor = l.bytes(&s, "supervisor")?;
        l.expect("end")?;
        out.push(Ok(Outcome {
            fault,
            final_image,
            xinuse,
            gprs,
            memory: memory.into(),
            supervisor,
        }));
    }
}

/// The hello of this process: its own CPUID, XCR0, MXCSR_MASK and XFD.
pub fn hello_here(runner: Result<(), String>) -> Hello {
    let cpuid = crate::host::cpuid_dump();
    let m = CpuModel::from_cpuid("here", &cpuid);
    let xcr0 = if m.xsave {
        crate::host::xgetbv(0)
    } else {
        None
    };
    Hello {
        version: VERSION,
        xcr0,
        mxcsr_mask: crate::host::mxcsr_mask(),
        xfd: crate::host::linux_xfd(&m, xcr0.unwrap_or(0)),
        paging57: m.la57 && crate::host::paging_57(),
        cpuid,
        runner,
    }
}
