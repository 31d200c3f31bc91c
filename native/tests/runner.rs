//! The runner itself: XFD's #NM told from #UD without trusting trapno, the
//! host's state given back after every case, refusals, no case kills the process.

mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{Fault, Prot};
use xsave_native::runner::HostRoundtrip;

fn fault_of(c: &xsave_emu::Case) -> Option<Fault> {
    runner()
        .run(c)
        .unwrap_or_else(|r| panic!("refused: {r}"))
        .fault
        .map(|f| f.fault)
}

/// A case whose XRSTOR64 loads TILEDATA (RFBM[18] = XSTATE_BV[18] = 1).
fn tiledata_xrstor() -> Option<xsave_emu::Case> {
    let m = model();
    let armed = runner().control().xfd_armed();
    if armed & (1 << 18) == 0 {
        println!(
            "skipped: TILEDATA is not XFD-armed on this host ({}, XFD {:#x})",
            m.name, armed
        );
        return None;
    }
    let mut c = case(4, asm(|a| a.xrstor64(ptr(rdi))));
    c.memory.bytes[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    c.memory.bytes[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    c.memory.bytes[512..520].copy_from_slice(&(1u64 << 18).to_le_bytes());
    Some(c)
}

fn ud2_case() -> xsave_emu::Case {
    case(1, asm(|a| a.ud2()))
}

/// SDM1 §13.14: XRSTOR with RFBM[i] = XSTATE_BV[i] = 1 on an armed component is
/// #NM; Linux sends SIGILL with a stale trapno. #UD first, then #NM, then #UD
/// again, then #NM twice: each reported exactly.
#[test]
fn xfd_nm_and_ud_in_both_orders() {
    let Some(nm) = tiledata_xrstor() else { return };
    let ud = ud2_case();
    let order = [&ud, &nm, &ud, &nm, &nm, &ud, &ud, &nm];
    for (k, c) in order.iter().enumerate() {
        let want = if std::ptr::eq(*c, &ud) {
            Fault::Ud
        } else {
            Fault::Nm
        };
        assert_eq!(fault_of(c), Some(want), "run {k}");
        agree(&format!("xfd order run {k}"), c);
    }
}

/// After #GP and #PF (trapno 13 and 14 left behind), XFD's #NM is still #NM.
#[test]
fn xfd_nm_after_gp_and_pf() {
    let Some(nm) = tiledata_xrstor() else { return };
    let mut gp = case(4, asm(|a| a.xsave64(ptr(rdi))));
    gp.gprs[7] += 4;
    let mut pf = case(4, asm(|a| a.xsave64(ptr(rdi))));
    pf.memory.prot = vec![Prot::Read; 4];
    assert_eq!(fault_of(&gp), Some(Fault::Gp(0)));
    assert_eq!(fault_of(&nm), Some(Fault::Nm));
    assert!(matches!(fault_of(&pf), Some(Fault::Pf { err: 7, .. })));
    assert_eq!(fault_of(&nm), Some(Fault::Nm));
}

/// A #PF or #GP after a #UD sets the thread's trap number (13 or 14, as its
/// signal reports), so the runner takes no #BP prime before the next SIGILL,
/// and XFD's #NM after it is still #NM; after a #UD straight before it, the
/// fast path (`check_expecting`, given a prediction of #NM or #UD) primes
/// before the run. Each outcome is the careful path's.
#[test]
fn xfd_nm_after_ud_then_pf_or_gp_and_on_the_fast_path() {
    let Some(nm) = tiledata_xrstor() else { return };
    let ud = ud2_case();
    let mut gp = case(4, asm(|a| a.xsave64(ptr(rdi))));
    gp.gprs[7] += 4;
    let mut pf = case(4, asm(|a| a.xsave64(ptr(rdi))));
    pf.memory.prot = vec![Prot::Read; 4];
    let order = [
        &ud, &pf, &nm, &ud, &gp, &nm, &ud, &nm, &nm, &ud, &ud, &pf, &nm,
    ];
    let want = |c: &xsave_emu::Case| fault_of(c).expect("a fault");
    let expected: Vec<Fault> = order.iter().map(|c| want(c)).collect();
    for (k, c) in order.iter().enumerate() {
        let w = if std::ptr::eq(*c, &ud) {
            Fault::Ud
        } else if std::ptr::eq(*c, &nm) {
            Fault::Nm
        } else {
            expected[k]
        };
        assert_eq!(expected[k], w, "careful run {k}");
    }
    let m = model();
    let predicted: Vec<_> = order
        .iter()
        .map(|c| xsave_emu::predict(&m, c).unwrap())
        .collect();
    let mut r = runner();
    let mut b = r.batch().unwrap();
    for (k, (c, p)) in order.iter().zip(&predicted).enumerate() {
        let o = b.check_expecting(c, p, |_| true).unwrap().outcome(p);
        assert_eq!(o.fault.map(|f| f.fault), Some(expected[k]), "fast run {k}");
    }
}

/// A case whose initial image needs an armed component is refused.
#[test]
fn armed_component_in_initial_image_is_refused() {
    let armed = runner().control().xfd_armed();
    if armed == 0 {
        println!("skipped: no XFD-armed component on this host");
        return;
    }
    let mut c = case(1, vec![]);
    c.set_init_xstate_bv(armed);
    let r = runner().run(&c).unwrap_err();
    assert_eq!(r.reason, "needs AMX permission");
}

#[test]
fn refusals_name_the_reason() {
    let mut c = case(1, vec![0x90]);
    c.control.cpl = 0;
    assert_eq!(runner().run(&c).unwrap_err().reason, "needs CPL 0");
    let mut c = case(1, vec![0x90]);
    c.control.xcr0 = 3;
    assert_eq!(
        runner().run(&c).unwrap_err().reason,
        "XCR0 differs from the host's"
    );
    let mut c = case(1, vec![0x90]);
    c.control.cr0_ts = true;
    assert_eq!(runner().run(&c).unwrap_err().reason, "needs CR0.TS = 1");
    let mut c = case(1, vec![0x48, 0x0f]);
    c.code = vec![0x48, 0x0f]; // a truncated instruction
    assert_eq!(
        runner().run(&c).unwrap_err().reason,
        "code does not decode into whole instructions"
    );
    let c = case(1, vec![0x90; 257]);
    assert_eq!(
        runner().run(&c).unwrap_err().reason,
        "code longer than MAX_CODE"
    );
}

/// A pseudo-random host state: x87 registers, XMM/YMM/ZMM and opmask contents,
/// MXCSR with every exception unmasked plus FTZ, DAZ and RC = down, FCW with
/// unmasked exceptions.
fn host_pattern(len: usize) -> Vec<u8> {
    let m = model();
    let ctl = runner().control();
    let mut p = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    p[0..2].copy_from_slice(&0x0272u16.to_le_bytes());
    p[4] = 0xFF;
    for k in 0..8 {
        for b in 0..10 {
            p[32 + 16 * k + b] = rnd();
        }
    }
    let mx = 0xA040u32 & m.mxcsr_mask;
    p[24..28].copy_from_slice(&mx.to_le_bytes());
    for b in &mut p[160..416] {
        *b = rnd();
    }
    let mut bv = 3u64;
    for i in [2usize, 5, 6, 7] {
        if ctl.xcr0 & (1 << i) != 0 {
            let c = m.component(i).unwrap();
            for b in &mut p[c.offset as usize..(c.offset + c.size) as usize] {
                *b = rnd();
            }
            bv |= 1 << i;
        }
    }
    p[512..520].copy_from_slice(&bv.to_le_bytes());
    p
}

/// The host's MXCSR, FCW, x87 and vector registers and XINUSE are exactly what
/// they were before every case: plain, faulting (#UD, #GP, #PF, #NM), setting
/// MXCSR unmasks with FTZ/DAZ, changing x87, SSE, AVX and opmask state, and a
/// case whose initial image the stub's XRSTOR rejects.
#[test]
fn host_state_is_given_back_after_every_case() {
    let len = runner().host_area_size();
    let pattern = host_pattern(len);
    let xcr0 = runner().control().xcr0;
    let mut cases = vec![];
    cases.push(case(4, asm(|a| a.xsave64(ptr(rdi)))));
    cases.push(ud2_case());
    let mut gp = case(4, asm(|a| a.xsave64(ptr(rdi))));
    gp.gprs[7] += 1;
    cases.push(gp);
    let mut pf = case(1, asm(|a| a.xsave64(ptr(rdi))));
    pf.memory.prot[0] = Prot::None;
    cases.push(pf);
    let mut mx = case(
        1,
        asm(|a| {
            a.ldmxcsr(dword_ptr(rdi))?;
            a.mov(rax, 0x1234_5678_9abc_def0u64)?;
            a.movq(xmm3, rax)?;
            a.fninit()?;
            if xcr0 & 0xE6 == 0xE6 {
                a.kmovq(k2, rax)?;
            }
            a.vzeroupper()
        }),
    );
    mx.memory.bytes[0..4].copy_from_slice(&0xE040u32.to_le_bytes());
    cases.push(mx);
    let mut bad_init = case(1, vec![0x90]);
    bad_init.set_init_xstate_bv(1 << 63);
    cases.push(bad_init);
    if let Some(nm) = tiledata_xrstor() {
        cases.push(nm);
    }
    let mut r = runner();
    for round in 0..25 {
        for (k, c) in cases.iter().enumerate() {
            let mut rt = HostRoundtrip::new(&pattern);
            r.run_host_roundtrip(c, &mut rt)
                .unwrap_or_else(|e| panic!("case {k}: refused: {e}"));
            let (b, a) = (rt.before.bytes(), rt.after.bytes());
            let diffs: Vec<usize> = (0..len).filter(|&i| a[i] != b[i]).collect();
            assert!(
                diffs.is_empty(),
                "round {round} case {k}: host state changed at bytes {:?}",
                &diffs[..diffs.len().min(32)]
            );
            assert_eq!(
                &b[24..28],
                &pattern[24..28],
                "the pattern's MXCSR was loaded"
            );
        }
    }
}

/// Faults anywhere in a case, many times over, never end the process, and a
/// fault in the stub's own initial XRSTOR is reported with no instruction.
#[test]
fn faults_are_outcomes() {
    let mut bad_init = case(1, vec![0x90]);
    bad_init.init[520] = 1; // XCOMP_BV bit 0 without bit 63: #GP(0) (SDM2 XRSTOR)
    let o = runner().run(&bad_init).unwrap();
    assert_eq!(
        o.fault,
        Some(xsave_emu::FaultAt {
            fault: Fault::Gp(0),
            insn: None
        })
    );
    assert_eq!(o.gprs, bad_init.gprs);
    let mut pf = case(
        2,
        asm(|a| {
            a.nop()?;
            a.xsave64(ptr(rdi + 0x1000))
        }),
    );
    pf.memory.prot[1] = Prot::None;
    let size = runner().host_area_size() as u64;
    for _ in 0..200 {
        let o = runner().run(&pf).unwrap();
        let f = o.fault.unwrap();
        assert_eq!(f.insn, Some(1));
        match f.fault {
            Fault::Pf { err: 6, addr } => {
                assert!((ARENA_BASE + 0x1000..ARENA_BASE + 0x1000 + size).contains(&addr))
            }
            x => panic!("{x:?}"),
        }
    }
    agree("xsave64 onto an absent page", &pf);
}

/// Faults the model has no outcome for (#BP from INT3: SIGTRAP; #DE from DIV:
/// SIGFPE) are refusals, and the runner goes on working after them.
#[test]
fn faults_outside_the_model_are_refusals() {
    let int3 = case(1, asm(|a| a.int3()));
    let r = runner().run(&int3).unwrap_err();
    assert!(
        r.reason.starts_with("fault outside the model (signal 5,"),
        "{r}"
    );
    let mut de = case(1, asm(|a| a.div(rcx)));
    de.gprs[1] = 0;
    let r = runner().run(&de).unwrap_err();
    assert!(
        r.reason.starts_with("fault outside the model (signal 8,"),
        "{r}"
    );
    let ok = case(4, asm(|a| a.xsave64(ptr(rdi))));
    assert_eq!(fault_of(&ok), None);
}

/// A case that always sleeps (the nanosleep system call, a voluntary context
/// switch) is run again up to the bound and then refused; the runner counts the
/// reruns.
#[test]
fn context_switch_on_every_try_is_refused() {
    let mut c = case(
        1,
        asm(|a| {
            a.mov(eax, 35)?; // nanosleep(rdi = &{0 s, 1000 ns}, rsi = NULL)
            a.syscall()
        }),
    );
    c.memory.bytes[8..16].copy_from_slice(&1000u64.to_le_bytes());
    c.gprs[6] = 0;
    let mut r = runner();
    let (tries, before) = (r.max_tries, r.reruns);
    r.max_tries = 3;
    let res = r.run(&c);
    r.max_tries = tries;
    assert_eq!(res.unwrap_err().reason, "context switch on every try");
    assert_eq!(r.reruns - before, 3);
    // Under an emulator (xsave-harness --emulated) the switch does not count:
    // the same case gives an outcome with no rerun.
    r.switches_matter = false;
    let before = r.reruns;
    let o = r.run(&c).expect("runs");
    r.switches_matter = true;
    assert_eq!(o.fault, None);
    assert_eq!(r.reruns, before);
}
