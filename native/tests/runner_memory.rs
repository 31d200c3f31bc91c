//! A case can address the runner's own data page (its address is a constant a
//! fuzzer learns from the runner's comparisons). The reset image there, which
//! every run's first XRSTOR loads, must not carry one case's writes into the
//! next run: a reserved header byte written there made the next run's XRSTOR
//! fault inside the stub, where no handler expects it (a process-killing
//! SIGSEGV; diff_native, 2026-11-24 session 2).
use xsave_emu::{Case, Control};
use xsave_native::runner::Runner;
use xsave_native::stub::RESET_IMAGE;

/// The ring-3 runner, or None (printed) where this machine has none.
fn runner() -> Option<Runner> {
    Runner::new()
        .map_err(|e| println!("skipped: no ring-3 runner here: {e}"))
        .ok()
}

#[test]
fn a_case_writing_the_reset_image_does_not_break_the_next_run() {
    let Some(mut r) = runner() else { return };
    let m = r.model().clone();
    let ctl: Control = r.control();
    // mov [rdi], rax: header byte 16 of the reset image (SDM1 §13.8.1: must be 0).
    // The model predicts a #PF there, so the runner refuses the case
    // (a_case_predicted_to_reach_the_runners_memory_is_refused); after a
    // VXORPS, which the model declines, it runs: the reset image must still
    // survive a write the model did not foresee.
    let mut a = Case::new(&m, ctl);
    a.gprs[0] = 1;
    a.gprs[7] = RESET_IMAGE + 512 + 16;
    a.code = vec![0xc5, 0xf8, 0x57, 0xc0, 0x48, 0x89, 0x07];
    let first = r.run(&a).expect("the write runs");
    assert_eq!(first.fault, None, "the data page is writable to the case");
    let mut b = Case::new(&m, ctl);
    b.code = vec![0x90];
    let after = r.run(&b).expect("the next case runs");
    assert_eq!(after.fault, None);
    let again = r.run(&b).expect("and again");
    assert_eq!(after, again);
}

#[test]
fn a_case_predicted_to_reach_the_runners_memory_is_refused() {
    let Some(mut r) = runner() else { return };
    let m = r.model().clone();
    // fldcw [rip+22h]: the model maps no data on the code page (#PF at
    // code+0x28); the process does, so silicon would load FCW from the runner's
    // code page and go on (diff_native, 2026-12-02: the jrcxz after it then
    // killed the fuzzer).
    let mut c = Case::new(&m, r.control());
    c.code = vec![0xd9, 0x2d, 0x22, 0, 0, 0];
    let e = r.run(&c).expect_err("refused");
    assert!(
        e.reason.contains("memory this process maps"),
        "{}",
        e.reason
    );
    // The same access in the arena runs.
    c.code = vec![0xd9, 0x2f]; // fldcw [rdi]
    c.gprs[7] = xsave_emu::case::ARENA_BASE;
    assert_eq!(r.run(&c).expect("runs").fault, None);
}

#[test]
fn code_that_leaves_its_sequence_is_refused_and_int3_or_syscall_is_not() {
    let Some(r) = runner() else { return };
    let m = r.model().clone();
    let reason = |code: &[u8]| {
        let mut c = Case::new(&m, r.control());
        c.code = code.to_vec();
        r.refusal(&c).err().map(|e| e.reason)
    };
    for (code, what) in [
        (&[0xe3, 0x26][..], "jrcxz"),
        (&[0xeb, 0x00], "jmp"),
        (&[0xe8, 0, 0, 0, 0], "call"),
        (&[0xc3], "ret"),
        (&[0x0f, 0x34], "sysenter"),
        (&[0xff, 0xe0], "jmp"),
    ] {
        let why = reason(code).unwrap_or_else(|| panic!("{what} {code:02x?} not refused"));
        assert!(
            why.contains("transfers control") && why.contains(what),
            "{what}: {why}"
        );
    }
    // INT3 and UD2 fault inside the case (SIGTRAP, SIGILL): the runner takes
    // them; SYSCALL returns to the next instruction.
    assert_eq!(reason(&[0xcc]), None);
    assert_eq!(reason(&[0x0f, 0x0b]), None);
    assert_eq!(reason(&[0x0f, 0x05]), None);
}
