//! Envelope tightness (issue 13): on generated cases for every built-in model,
//! mutations of the predicted outcome that the SDM forbids are each rejected by
//! `xsave_emu::check`, and the rule it names is the one the mutation breaks. The
//! forbidden mutations and the rules they break are worked out here from the
//! SDM's Operation sections (not from the envelope's own latitude):
//!
//! - a fault removed, or changed to #UD: the rule behind the predicted fault
//!   (its kind: `*.ud-*`, `*.nm-*`, `*.gp-*`, `mem.pf`); a fault added where
//!   none is predicted: `insn.faults-only-as-listed`; a #PF outside the area:
//!   `mem.pf-within-region`;
//! - a save's XSTATE_BV bit flipped alone: outside RFBM (XSAVE, XSAVEOPT keep
//!   it; XSAVEC, XSAVES write 0), over a component not in its initial
//!   configuration, or (XSAVEOPT, XSAVEC, XSAVES) over a component whose
//!   written bytes differ from what the area held (NEW_HEADER = RFBM AND
//!   XINUSE, TO_BE_SAVED = RFBM AND XINUSE: bit and bytes are one choice): the
//!   save's header rule;
//! - the component bytes of a save with the init optimization written (as its
//!   init values) while its bit says 0: the save's rule or its header rule;
//! - a byte the save writes changed to something else: the save's rule; a byte
//!   no save writes (legacy bytes 464..511): `save.writes-only-saved`;
//! - a final XMM or AVX byte changed: the restore that loaded it; an XINUSE or
//!   final XSTATE_BV bit cleared over non-init contents:
//!   `xinuse.zero-only-in-init`; a GPR the instruction does not write:
//!   `gprs.unchanged`; supervisor state: its loader or `state.unchanged-by-others`.
//!
//! Allowed mutations are checked too: XINUSE set over init contents, XSAVE's
//! bit set alone over an init component, and an init component written with
//! its bit set by a save with the init optimization, are inside and name
//! `xinuse-1-over-init`.
//!
//! Counts (tried, rejected, per rule) are printed (`--nocapture`).

use iced_x86::Mnemonic;
use std::collections::BTreeMap;
use xsave_diff::generate::{generate, Target};
use xsave_emu::component::COMPONENTS;
use xsave_emu::exec::decode;
use xsave_emu::layout;
use xsave_emu::{check, predict, Case, Control, CpuModel, Fault, FaultAt, Outcome, Xfeatures};

const CASES: u64 = 300;

#[derive(Default)]
struct Tally {
    tried: u32,
    rejected: u32,
    per_rule: BTreeMap<String, u32>,
    /// Mutation kind (its description without numbers) -> tried.
    per_kind: BTreeMap<String, u32>,
    allowed_tried: u32,
    allowed_inside: u32,
    failures: Vec<String>,
}

impl Tally {
    /// `obs` breaks the SDM: it must be rejected, naming a rule that `want` accepts.
    fn forbidden(
        &mut self,
        what: &str,
        m: &CpuModel,
        c: &Case,
        obs: &Outcome,
        want: &dyn Fn(&str) -> bool,
    ) {
        self.tried += 1;
        *self.per_kind.entry(kind(what)).or_default() += 1;
        let j = check(m, c, obs).expect("predicted cases are supported");
        if j.inside() {
            self.failures
                .push(format!("{}: {what}: admitted ({j})", m.name));
            return;
        }
        self.rejected += 1;
        let ids = j.rule_ids();
        match ids.iter().find(|id| want(id)) {
            Some(id) => *self.per_rule.entry(id.to_string()).or_default() += 1,
            None => self
                .failures
                .push(format!("{}: {what}: named {ids:?} ({j})", m.name)),
        }
    }
    /// `obs` is allowed: inside, naming latitude `lat`.
    fn allowed(&mut self, what: &str, m: &CpuModel, c: &Case, obs: &Outcome, lat: &str) {
        self.allowed_tried += 1;
        let j = check(m, c, obs).expect("supported");
        if j.inside() && j.latitude_ids().contains(&lat) {
            self.allowed_inside += 1;
        } else {
            self.failures.push(format!(
                "{}: {what}: allowed, judged {j} ({:?})",
                m.name,
                j.latitude_ids()
            ));
        }
    }
}

/// A mutation's kind: its description with every number (a run of word
/// characters starting with a digit) as N, and the REX.W forms with the others.
fn kind(what: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for ch in what.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
            continue;
        }
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(word.strip_suffix("64").unwrap_or(&word));
        }
        word.clear();
        out.push(ch);
    }
    out.trim_end().to_string()
}

fn is(id: &'static str) -> impl Fn(&str) -> bool {
    move |x| x == id
}

fn either(a: &'static str, b: &'static str) -> impl Fn(&str) -> bool {
    move |x| x == a || x == b
}

/// Whether component `i` of a standard-format capture image is in its initial
/// configuration (SDM1 §13.6); for SSE, MXCSR != 1F80H counts as in use when
/// `mxcsr_rule` (XGETBV(1)).
fn init_in_image(m: &CpuModel, xcr0: u64, img: &[u8], i: usize, mxcsr_rule: bool) -> bool {
    let zero = |r: &[u8]| r.iter().all(|&b| b == 0);
    match i {
        0 => {
            u16::from_le_bytes([img[0], img[1]]) == 0x037F
                && zero(&img[2..6])
                && zero(&img[8..24])
                && zero(&img[32..160])
        }
        1 => {
            let mx = u32::from_le_bytes(img[24..28].try_into().unwrap());
            zero(&img[160..416]) && !(mxcsr_rule && mx != 0x1F80)
        }
        _ => match layout::standard(m, Xfeatures::from_bits_retain(xcr0)).slot(i) {
            Some(s) => {
                let b = &img[s.offset as usize..(s.offset + s.size) as usize];
                b == &init_bytes(i, s.size as usize)[..]
            }
            None => true,
        },
    }
}

/// Component i's initial configuration (zero but for its first qword).
fn init_bytes(i: usize, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let q = COMPONENTS[i].init_qword0.to_le_bytes();
    if len >= 8 {
        v[..8].copy_from_slice(&q);
    }
    v
}

/// The one instruction of a case, its area's linear address (memory forms).
fn only_instruction(c: &Case) -> Option<(Mnemonic, Option<u64>)> {
    let ins = decode(&c.code);
    if ins.len() != 1 || ins[0].is_invalid() {
        return None;
    }
    let i = ins[0];
    let g = c.gprs;
    let rip = i.next_ip();
    let addr = (i.op_count() > 0 && i.op0_kind() == iced_x86::OpKind::Memory)
        .then(|| {
            i.virtual_address(0, 0, |r, _, _| match r {
                iced_x86::Register::RIP => Some(rip),
                r if r.is_gpr64() => Some(g[r.number()]),
                r if r.is_gpr32() => Some(g[r.number()] & 0xffff_ffff),
                _ => Some(0),
            })
        })
        .flatten();
    Some((i.mnemonic(), addr))
}

/// The save rules of a save mnemonic: (what it writes, its header).
fn save_rules(mn: Mnemonic) -> Option<(&'static str, Option<&'static str>, bool)> {
    use Mnemonic::*;
    Some(match mn {
        Xsave | Xsave64 => (
            "xsave.saves-rfbm",
            Some("xsave.header-xstate-bv-rmw"),
            false,
        ),
        Xsaveopt | Xsaveopt64 => (
            "xsaveopt.saves-rfbm-and-xinuse",
            Some("xsave.header-xstate-bv-rmw"),
            false,
        ),
        Xsavec | Xsavec64 => (
            "xsavec.saves-rfbm-and-xinuse",
            Some("xsavec.header-is-rfbm-and-xinuse"),
            true,
        ),
        Xsaves | Xsaves64 => (
            "xsaves.saves-rfbm-and-xinuse",
            Some("xsaves.header-is-rfbm-and-xinuse"),
            true,
        ),
        Fxsave | Fxsave64 => ("fxsave.saves-legacy-region", None, false),
        _ => return None,
    })
}

/// A fault's mnemonic ("#PF"), without its error code and address.
fn name(f: &Fault) -> String {
    f.to_string().split('(').next().unwrap_or("").to_string()
}

fn restores(mn: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        mn,
        Xrstor | Xrstor64 | Xrstors | Xrstors64 | Fxrstor | Fxrstor64
    )
}

/// What a fault of this kind is raised by (the family of rule ids).
fn fault_rule_family(f: &Fault) -> fn(&str) -> bool {
    match f {
        Fault::Ud => |id| id.contains(".ud-"),
        Fault::Nm => |id| id.contains(".nm-"),
        Fault::Gp(_) => |id| id.contains(".gp-"),
        Fault::Ss => |id| id == "mem.gp-non-canonical",
        Fault::Ac => |id| id.ends_with(".gp-misaligned") || id == "insn.other-semantics",
        Fault::Pf { .. } => |id| id == "mem.pf",
    }
}

/// The rule that loads final-image component `i` when nothing in the case
/// does: the runner's initial XRSTOR (XRSTORS for a compacted image at CPL 0).
fn initial_loader(m: &CpuModel, c: &Case) -> &'static str {
    let compacted = c.init_xcomp_bv() >> 63 == 1;
    if compacted && (m.xsavec || m.xsaves) {
        "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"
    } else {
        "xrstor.loads-rfbm-by-xstate-bv"
    }
}

fn mutate(t: &mut Tally, m: &CpuModel, c: &Case, p: &Outcome) {
    let Some((mn, area)) = only_instruction(c) else {
        return;
    };
    let xcr0 = c.control.xcr0;
    let at = |f: Fault| {
        Some(FaultAt {
            fault: f,
            insn: Some(0),
        })
    };
    // ---- The fault ----
    match p.fault {
        None => {
            let mut o = p.clone();
            o.fault = at(Fault::Ud);
            t.forbidden("#UD added", m, c, &o, &is("insn.faults-only-as-listed"));
            if let Some(a) = area {
                // A #PF two pages below the area: no byte it may access.
                let mut o = p.clone();
                o.fault = at(Fault::Pf {
                    err: 4,
                    addr: a.wrapping_sub(0x2000),
                });
                // XSAVE-family instructions name their region (SDM1 §13.13);
                // the others' accesses are their operand's.
                let want = if save_rules(mn).is_some() || restores(mn) {
                    "mem.pf-within-region"
                } else {
                    "mem.pf"
                };
                t.forbidden(
                    &format!("#PF outside the area ({mn:?})"),
                    m,
                    c,
                    &o,
                    &is(want),
                );
            }
        }
        Some(FaultAt {
            fault,
            insn: Some(0),
        }) => {
            let fam = fault_rule_family(&fault);
            let mut o = p.clone();
            o.fault = None;
            t.forbidden(
                &format!("{} removed ({mn:?})", name(&fault)),
                m,
                c,
                &o,
                &fam,
            );
            if !matches!(fault, Fault::Ud | Fault::Pf { .. }) {
                let mut o = p.clone();
                o.fault = at(Fault::Ud);
                t.forbidden(
                    &format!("{} made #UD ({mn:?})", name(&fault)),
                    m,
                    c,
                    &o,
                    &fam,
                );
            }
        }
        _ => {}
    }
    // ---- GPRs: none of these instructions writes R15 ----
    if !matches!(mn, Mnemonic::Xgetbv) {
        let mut o = p.clone();
        o.gprs[15] ^= 0x100;
        t.forbidden("R15 changed", m, c, &o, &is("gprs.unchanged"));
    }
    if p.fault.is_some() {
        return;
    }
    // ---- Final registers (no fault: no partial state) ----
    let is_restore = restores(mn);
    // MOVQ XMM, r64 and PXOR write XMM registers (SDM2 MOVQ, PXOR).
    let sets_xmm = matches!(mn, Mnemonic::Movq | Mnemonic::Pxor);
    let rfbm = (xcr0
        | if matches!(
            mn,
            Mnemonic::Xrstors | Mnemonic::Xrstors64 | Mnemonic::Xsaves | Mnemonic::Xsaves64
        ) {
            c.control.xss
        } else {
            0
        })
        & (c.gprs[2] << 32 | (c.gprs[0] & 0xffff_ffff));
    let loader = |i: usize| -> &'static str {
        if is_restore {
            let rs = match mn {
                Mnemonic::Fxrstor | Mnemonic::Fxrstor64 => {
                    return if i < 2 {
                        "fxrstor.loads-legacy-region"
                    } else {
                        initial_loader(m, c)
                    }
                }
                Mnemonic::Xrstors | Mnemonic::Xrstors64 => {
                    "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"
                }
                _ => {
                    let a = area.expect("memory operand") - c.memory.base;
                    let x = u64::from_le_bytes(
                        c.memory.bytes[a as usize + 520..a as usize + 528]
                            .try_into()
                            .unwrap(),
                    );
                    if x >> 63 == 1 && m.xsavec {
                        "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"
                    } else {
                        "xrstor.loads-rfbm-by-xstate-bv"
                    }
                }
            };
            if rfbm >> i & 1 == 1 {
                return rs;
            }
        }
        initial_loader(m, c)
    };
    if xcr0 & 2 != 0 {
        let mut o = p.clone();
        o.final_image[160 + 5] ^= 0x5A;
        let want = if sets_xmm {
            "insn.other-semantics"
        } else {
            loader(1)
        };
        t.forbidden(&format!("XMM0 byte changed ({mn:?})"), m, c, &o, &is(want));
    }
    if let Some(s) = layout::standard(m, Xfeatures::from_bits_retain(xcr0)).slot(2) {
        let mut o = p.clone();
        o.final_image[s.offset as usize + 3] ^= 0x5A;
        t.forbidden("YMM_H byte changed", m, c, &o, &is(loader(2)));
    }
    for i in 0..=19usize {
        if xcr0 >> i & 1 == 0 || i == 17 {
            continue;
        }
        let init = init_in_image(m, xcr0, &p.final_image, i, true);
        let bit = p.xinuse.map(|x| x >> i & 1 == 1);
        if !init && bit == Some(true) {
            let mut o = p.clone();
            o.xinuse = o.xinuse.map(|x| x & !(1 << i));
            t.forbidden(
                &format!("XINUSE[{i}] cleared over non-init"),
                m,
                c,
                &o,
                &is("xinuse.zero-only-in-init"),
            );
            break;
        }
        if init && bit == Some(false) && !m.quirks.xinuse_noise {
            let mut o = p.clone();
            o.xinuse = o.xinuse.map(|x| x | 1 << i);
            t.allowed(
                &format!("XINUSE[{i}] set over init"),
                m,
                c,
                &o,
                "xinuse-1-over-init",
            );
            break;
        }
    }
    for i in 0..=19usize {
        if xcr0 >> i & 1 == 0 || i == 17 {
            continue;
        }
        let bv = u64::from_le_bytes(p.final_image[512..520].try_into().unwrap());
        if bv >> i & 1 == 1 && !init_in_image(m, xcr0, &p.final_image, i, false) {
            let mut o = p.clone();
            o.final_image[512 + i / 8] ^= 1 << (i % 8);
            t.forbidden(
                &format!("final XSTATE_BV[{i}] cleared over non-init"),
                m,
                c,
                &o,
                &is("xinuse.zero-only-in-init"),
            );
            break;
        }
    }
    if !p.supervisor.is_empty() {
        // The first supervisor component (CET_U) is XRSTORS's: this case's
        // (RFBM[11]) or the runner's initial one (a compacted image at CPL 0).
        let xrstors_here =
            matches!(mn, Mnemonic::Xrstors | Mnemonic::Xrstors64) && rfbm & 0x800 != 0;
        let initial = c.control.cpl == 0 && m.xsaves && c.init_xcomp_bv() >> 63 == 1;
        let want = if xrstors_here || initial {
            "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv"
        } else {
            "state.unchanged-by-others"
        };
        let mut o = p.clone();
        o.supervisor[0] ^= 0x10;
        t.forbidden("supervisor byte changed", m, c, &o, &is(want));
    }
    // ---- A completed save's area ----
    let (Some((save, header, compacted)), Some(a)) = (save_rules(mn), area) else {
        return;
    };
    let Some(off) = a.checked_sub(c.memory.base).map(|o| o as usize) else {
        return;
    };
    let old = &c.memory.bytes;
    let mem = &p.memory;
    let n = mem.len();
    // A byte the save writes, changed to neither what it writes nor what was there.
    let written = (0..n)
        .find(|&k| ((off + 160..off + 416).contains(&k) || k >= off + 576) && mem[k] != old[k]);
    if let Some(k) = written {
        let mut o = p.clone();
        o.memory[k] = mem[k] ^ 0x5A;
        if o.memory[k] != old[k] {
            t.forbidden(
                &format!("{mn:?} byte {:#x} changed", k - off),
                m,
                c,
                &o,
                &is(save),
            );
        }
    }
    // A byte no save writes.
    if off + 480 < n {
        let mut o = p.clone();
        o.memory[off + 480] ^= 0x5A;
        t.forbidden(
            &format!("{mn:?} legacy byte 480 changed"),
            m,
            c,
            &o,
            &is("save.writes-only-saved"),
        );
    }
    let Some(header) = header else {
        return;
    };
    if off + 520 > n {
        return;
    }
    let bv = u64::from_le_bytes(mem[off + 512..off + 520].try_into().unwrap());
    let old_bv = u64::from_le_bytes(old[off + 512..off + 520].try_into().unwrap());
    let flip = |i: usize| {
        let mut o = p.clone();
        o.memory[off + 512 + i / 8] ^= 1 << (i % 8);
        o
    };
    // A bit outside RFBM: XSAVE/XSAVEOPT keep it, XSAVEC/XSAVES write 0.
    if let Some(i) = (0..63usize).find(|&i| rfbm >> i & 1 == 0) {
        let expect = if compacted { 0 } else { old_bv >> i & 1 };
        assert_eq!(
            bv >> i & 1,
            expect,
            "{}: {mn:?} bit {i} outside RFBM",
            m.name
        );
        t.forbidden(
            &format!("{mn:?} XSTATE_BV[{i}] outside RFBM flipped"),
            m,
            c,
            &flip(i),
            &is(header),
        );
    }
    // Bits of RFBM: over non-init contents (as the save found them: the
    // capture after it shows the same state), or (compacted) over an init
    // component whose written bytes differ from the area's old bytes.
    // XSAVEOPT, XSAVEC and XSAVES have the init optimization (bit and bytes
    // one choice); XSAVE writes every RFBM component (the bit is free alone
    // over init contents).
    let init_opt = compacted || matches!(mn, Mnemonic::Xsaveopt | Mnemonic::Xsaveopt64);
    let lay = if compacted {
        layout::compacted(m, Xfeatures::from_bits_retain(rfbm))
    } else {
        layout::standard(m, Xfeatures::from_bits_retain(xcr0))
    };
    let armed = c.control.xfd & xcr0;
    for i in (0..=19usize).filter(|&i| rfbm >> i & 1 == 1 && armed >> i & 1 == 0) {
        let supervisor = m.component(i).is_some_and(|d| d.supervisor);
        let init = if supervisor {
            None
        } else {
            Some(init_in_image(m, xcr0, &p.final_image, i, compacted))
        };
        if init == Some(false) && bv >> i & 1 == 1 {
            t.forbidden(
                &format!("{mn:?} XSTATE_BV[{i}] cleared over non-init"),
                m,
                c,
                &flip(i),
                &is(header),
            );
            continue;
        }
        let (Some(true), true) = (init, i >= 2) else {
            continue;
        };
        if !init_opt {
            if bv >> i & 1 == 0 {
                t.allowed(
                    &format!("{mn:?} XSTATE_BV[{i}] set over init"),
                    m,
                    c,
                    &flip(i),
                    "xinuse-1-over-init",
                );
            }
            continue;
        }
        let Some(s) = lay.slot(i) else { continue };
        let r = off + s.offset as usize..off + (s.offset + s.size) as usize;
        if r.end > n {
            continue;
        }
        let init_v = init_bytes(i, s.size as usize);
        if old[r.clone()] == init_v[..] {
            continue; // written or not, the bytes look the same
        }
        if mem[r.clone()] == init_v[..] && bv >> i & 1 == 1 {
            // (1, written): its bit alone cleared, (0, written).
            t.forbidden(
                &format!("{mn:?} XSTATE_BV[{i}] cleared over written init"),
                m,
                c,
                &flip(i),
                &is(header),
            );
        } else if mem[r.clone()] == old[r.clone()] && bv >> i & 1 == 0 {
            // (0, not written): the bit alone set, (1, not written) [no modified
            // optimization: the area is not the one XRSTOR_INFO names].
            t.forbidden(
                &format!("{mn:?} XSTATE_BV[{i}] set over unwritten init"),
                m,
                c,
                &flip(i),
                &is(header),
            );
            // The bytes alone written, (0, written).
            let mut o = p.clone();
            o.memory[r.clone()].copy_from_slice(&init_v);
            // Bit and bytes are one choice: either rule describes the break.
            t.forbidden(
                &format!("{mn:?} component {i} written with XSTATE_BV[{i}] = 0"),
                m,
                c,
                &o,
                &either(header, save),
            );
            // Both: (1, written): XINUSE[i] = 1 over init contents.
            let mut o = flip(i);
            o.memory[r].copy_from_slice(&init_v);
            t.allowed(
                &format!("{mn:?} component {i} written with its bit"),
                m,
                c,
                &o,
                "xinuse-1-over-init",
            );
        }
    }
}

#[test]
fn forbidden_mutations_of_predictions_are_rejected_with_their_rule() {
    let mut total = Tally::default();
    for m in CpuModel::builtin_all() {
        let mut t = Tally::default();
        let controls = if m.xsaves {
            vec![Control::user(&m), Control::kernel(&m)]
        } else {
            vec![Control::user(&m)]
        };
        for control in controls {
            let target = Target {
                model: m.clone(),
                control,
            };
            for i in 0..CASES {
                let c = generate(&target, 13, i);
                let Ok(p) = predict(&m, &c) else { continue };
                mutate(&mut t, &m, &c, &p);
            }
        }
        println!(
            "{}: {} forbidden mutations tried, {} rejected; {} allowed tried, {} inside",
            m.name, t.tried, t.rejected, t.allowed_tried, t.allowed_inside
        );
        total.tried += t.tried;
        total.rejected += t.rejected;
        total.allowed_tried += t.allowed_tried;
        total.allowed_inside += t.allowed_inside;
        for (k, v) in t.per_rule {
            *total.per_rule.entry(k).or_default() += v;
        }
        for (k, v) in t.per_kind {
            *total.per_kind.entry(k).or_default() += v;
        }
        total.failures.extend(t.failures);
    }
    println!(
        "all models: {} forbidden mutations tried, {} rejected, {} with the rule expected; {} allowed tried, {} inside",
        total.tried,
        total.rejected,
        total.per_rule.values().sum::<u32>(),
        total.allowed_tried,
        total.allowed_inside
    );
    for (k, v) in &total.per_rule {
        println!("  {v:6}  {k}");
    }
    println!("mutations by kind:");
    for (k, v) in &total.per_kind {
        println!("  {v:6}  {k}");
    }
    for f in total.failures.iter().take(400) {
        println!("FAIL {f}");
    }
    assert!(
        total.failures.is_empty(),
        "{} failures",
        total.failures.len()
    );
    // Every kind of mutation met at least once.
    for rule in [
        "insn.faults-only-as-listed",
        "mem.pf-within-region",
        "gprs.unchanged",
        "xinuse.zero-only-in-init",
        "save.writes-only-saved",
        "xsave.header-xstate-bv-rmw",
        "xsavec.header-is-rfbm-and-xinuse",
        "xsaves.header-is-rfbm-and-xinuse",
        "xsave.saves-rfbm",
        "xsavec.saves-rfbm-and-xinuse",
        "xrstor.loads-rfbm-by-xstate-bv",
    ] {
        assert!(
            total.per_rule.get(rule).is_some_and(|&n| n > 0),
            "no mutation named {rule}"
        );
    }
    assert!(total.allowed_tried > 0);
}
