//! The xsave-harness binary: answers on this CPU like the in-process runner,
//! runs AMX cases with the kernel's AMX permission (XFD disarmed), and starts and
//! answers under user-mode emulators (qemu-x86_64 -cpu max, valgrind --tool=none),
//! each skipped with a printed reason when absent.

mod common;
use common::*;
use iced_x86::code_asm::*;
use std::io::Write;
use std::process::{Command, Stdio};
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{Case, Control, CpuModel, Fault, FaultAt, Outcome};
use xsave_native::protocol::{self, Hello};
use xsave_native::Refusal;

const HARNESS: &str = env!("CARGO_BIN_EXE_xsave-harness");

/// Runs the harness (under `prefix`, if any) on `cases`.
fn harness(
    prefix: &[&str],
    args: &[&str],
    cases: &[Case],
) -> (Hello, Vec<Result<Outcome, Refusal>>) {
    let mut input = Vec::new();
    protocol::write_cases(&mut input, cases).unwrap();
    let (cmd, rest) = match prefix.split_first() {
        Some((c, r)) => (*c, r.to_vec()),
        None => (HARNESS, vec![]),
    };
    let mut all: Vec<&str> = rest;
    if !prefix.is_empty() {
        all.push(HARNESS);
    }
    all.extend_from_slice(args);
    let mut child = Command::new(cmd)
        .args(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    // With --hello the harness answers and exits without reading stdin, so the
    // write may meet a closed pipe; the exit status below still judges the run.
    if let Err(e) = child.stdin.take().unwrap().write_all(&input) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing cases: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {all:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    protocol::read_outcomes(&out.stdout[..])
        .unwrap_or_else(|e| panic!("{e}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Cases whose answers the SDM fixes and every implementation shares, built for
/// the model the harness reports: FXSAVE64 of the init state (FCW 037FH, MXCSR
/// 1F80H), then a misaligned XSAVE64 (#GP(0), SDM2 XSAVE); UD2 (#UD);
/// XGETBV(0) (EDX:EAX = XCR0).
fn shared_cases(m: &CpuModel) -> Vec<Case> {
    let mk = |code: Vec<u8>| {
        let mut c = Case::new(m, Control::user(m));
        c.code = code;
        c.gprs[7] = ARENA_BASE;
        c.gprs[0] = 0xFFFF_FFFF;
        c.gprs[2] = 0xFFFF_FFFF;
        c
    };
    vec![
        mk(asm(|a| {
            a.fxsave64(ptr(rdi))?;
            a.xsave64(ptr(rdi + 8))
        })),
        mk(asm(|a| a.ud2())),
        mk(asm(|a| {
            a.xor(ecx, ecx)?;
            a.xgetbv()
        })),
    ]
}

fn check_shared(who: &str, hello: &Hello, out: &[Result<Outcome, Refusal>]) {
    let a = out[0]
        .as_ref()
        .unwrap_or_else(|r| panic!("{who}: refused: {r}"));
    assert_eq!(&a.memory[0..2], &[0x7f, 0x03], "{who}: FXSAVE's FCW");
    assert_eq!(
        &a.memory[24..28],
        &[0x80, 0x1f, 0, 0],
        "{who}: FXSAVE's MXCSR"
    );
    assert_eq!(
        a.fault,
        Some(FaultAt {
            fault: Fault::Gp(0),
            insn: Some(1)
        }),
        "{who}: misaligned XSAVE64"
    );
    let b = out[1]
        .as_ref()
        .unwrap_or_else(|r| panic!("{who}: refused: {r}"));
    assert_eq!(
        b.fault,
        Some(FaultAt {
            fault: Fault::Ud,
            insn: Some(0)
        }),
        "{who}: UD2"
    );
    match &out[2] {
        Ok(c) => {
            let xcr0 = hello.xcr0.unwrap();
            assert_eq!(c.fault, None, "{who}: XGETBV(0)");
            assert_eq!(c.gprs[0], xcr0 & 0xFFFF_FFFF, "{who}: XGETBV(0) EAX");
            assert_eq!(c.gprs[2], xcr0 >> 32, "{who}: XGETBV(0) EDX");
        }
        Err(r) => panic!("{who}: XGETBV refused: {r}"),
    }
}

/// The harness on this CPU answers exactly like the in-process runner.
#[test]
fn harness_on_this_cpu_answers_like_the_runner() {
    let m = model();
    let cases = shared_cases(&m);
    let (hello, out) = harness(&[], &[], &cases);
    assert_eq!(hello.version, protocol::VERSION);
    assert_eq!(hello.runner, Ok(()));
    assert!(hello
        .model("h")
        .differences(&m)
        .iter()
        .all(|d| d.starts_with("os xss")));
    check_shared("harness", &hello, &out);
    for (c, o) in cases.iter().zip(&out) {
        let mine = runner().run(c).unwrap();
        assert_eq!(o.as_ref().unwrap(), &mine);
    }
}

/// With `--amx-permission` Linux disarms XFD (the hello says IA32_XFD = 0 for
/// TILEDATA), and XRSTOR of TILEDATA loads it instead of #NM (SDM1 §13.14); the
/// outcome is emu's prediction with the host model at IA32_XFD = 0.
#[test]
fn harness_with_amx_permission_runs_tiledata() {
    let m = model();
    if m.component(18).is_none_or(|c| !c.xfd) || m.os_xcr0 & (1 << 18) == 0 {
        println!(
            "skipped: this host has no XFD-capable TILEDATA ({})",
            m.name
        );
        return;
    }
    let (hello, _) = harness(&[], &["--amx-permission", "--hello"], &[]);
    assert_eq!(hello.xfd & (1 << 18), 0, "XFD disarmed with permission");
    let mut pm = m.clone();
    pm.os_xfd = hello.xfd;
    let mut c = Case::new(&pm, Control::user(&pm));
    let tiledata = pm.component(18).unwrap();
    c.memory = xsave_emu::Memory::new(ARENA_BASE, 4);
    c.memory.bytes[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    c.memory.bytes[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    c.memory.bytes[512..520].copy_from_slice(&(1u64 << 18).to_le_bytes());
    for k in 0..tiledata.size as usize {
        c.memory.bytes[tiledata.offset as usize + k] = (k * 7 + 1) as u8;
    }
    c.code = asm(|a| a.xrstor64(ptr(rdi)));
    c.gprs[7] = ARENA_BASE;
    c.gprs[0] = 0xFFFF_FFFF;
    c.gprs[2] = 0xFFFF_FFFF;
    // A case whose initial image holds TILEDATA (refused without permission).
    let mut d = c.clone();
    d.init = c.memory.bytes[..c.init.len()].to_vec();
    d.code = asm(|a| a.xsave64(ptr(rdi)));
    // TILECFG palette 1 (tile 0: 16 rows of 64 bytes) with TILEDATA, XRSTOR then
    // XSAVEC64 elsewhere (SDM1 §13.10 with AMX).
    let mut e = c.clone();
    e.memory = xsave_emu::Memory::new(ARENA_BASE, 6);
    e.memory.bytes[..c.memory.bytes.len()].copy_from_slice(&c.memory.bytes);
    let cfg = pm.component(17).unwrap().offset as usize;
    e.memory.bytes[cfg] = 1;
    e.memory.bytes[cfg + 16] = 64;
    e.memory.bytes[cfg + 48] = 16;
    e.memory.bytes[512..520].copy_from_slice(&(3u64 << 17 | 3).to_le_bytes());
    e.code = asm(|a| {
        a.xrstor64(ptr(rdi))?;
        a.xsavec64(ptr(rdi + 0x3000))
    });
    // The same, then XSAVEOPT64 to the same address after a write into the area:
    // the modified optimization on TILEDATA (SDM1 §13.9).
    let mut f = e.clone();
    f.code = asm(|a| {
        a.xrstor64(ptr(rdi))?;
        a.mov(rbx, 0x5555u64)?;
        a.mov(qword_ptr(rdi + tiledata.offset as i32), rbx)?;
        a.xsaveopt64(ptr(rdi))
    });
    // XRSTOR with XSTATE_BV[18] = 0 after TILEDATA was in use: initialized, not in use.
    let mut g = e.clone();
    g.init = e.memory.bytes[..e.init.len()].to_vec();
    g.memory.bytes[512..520].copy_from_slice(&3u64.to_le_bytes());
    g.code = asm(|a| a.xrstor64(ptr(rdi)));
    let all = [c, d, e, f, g];
    let (_, out) = harness(&[], &["--amx-permission"], &all);
    for (k, (case, o)) in all.iter().zip(&out).enumerate() {
        let hw = o
            .as_ref()
            .unwrap_or_else(|r| panic!("case {k}: refused: {r}"));
        assert_eq!(hw.fault, None, "case {k}");
        let want = xsave_emu::predict(&pm, case).unwrap();
        let d = diff(&pm, case, &want, hw);
        assert!(
            d.is_empty(),
            "case {k}: emu vs harness:\n  {}",
            d.join("\n  ")
        );
        assert!(
            xsave_emu::check(&pm, case, hw).is_ok_and(|j| j.inside()),
            "case {k}: envelope"
        );
        let t = tiledata.offset as usize;
        let in_use = k != 4;
        assert_eq!(hw.final_image[t + 5] == 36, in_use, "case {k}: TILEDATA");
        assert_eq!(
            hw.xinuse.unwrap() & (1 << 18) != 0,
            in_use,
            "case {k}: XINUSE[18]"
        );
    }
}

fn under(tool: &str, prefix: &[&str]) {
    if !std::path::Path::new(prefix[0]).exists() {
        println!("skipped: {tool} is not installed ({} absent)", prefix[0]);
        return;
    }
    let (hello, _) = harness(prefix, &["--hello"], &[]);
    let m = hello.model(tool);
    println!(
        "{tool}: XCR0 {:x?}, XSAVE {}, XSAVEOPT {}, XSAVEC {}, XGETBV1 {}, runner {:?}",
        hello.xcr0, m.xsave, m.xsaveopt, m.xsavec, m.xgetbv1, hello.runner
    );
    assert_eq!(hello.runner, Ok(()), "{tool}: runner starts");
    let cases = shared_cases(&m);
    let (hello2, out) = harness(prefix, &[], &cases);
    assert_eq!(hello2, hello);
    for (k, o) in out.iter().enumerate() {
        if let Ok(o) = o {
            assert_eq!(
                o.xinuse.is_some(),
                m.xgetbv1,
                "{tool}: case {k}: XINUSE present iff XGETBV1"
            );
            let size = xsave_emu::layout::standard(
                &m,
                xsave_emu::Xfeatures::from_bits_retain(hello.xcr0.unwrap()),
            )
            .size as usize;
            assert_eq!(
                o.final_image.len(),
                size,
                "{tool}: capture sized from its own CPUID"
            );
        }
    }
    check_shared(tool, &hello, &out);
}

#[test]
fn harness_under_qemu_x86_64_max() {
    under("qemu-x86_64 10", &["/usr/bin/qemu-x86_64", "-cpu", "max"]);
}

#[test]
fn harness_under_qemu_7_2_max() {
    under(
        "qemu-x86_64 7.2",
        &["/opt/qemu-7.2/bin/qemu-x86_64", "-cpu", "max"],
    );
}

#[test]
fn harness_under_valgrind_none() {
    under("valgrind", &["/usr/bin/valgrind", "--tool=none", "-q"]);
}

/// A malformed batch is an error naming the line, not a crash.
#[test]
fn protocol_errors_name_the_line() {
    let e =
        protocol::read_cases(&b"xsave-harness-cases 1\ncase\ncontrol xcr0=zz\n"[..]).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("xcr0"), "{e}");
    let e = protocol::read_cases(&b"xsave-harness-cases 2\n"[..]).unwrap_err();
    assert_eq!(e.line, 1);
}

/// Cases and outcomes survive the wire unchanged.
#[test]
fn protocol_roundtrip() {
    let m = model();
    let cases = shared_cases(&m);
    let mut buf = Vec::new();
    protocol::write_cases(&mut buf, &cases).unwrap();
    assert_eq!(protocol::read_cases(&buf[..]).unwrap(), cases);
    let outs: Vec<_> = cases.iter().map(|c| runner().run(c)).collect();
    let mut buf = Vec::new();
    let hello = protocol::hello_here(Ok(()));
    protocol::write_outcomes(&mut buf, &hello, &outs).unwrap();
    let (h, o) = protocol::read_outcomes(&buf[..]).unwrap();
    assert_eq!(h, hello);
    assert_eq!(o, outs);
    assert_eq!(
        protocol::unpack(&protocol::pack(&[0, 0, 0, 0, 1, 0, 2])).unwrap(),
        vec![0, 0, 0, 0, 1, 0, 2]
    );
}

/// Under an emulator without XSAVE (`qemu-x86_64 -cpu max,-xsave`) the harness
/// starts, says so in its hello (no XCR0, runner error) and refuses every case.
#[test]
fn harness_under_qemu_without_xsave_refuses() {
    let qemu = "/usr/bin/qemu-x86_64";
    if !std::path::Path::new(qemu).exists() {
        println!("skipped: {qemu} is not installed");
        return;
    }
    let prefix = [qemu, "-cpu", "max,-xsave"];
    let (hello, _) = harness(&prefix, &["--hello"], &[]);
    assert_eq!(hello.xcr0, None);
    let reason = "no XSAVE (CPUID.01H:ECX[26] or OSXSAVE is 0)";
    assert_eq!(hello.runner, Err(reason.to_string()));
    let m = hello.model("qemu without XSAVE");
    assert!(!m.xsave);
    let cases = shared_cases(&m);
    let (_, out) = harness(&prefix, &[], &cases);
    assert_eq!(out.len(), cases.len());
    for o in out {
        assert_eq!(o.unwrap_err().reason, format!("runner: {reason}"));
    }
}
