//! Ring-0 cases (XSAVES/XRSTORS with CET_U and CET_S) on the three hosts of
//! `xsave_native::ring0`, judged against xsave_emu's prediction for the host's
//! model and against the envelope. Each host runs where it is installed; the
//! tests print what they skip.
//!
//! Bochs findings (each from the SDM rule named; see `BOCHS_FINDINGS`):
//! - B1 XSAVES/XSAVEC walk the compacted layout from offset 160 with SSE
//!   counted as a 256-byte component: the first extended component of RFBM lands
//!   at 416 (SSE in RFBM) or 160 (not), instead of 576 (SDM1 §13.4.3).
//! - B2 XINUSE[11] (CET_U) inverted: "in use" when IA32_U_CET = IA32_PL3_SSP = 0
//!   and "init" otherwise (SDM1 §13.6: XINUSE[11] = 0 only if both are 0).
//! - B3 XINUSE[12] (CET_S) looks at IA32_PL0_SSP only (SDM1 §13.6: all three).
//! - B4 XRSTORS of a compacted image with XSTATE_BV[1] = 0 loads MXCSR from the
//!   image instead of 1F80H (SDM2 XRSTOR compacted form: SSE init sets MXCSR to
//!   1F80H).
//! - B5 XRSTORS walks the compacted layout by RFBM, not by XCOMP_BV (SDM1
//!   §13.8.2: offsets follow XCOMP_BV[62:0]); components of XCOMP_BV outside
//!   RFBM shift nothing, components of RFBM outside XCOMP_BV shift the rest.
//! - B6 XRSTORS of a CET value WRMSR would refuse (non-canonical SSP, SSP bits
//!   1:0, IA32_U_CET bits 9:6, SUPPRESS with TRACKER) does not #GP: the MSR keeps
//!   its old value (SDM1 §13.12: #GP if XRSTORS would load an unsupported value).

use std::collections::BTreeMap;
use xsave_emu::case::ARENA_BASE;
use xsave_emu::layout;
use xsave_emu::memory::Memory;
use xsave_emu::{check, predict, Case, Control, CpuModel, Fault, FaultAt, Outcome, Xfeatures};
use xsave_native::ring0::{self, bochs::Target, Host, Ring0Run};

const XCR0: u64 = 0x7;
const XSS: u64 = 0x1800;
const XSAVES_RDI: [u8; 4] = [0x48, 0x0F, 0xC7, 0x2F];
const XRSTORS_RDI: [u8; 4] = [0x48, 0x0F, 0xC7, 0x1F];
const XSAVE_RDI: [u8; 4] = [0x48, 0x0F, 0xAE, 0x27];
const XRSTOR_RDI: [u8; 4] = [0x48, 0x0F, 0xAE, 0x2F];
const XSAVEC_RDI: [u8; 4] = [0x48, 0x0F, 0xC7, 0x27];
/// RSI = RDI + 0x1000 (lea rsi, [rdi+0x1000]) then XSAVES64 [rsi].
const XSAVES_RSI: [u8; 4] = [0x48, 0x0F, 0xC7, 0x2E];

fn bochs_model() -> CpuModel {
    CpuModel::builtin("bochs-2.7-tigerlake").unwrap()
}

/// Register contents used to fill images: CET values the SDM accepts.
#[derive(Clone, Copy)]
struct Values {
    u_cet: u64,
    pl3: u64,
    pl: [u64; 3],
}
const GOOD: Values = Values {
    u_cet: 0x4,
    pl3: 0x7000,
    pl: [0x1000, 0x2004, 0x3000],
};

/// A compacted image for `xcomp` (bit 63 added) with XSTATE_BV `bv`, holding
/// non-init x87 (FCW 027FH), XMM0, YMM0_H and the CET values of `v`.
fn compacted(model: &CpuModel, xcomp: u64, bv: u64, v: Values) -> Vec<u8> {
    let lay = layout::compacted(model, Xfeatures::from_bits_retain(xcomp));
    let mut img = vec![0u8; (lay.size as usize).max(576)];
    img[0..2].copy_from_slice(&0x027Fu16.to_le_bytes());
    img[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    img[160..176].copy_from_slice(&[0x11; 16]);
    img[512..520].copy_from_slice(&bv.to_le_bytes());
    img[520..528].copy_from_slice(&(xcomp | 1 << 63).to_le_bytes());
    for s in &lay.slots {
        let o = s.offset as usize;
        let q = |img: &mut Vec<u8>, k: usize, x: u64| {
            img[o + 8 * k..o + 8 * k + 8].copy_from_slice(&x.to_le_bytes())
        };
        match s.index {
            2 => img[o..o + 16].copy_from_slice(&[0x33; 16]),
            11 => {
                q(&mut img, 0, v.u_cet);
                q(&mut img, 1, v.pl3);
            }
            12 => {
                for k in 0..3 {
                    q(&mut img, k, v.pl[k]);
                }
            }
            _ => {}
        }
    }
    img
}

fn kernel_case(model: &CpuModel) -> Case {
    let mut ctl = Control::kernel(model);
    ctl.xcr0 = XCR0;
    ctl.xss = XSS;
    let mut c = Case::new(model, ctl);
    c.memory = Memory::new(ARENA_BASE, 2);
    c.gprs[7] = ARENA_BASE;
    c.gprs[6] = ARENA_BASE + 0x1000;
    c
}

/// `rfbm` into EDX:EAX.
fn with_rfbm(mut c: Case, rfbm: u64) -> Case {
    c.gprs[0] = rfbm & 0xFFFF_FFFF;
    c.gprs[2] = rfbm >> 32;
    c
}

/// The ring-0 cases, each with a name.
fn cases(model: &CpuModel) -> Vec<(String, Case)> {
    let all = XCR0 | XSS;
    let full = compacted(model, all, all, GOOD);
    let mut v = Vec::new();
    // XSAVES of every RFBM subset of XCR0 | IA32_XSS (5 components: 32 subsets).
    let comps = [0u64, 1, 2, 11, 12];
    for m in 0..32u64 {
        let rfbm: u64 = (0..5)
            .filter(|k| m >> k & 1 == 1)
            .map(|k| 1 << comps[k])
            .sum();
        let mut c = with_rfbm(kernel_case(model), rfbm);
        c.init = full.clone();
        c.code = XSAVES_RDI.to_vec();
        v.push((format!("xsaves rfbm={rfbm:#x}"), c));
    }
    // XRSTORS of every RFBM subset from an image in the arena.
    for m in 0..32u64 {
        let rfbm: u64 = (0..5)
            .filter(|k| m >> k & 1 == 1)
            .map(|k| 1 << comps[k])
            .sum();
        let mut c = with_rfbm(kernel_case(model), rfbm);
        c.memory.bytes[..full.len()].copy_from_slice(&full);
        c.code = XRSTORS_RDI.to_vec();
        v.push((format!("xrstors rfbm={rfbm:#x}"), c));
    }
    // XCOMP_BV with and without CET_S: a guest fpstate (XCR0 | CET_U | CET_S)
    // and a normal one (XCR0 | CET_U), restored with RFBM = all, then saved.
    for (name, xcomp) in [("guest fpstate", all), ("normal fpstate", XCR0 | 1 << 11)] {
        let mut c = with_rfbm(kernel_case(model), !0);
        let img = compacted(model, xcomp, xcomp, GOOD);
        c.memory.bytes[..img.len()].copy_from_slice(&img);
        c.code = [XRSTORS_RDI, XSAVES_RSI].concat();
        v.push((format!("xrstors+xsaves {name}"), c));
        let mut c = with_rfbm(kernel_case(model), xcomp);
        c.init = full.clone();
        c.code = XSAVES_RDI.to_vec();
        v.push((format!("xsaves {name}"), c));
    }
    // The init optimization on CET_S.
    for (name, pl) in [
        ("all zero", [0, 0, 0]),
        ("pl0 only", [0x1000, 0, 0]),
        ("pl1 only", [0, 0x2000, 0]),
        ("pl2 only", [0, 0, 0x3000]),
    ] {
        let vals = Values { pl, ..GOOD };
        let mut c = with_rfbm(kernel_case(model), !0);
        c.init = compacted(model, all, all, vals);
        c.code = XSAVES_RDI.to_vec();
        v.push((format!("cet_s init opt {name}"), c));
    }
    // The init optimization on CET_U (values zero / not).
    for (name, u, p3) in [
        ("cet_u zero", 0, 0),
        ("cet_u u_cet only", 4, 0),
        ("cet_u pl3 only", 0, 0x7000),
    ] {
        let vals = Values {
            u_cet: u,
            pl3: p3,
            ..GOOD
        };
        let mut c = with_rfbm(kernel_case(model), !0);
        c.init = compacted(model, all, all, vals);
        c.code = XSAVES_RDI.to_vec();
        v.push((name.to_string(), c));
    }
    // The modified optimization: XRSTORS then XSAVES at the same address, with
    // the CET_S bytes overwritten in between (mov [rdi+off], rbx).
    {
        let lay = layout::compacted(model, Xfeatures::from_bits_retain(all));
        let off = lay.slot(12).unwrap().offset;
        let mut c = with_rfbm(kernel_case(model), !0);
        c.memory.bytes[..full.len()].copy_from_slice(&full);
        c.gprs[3] = 0xDEAD_0000;
        let mut code = XRSTORS_RDI.to_vec();
        code.extend_from_slice(&[0x48, 0x89, 0x9F]);
        code.extend_from_slice(&off.to_le_bytes());
        code.extend_from_slice(&XSAVES_RDI);
        c.code = code;
        v.push(("modified optimization same address".into(), c));
    }
    // Every #GP of XRSTORS (from the arena, so the fault is at instruction 0).
    let mut gp = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut img = full.clone();
        f(&mut img);
        let mut c = with_rfbm(kernel_case(model), !0);
        c.memory.bytes[..img.len()].copy_from_slice(&img);
        c.code = XRSTORS_RDI.to_vec();
        v.push((format!("xrstors #GP {name}"), c));
    };
    let set = |img: &mut Vec<u8>, o: usize, x: u64| img[o..o + 8].copy_from_slice(&x.to_le_bytes());
    let lay = layout::compacted(model, Xfeatures::from_bits_retain(all));
    let cu = lay.slot(11).unwrap().offset as usize;
    let cs = lay.slot(12).unwrap().offset as usize;
    gp("xcomp_bv[63]=0", &|i| set(i, 520, all));
    gp("xcomp_bv bit 9 outside xcr0|xss", &|i| {
        set(i, 520, all | 1 << 9 | 1 << 63)
    });
    gp("xcomp_bv bit 13 outside xcr0|xss", &|i| {
        set(i, 520, all | 1 << 13 | 1 << 63)
    });
    gp("xstate_bv not in xcomp_bv", &|i| {
        set(i, 520, (all & !(1 << 11)) | 1 << 63);
        set(i, 512, all)
    });
    gp("header byte 16", &|i| i[528] = 1);
    gp("header byte 63", &|i| i[575] = 1);
    gp("pl0_ssp non-canonical", &|i| {
        set(i, cs, 0x0000_8000_0000_1000)
    });
    gp("pl1_ssp bit 0", &|i| set(i, cs + 8, 0x2001));
    gp("pl2_ssp bit 1", &|i| set(i, cs + 16, 0x3002));
    gp("pl3_ssp non-canonical", &|i| {
        set(i, cu + 8, 0xFFFF_0000_0000_0000)
    });
    gp("u_cet bits 9:6", &|i| set(i, cu, 0x40));
    gp("u_cet suppress+tracker", &|i| set(i, cu, 0xC00));
    // The same values the SDM accepts: bit 2 of an SSP, canonical high half.
    gp("(accepted) pl1_ssp bit 2 and high canonical", &|i| {
        set(i, cs + 8, 0x2004);
        set(i, cs + 16, 0xFFFF_8000_0000_3000)
    });
    // XCOMP_BV without CET_U (a non-guest layout), RFBM = everything: CET_S
    // follows AVX directly (SDM1 §13.8.2: offsets by XCOMP_BV).
    {
        let xcomp = all & !(1 << 11);
        let img = compacted(model, xcomp, xcomp, GOOD);
        let mut c = with_rfbm(kernel_case(model), !0);
        c.memory.bytes[..img.len()].copy_from_slice(&img);
        c.code = XRSTORS_RDI.to_vec();
        v.push(("xrstors xcomp_bv without cet_u, rfbm all".into(), c));
    }
    // SSE initialized by XRSTORS (XSTATE_BV[1] = 0) with MXCSR field 1F00H:
    // MXCSR becomes 1F80H (SDM2 XRSTOR, compacted form).
    {
        let mut img = full.clone();
        img[24..28].copy_from_slice(&0x1F00u32.to_le_bytes());
        img[512..520].copy_from_slice(&(all & !2).to_le_bytes());
        let mut c = with_rfbm(kernel_case(model), !0);
        c.memory.bytes[..img.len()].copy_from_slice(&img);
        c.code = XRSTORS_RDI.to_vec();
        v.push(("xrstors sse init with mxcsr field 1f00".into(), c));
    }
    // XSAVES and XRSTORS at CPL 3: #GP(0). The initial image is standard form
    // (loaded with XRSTOR at CPL 3).
    for (name, code) in [("xsaves", XSAVES_RDI), ("xrstors", XRSTORS_RDI)] {
        let mut c = with_rfbm(kernel_case(model), !0);
        c.control.cpl = 3;
        c.memory.bytes[..full.len()].copy_from_slice(&full);
        c.code = code.to_vec();
        v.push((format!("{name} at cpl 3"), c));
    }
    v
}

/// Field-level difference summary between two outcomes.
fn diff(p: &Outcome, o: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    if p.fault != o.fault {
        d.push(format!("fault {:?} vs {:?}", p.fault, o.fault));
    }
    if p.gprs != o.gprs {
        d.push("gprs".into());
    }
    if p.xinuse != o.xinuse {
        d.push(format!("xinuse {:x?} vs {:x?}", p.xinuse, o.xinuse));
    }
    if p.supervisor != o.supervisor {
        d.push(format!(
            "supervisor {:02x?} vs {:02x?}",
            p.supervisor, o.supervisor
        ));
    }
    for (what, a, b) in [
        ("final", &p.final_image, &o.final_image),
        ("memory", &p.memory, &o.memory),
    ] {
        let bad: Vec<usize> = (0..a.len().min(b.len()))
            .filter(|&k| a[k] != b[k])
            .collect();
        if !bad.is_empty() {
            d.push(format!(
                "{what}[{}..={}] ({} bytes)",
                bad[0],
                bad[bad.len() - 1],
                bad.len()
            ));
        }
    }
    d
}

fn run_or_skip(
    host: &Host,
    cases: &[Case],
) -> Option<Vec<Result<Ring0Run, xsave_native::Refusal>>> {
    if let Some(m) = host.missing() {
        println!("SKIP {}: {m}", host.name());
        return None;
    }
    let (_, runs) = ring0::run_detailed(host, cases).expect("ring-0 run");
    Some(runs)
}

fn bochs(spec: &str) -> Host {
    Host::Bochs(Target::parse(spec).unwrap())
}

#[test]
fn bochs_ring0_cases_against_the_model_and_the_envelope() {
    let model = bochs_model();
    let named = cases(&model);
    let cs: Vec<Case> = named.iter().map(|(_, c)| c.clone()).collect();
    let t = std::time::Instant::now();
    let Some(runs) = run_or_skip(&bochs("2.7"), &cs) else {
        return;
    };
    println!("bochs: {} cases in {:?}", cs.len(), t.elapsed());
    let (mut agree, mut inside, mut outside) = (0, 0, 0);
    for ((name, case), r) in named.iter().zip(&runs) {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        let p = predict(&model, case).unwrap();
        let env = check(&model, case, &r.outcome).unwrap();
        let d = diff(&p, &r.outcome);
        if d.is_empty() {
            agree += 1;
        } else if env.inside() {
            inside += 1;
        } else {
            outside += 1;
        }
        println!(
            "{name}: {} | envelope {} | views {:?}",
            if d.is_empty() {
                "agrees".into()
            } else {
                d.join("; ")
            },
            if env.inside() {
                "ok".to_string()
            } else {
                env.to_string()
            },
            r.view_mismatches
        );
    }
    println!("bochs ring-0: {agree} agree with the prediction, {inside} differ inside the envelope, {outside} outside, of {}", named.len());
    let by: BTreeMap<&str, (&Case, &Ring0Run)> = named
        .iter()
        .zip(&runs)
        .map(|((n, c), r)| (n.as_str(), (c, r.as_ref().unwrap())))
        .collect();
    let gp0 = Some(FaultAt {
        fault: Fault::Gp(0),
        insn: Some(0),
    });
    // SDM2 XSAVES/XRSTORS: #GP(0) at CPL > 0. Bochs agrees with the model.
    for n in ["xsaves at cpl 3", "xrstors at cpl 3"] {
        let (c, r) = by[n];
        assert_eq!(r.outcome.fault, gp0, "{n}");
        assert_eq!(r.outcome, predict(&model, c).unwrap(), "{n}");
    }
    // SDM1 §13.12 header checks: #GP(0), as predicted.
    for n in [
        "xrstors #GP xcomp_bv[63]=0",
        "xrstors #GP xcomp_bv bit 9 outside xcr0|xss",
        "xrstors #GP xcomp_bv bit 13 outside xcr0|xss",
        "xrstors #GP header byte 16",
        "xrstors #GP header byte 63",
    ] {
        let (c, r) = by[n];
        assert_eq!(r.outcome.fault, gp0, "{n}");
        assert_eq!(r.outcome, predict(&model, c).unwrap(), "{n}");
    }
    // B6: unsupported CET values: no fault on Bochs.
    // B6: unsupported CET values: no #GP on Bochs; the other values load and
    // the refused MSR keeps its old value (0 here).
    let good = [0x4u64, 0x7000, 0x1000, 0x2004, 0x3000];
    for (n, refused) in [
        ("xrstors #GP pl0_ssp non-canonical", 2),
        ("xrstors #GP pl1_ssp bit 0", 3),
        ("xrstors #GP pl2_ssp bit 1", 4),
        ("xrstors #GP pl3_ssp non-canonical", 1),
        ("xrstors #GP u_cet bits 9:6", 0),
        ("xrstors #GP u_cet suppress+tracker", 0),
    ] {
        let (c, r) = by[n];
        assert_eq!(
            predict(&model, c).unwrap().fault,
            gp0,
            "{n}: the model's #GP"
        );
        assert_eq!(r.outcome.fault, None, "{n}: Bochs 2.7 does not fault");
        let want: Vec<Option<u64>> = (0..5)
            .map(|k| Some(if k == refused { 0 } else { good[k] }))
            .collect();
        assert_eq!(r.cet_msrs.to_vec(), want, "{n}");
    }
    // B1: XSAVES with RFBM = AVX writes YMM0_H at 160 (the walk starts at 160
    // and SSE is not in RFBM), with RFBM = SSE|AVX at 416; the SDM says 576.
    let (_, r) = by["xsaves rfbm=0x4"];
    assert_eq!(&r.outcome.memory[160..176], &[0x33; 16]);
    assert_eq!(&r.outcome.memory[576..592], &[0; 16]);
    let (_, r) = by["xsaves rfbm=0x6"];
    assert_eq!(&r.outcome.memory[416..432], &[0x33; 16]);
    assert_eq!(&r.outcome.memory[576..592], &[0; 16]);
    // B2: CET_U with U_CET = 4: XSTATE_BV[11] = 0 and nothing saved.
    let (c, r) = by["cet_u u_cet only"];
    let bv = |o: &Outcome| u64::from_le_bytes(o.memory[512..520].try_into().unwrap());
    assert_eq!(bv(&predict(&model, c).unwrap()) >> 11 & 1, 1);
    assert_eq!(bv(&r.outcome) >> 11 & 1, 0);
    // B2 again: CET_U all zero reads as in use.
    let (_, r) = by["cet_u zero"];
    assert_eq!(bv(&r.outcome) >> 11 & 1, 1);
    // B3: CET_S with only PL1_SSP set: XSTATE_BV[12] = 0; with only PL0_SSP: 1.
    let (c, r) = by["cet_s init opt pl1 only"];
    assert_eq!(bv(&predict(&model, c).unwrap()) >> 12 & 1, 1);
    assert_eq!(bv(&r.outcome) >> 12 & 1, 0);
    assert_eq!(bv(&by["cet_s init opt pl0 only"].1.outcome) >> 12 & 1, 1);
    // The header #GP: XSTATE_BV not a subset of XCOMP_BV.
    assert_eq!(
        by["xrstors #GP xstate_bv not in xcomp_bv"].1.outcome.fault,
        gp0
    );
    // B5: XRSTORS reads CET_S where XCOMP_BV puts it only when RFBM = XCOMP_BV.
    // XCOMP_BV = x87|SSE|AVX|CET_S: the SDM puts CET_S at 832; Bochs, walking
    // RFBM (which has CET_U), reads it at 848: PL0_SSP := the image's PL2_SSP
    // (3000H), PL1/PL2_SSP := the zeros past the image.
    let (c, r) = by["xrstors xcomp_bv without cet_u, rfbm all"];
    assert_eq!(
        predict(&model, c).unwrap().supervisor[16..40],
        [0x1000u64, 0x2004, 0x3000]
            .iter()
            .flat_map(|q| q.to_le_bytes())
            .collect::<Vec<u8>>()[..]
    );
    assert_eq!(r.cet_msrs[2..], [Some(0x3000), Some(0), Some(0)]);
    // B5 again, from the subsets: RFBM = x87|SSE|AVX|CET_S over XCOMP_BV =
    // everything: Bochs loads CET_S from 832 (the SDM's CET_U: 4, 7000H) and
    // 848 (1000H).
    let (_, r) = by["xrstors rfbm=0x1007"];
    assert_eq!(r.cet_msrs[2..], [Some(4), Some(0x7000), Some(0x1000)]);
    // B4: MXCSR after SSE is initialized by XRSTORS.
    let (c, r) = by["xrstors sse init with mxcsr field 1f00"];
    let mxcsr = |o: &Outcome| u32::from_le_bytes(o.final_image[24..28].try_into().unwrap());
    assert_eq!(mxcsr(&predict(&model, c).unwrap()), 0x1F80);
    assert_eq!(mxcsr(&r.outcome), 0x1F00);
    // The RDMSR view after a good XRSTORS: what was loaded.
    let (_, r) = by["xrstors rfbm=0x1807"];
    assert_eq!(
        r.cet_msrs,
        [
            Some(4),
            Some(0x7000),
            Some(0x1000),
            Some(0x2004),
            Some(0x3000)
        ]
    );
}

#[test]
fn qemu_system_ring0_offers_no_xsaves_yet_runs_them() {
    if let Some(m) = ring0::qemu::missing() {
        println!("SKIP qemu-system: {m}");
        return;
    }
    let info = ring0::boot_info(&Host::QemuSystem).expect("qemu boot");
    let model = info.model("qemu-system");
    // QEMU TCG -cpu max: CPUID.(0DH,1):EAX = 5 (XSAVEOPT, XGETBV1): no XSAVEC,
    // no XSAVES; the same XSAVE model as QEMU 7.2's user mode.
    assert_eq!(info.leaf(0xD, 1)[0], 5);
    assert_eq!(model.xcr0_supported, 0x21F);
    let old = CpuModel::builtin("qemu-max-7.2").unwrap();
    let d: Vec<String> = old
        .differences(&model)
        .into_iter()
        .filter(|l| {
            [
                "features",
                "xcr0_supported",
                "xss_supported",
                "std_size_max",
                "component",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect();
    assert!(
        d.is_empty(),
        "QEMU 10 -cpu max differs from qemu-max-7.2 in leaf 0DH: {d:?}"
    );
    let mut ctl = Control::kernel(&model);
    ctl.xcr0 = 0x7;
    let base = |code: [u8; 4]| {
        let mut c = Case::new(&model, ctl);
        c.code = code.to_vec();
        c.gprs[0] = !0;
        c.gprs[2] = !0;
        c.gprs[7] = ARENA_BASE;
        c
    };
    // Instructions CPUID does not advertise must #UD (SDM2: CPUID.(0DH,1):EAX[1], [3]).
    let cs = vec![
        base(XSAVE_RDI),
        base([0x48, 0x0F, 0xAE, 0x37]), // XSAVEOPT64 [rdi]
        base(XRSTOR_RDI),
        base(XSAVEC_RDI),
        base(XSAVES_RDI),
        base(XRSTORS_RDI),
    ];
    let runs = ring0::run(&Host::QemuSystem, &cs).expect("qemu run");
    // Finding Q1 (QEMU 10.0.2 TCG, -cpu max): XSAVEC, XSAVES and XRSTORS run at
    // CPL 0 without #UD although CPUID.(0DH,1):EAX[1] and [3] are 0 (SDM2: #UD
    // if the CPUID bit is 0), and write nothing (the arena stays zero). The
    // model predicts #UD for them. XSAVE, XSAVEOPT and XRSTOR differ from the
    // prediction only where the SDM leaves room (XINUSE kept at 1): inside the
    // envelope.
    let ud = Some(FaultAt {
        fault: Fault::Ud,
        insn: Some(0),
    });
    for (k, (c, r)) in cs.iter().zip(&runs).enumerate() {
        let o = r.as_ref().unwrap();
        let p = predict(&model, c).unwrap();
        assert_eq!(o.fault, None, "case {k}: QEMU runs it");
        assert_eq!(p.fault, if k >= 3 { ud } else { None }, "case {k}: the SDM");
        if k >= 3 {
            assert!(o.memory.iter().all(|&b| b == 0), "case {k}: no write");
        } else {
            let j = check(&model, c, o).unwrap();
            assert!(j.inside(), "case {k}: envelope: {j}");
        }
    }
    for (k, (c, r)) in cs.iter().zip(&runs).enumerate() {
        let o = r.as_ref().unwrap();
        let p = predict(&model, c).unwrap();
        println!(
            "qemu case {k}: fault {:?}, predicted {:?}, differences {:?}",
            o.fault,
            p.fault,
            diff(&p, o)
        );
    }
}

#[test]
fn kvm_reports_its_capability_and_never_fakes_results() {
    if !std::path::Path::new("/dev/kvm").exists() {
        println!("SKIP kvm: /dev/kvm is absent");
        return;
    }
    let p = ring0::probe(&Host::Kvm);
    println!("kvm probe: {p:?}");
    let model = bochs_model();
    let named = cases(&model);
    let cs: Vec<Case> = named.iter().take(4).map(|(_, c)| c.clone()).collect();
    let (_, runs) = match ring0::run_detailed(&Host::Kvm, &cs) {
        Ok(r) => r,
        Err(e) => {
            println!("SKIP kvm: {e}");
            return;
        }
    };
    for r in &runs {
        match r {
            Ok(run) => {
                // Silicon: the prediction of the host's own model must hold in the envelope.
                assert!(p.is_ok(), "results although the probe said {p:?}");
                let _ = run;
            }
            Err(e) => {
                println!("kvm: {}", e.reason);
                assert!(e.reason.starts_with("cannot run here: "), "{}", e.reason);
                if p.is_err() {
                    assert!(e.reason.contains("KVM_GET_SUPPORTED_CPUID"));
                }
            }
        }
    }
    // kvm_pvm (silicon.md): WRMSR IA32_XSS raises #GP(0) and XSAVE-family
    // instructions at guest CPL 0 end KVM_RUN with an internal error.
    if let (true, Err(e)) = (
        std::path::Path::new("/sys/module/kvm_pvm").exists(),
        &runs[0],
    ) {
        let reason = &e.reason;
        let no_xss = format!("{p:?}").contains("(IA32_XSS bits 0x0)");
        assert!(
            !no_xss
                || reason.contains("WRMSR IA32_XSS (0xDA0) <- the case's IA32_XSS raised #GP(0x0)"),
            "{reason}"
        );
        assert!(reason.contains("KVM_EXIT_INTERNAL_ERROR"), "{reason}");
    }
}

#[test]
fn bochs_2_7_model_from_cpuid_and_wrmsr_is_the_model_file() {
    let host = bochs("2.7");
    if let Some(m) = host.missing() {
        println!("SKIP bochs: {m}");
        return;
    }
    let info = ring0::boot_info(&host).expect("bochs boot");
    let measured = ring0::host_model(&host, &info);
    println!("{}: {}", measured.name, measured.description);
    // Bochs 2.7 reports (0DH,1):ECX = 0 and subleaves 11, 12 as zeros (misspelt
    // BX_SUPPPORT_CET in its cpuid.cc) although WRMSR IA32_XSS accepts 1800H and
    // XSAVES/XRSTORS handle CET_U and CET_S: the model as implemented takes the
    // accepted bits and the SDM's sizes (16, 24 bytes), which the file wrote by hand.
    assert_eq!(info.leaf(0xD, 0), [0x2E7, 0x240, 0xAC0, 0]);
    assert_eq!(info.leaf(0xD, 1), [0xF, 0, 0, 0]);
    assert_eq!(info.leaf(0xD, 9), [0, 0, 0, 0]);
    assert_eq!(info.xss_accepted, Some(0x1800));
    assert_eq!(measured.name, "bochs-2.7-tigerlake");
    assert_eq!(bochs_model().differences(&measured), Vec::<String>::new());
    assert_eq!(bochs_model().quirks, measured.quirks);
}

/// The Bochs builds the tests run on, each where it is installed.
const BOCHS_VERSIONS: [&str; 3] = ["2.7", "3.0", "head"];

#[test]
fn control_bits_apply_after_the_initial_load_on_each_bochs() {
    for v in BOCHS_VERSIONS {
        let host = bochs(v);
        if let Some(m) = host.missing() {
            println!("SKIP bochs {v}: {m}");
            continue;
        }
        let info = ring0::boot_info(&host).expect("bochs boot");
        let model = ring0::host_model(&host, &info);
        let case = |cpl: u8, ts: bool, osxsave: bool, code: &[u8]| {
            let mut ctl = Control::kernel(&model);
            ctl.cpl = cpl;
            ctl.cr0_ts = ts;
            ctl.cr4_osxsave = osxsave;
            let mut c = Case::new(&model, ctl);
            // XMM0 non-init in the initial image: loaded whatever the control bits.
            c.set_init_xstate_bv(2);
            c.init[160..176].copy_from_slice(&[0x5A; 16]);
            c.code = code.to_vec();
            c.gprs[0] = !0;
            c.gprs[2] = !0;
            c.gprs[7] = ARENA_BASE;
            c
        };
        let at0 = |f: Fault| {
            Some(FaultAt {
                fault: f,
                insn: Some(0),
            })
        };
        // SDM2 XSAVE/XRSTOR/FXSAVE: #NM if CR0.TS = 1; XGETBV/XSAVE: #UD if
        // CR4.OSXSAVE = 0. The runner's initial XRSTOR(S) runs before either bit
        // applies (xsave_emu::exec::Machine::load_initial), so XMM0 is loaded.
        let cases = [
            (case(0, true, true, &XSAVE_RDI), at0(Fault::Nm)),
            (
                case(0, true, true, &[0x48, 0x0F, 0xAE, 0x07]),
                at0(Fault::Nm),
            ), // fxsave64 [rdi]
            (case(0, false, false, &[0x0F, 0x01, 0xD0]), at0(Fault::Ud)), // xgetbv
            (case(0, false, false, &XSAVE_RDI), at0(Fault::Ud)),
            (case(3, true, true, &XRSTOR_RDI), at0(Fault::Nm)),
            (case(3, false, false, &XSAVE_RDI), at0(Fault::Ud)),
            (case(0, false, true, &XSAVE_RDI), None),
        ];
        let cs: Vec<Case> = cases.iter().map(|(c, _)| c.clone()).collect();
        let runs = ring0::run(&host, &cs).expect("bochs run");
        for (k, ((c, want), r)) in cases.iter().zip(&runs).enumerate() {
            let o = r
                .as_ref()
                .unwrap_or_else(|e| panic!("bochs {v} case {k}: {e}"));
            assert_eq!(o.fault, *want, "bochs {v} case {k}");
            assert_eq!(
                &o.final_image[160..176],
                &[0x5A; 16],
                "bochs {v} case {k}: XMM0"
            );
            assert_eq!(*o, predict(&model, c).unwrap(), "bochs {v} case {k}");
        }
        println!("bochs {v}: {} control-bit cases as predicted", cases.len());
    }
}

/// The model files of Bochs models (emu/models/bochs-*.cpu) are what the
/// image reads from that Bochs now: CPUID as implemented, quirks, paging.
#[test]
fn bochs_model_files_are_what_each_bochs_reports() {
    for m in CpuModel::builtin_all() {
        let Some(spec) = m.name.strip_prefix("bochs-") else {
            continue;
        };
        let spec = spec.replacen('-', ":", 1);
        let host = bochs(&spec);
        if let Some(why) = host.missing() {
            println!("SKIP {}: {why}", m.name);
            continue;
        }
        let info = ring0::boot_info(&host).expect("bochs boot");
        let measured = ring0::host_model(&host, &info);
        assert_eq!(measured.name, m.name);
        assert_eq!(m.differences(&measured), Vec::<String>::new(), "{}", m.name);
        assert_eq!(m.quirks, measured.quirks, "{}", m.name);
        let reparsed = CpuModel::parse(&info.model_file(&measured)).unwrap();
        assert_eq!(reparsed, measured, "{}: model_file round trip", m.name);
        println!("{}: as the file says", m.name);
    }
}

/// AMX at CPL 0 on the Bochs builds with an AMX model: TILECFG and TILEDATA
/// go through the runner's XRSTOR, XSAVE64 and XRSTOR64 from memory.
#[test]
fn amx_state_through_xsave_and_xrstor_on_bochs_sapphire_rapids() {
    for v in ["3.0", "head"] {
        let host = bochs(&format!("{v}:sapphire_rapids"));
        if let Some(m) = host.missing() {
            println!("SKIP bochs {v}: {m}");
            continue;
        }
        let info = ring0::boot_info(&host).expect("bochs boot");
        let model = ring0::host_model(&host, &info);
        assert_eq!(model.xcr0_supported & 0x60000, 0x60000, "{v}: AMX in XCR0");
        let cfg_off = model.component(17).unwrap().offset as usize;
        let data_off = model.component(18).unwrap().offset as usize;
        assert_eq!((cfg_off, data_off), (2752, 2816), "{v}: standard offsets");
        // TILECFG: palette 1, tile 0 with 64 bytes per row (bytes 17:16) and 16 rows (byte 48).
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        cfg[16] = 64;
        cfg[48] = 16;
        let pattern: Vec<u8> = (0..64u8).map(|b| b ^ 0xA5).collect();
        let ctl = Control::kernel(&model);
        let mut c = Case::new(&model, ctl);
        c.set_init_xstate_bv(0x60000);
        c.init[cfg_off..cfg_off + 64].copy_from_slice(&cfg);
        c.init[data_off..data_off + 64].copy_from_slice(&pattern);
        c.memory = Memory::new(ARENA_BASE, 4);
        c.gprs[0] = 0x60000;
        c.gprs[7] = ARENA_BASE;
        c.code = XSAVE_RDI.to_vec();
        // XRSTOR64 of the tile data from the arena (XSTATE_BV = TILECFG | TILEDATA).
        let mut r = c.clone();
        r.set_init_xstate_bv(0);
        r.memory.bytes[512..520].copy_from_slice(&0x60000u64.to_le_bytes());
        r.memory.bytes[cfg_off..cfg_off + 64].copy_from_slice(&cfg);
        r.memory.bytes[data_off + 64..data_off + 128].copy_from_slice(&pattern);
        r.code = XRSTOR_RDI.to_vec();
        let runs = ring0::run(&host, &[c.clone(), r.clone()]).expect("bochs run");
        let o = runs[0].as_ref().expect("xsave case runs");
        let p = predict(&model, &c).unwrap();
        // SDM1 §13.7 / SDM2 XSAVE: every RFBM component is written at its standard
        // offset; TILEDATA row 0 of tile 0 is the loaded pattern, the rest zero.
        assert_eq!(o.fault, None, "{v}");
        assert_eq!(
            &o.memory[data_off..data_off + 64],
            &pattern[..],
            "{v}: TILEDATA saved"
        );
        assert!(
            o.memory[data_off + 64..data_off + 8192]
                .iter()
                .all(|&b| b == 0),
            "{v}"
        );
        assert_eq!(
            &p.memory[cfg_off..cfg_off + 64],
            &cfg[..],
            "{v}: the SDM's TILECFG"
        );
        // B7 (corpus/ring0/bochs-xsavec-tilecfg-rows-colsb-swapped.case): Bochs
        // saves rows at byte 16 and bytes per row at byte 48.
        let mut swapped = cfg;
        swapped[16] = 16;
        swapped[48] = 64;
        assert_eq!(&o.memory[cfg_off..cfg_off + 64], &swapped[..], "{v}: B7");
        // XRSTOR64 loads row 1 of tile 0: the capture's XSAVE shows it.
        let o = runs[1].as_ref().expect("xrstor case runs");
        assert_eq!(o.fault, None, "{v}");
        assert_eq!(
            &o.final_image[data_off + 64..data_off + 128],
            &pattern[..],
            "{v}: TILEDATA loaded"
        );
        assert_eq!(
            o.final_image[data_off..data_off + 64],
            [0u8; 64],
            "{v}: row 0 from memory (zero)"
        );
        println!("bochs {v}: AMX through XSAVE64 and XRSTOR64 at CPL 0");
    }
}
