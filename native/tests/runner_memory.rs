//! A case can address the runner's own data page (its address is a constant a
//! fuzzer learns from the runner's comparisons). The reset image there, which
//! every run's first XRSTOR loads, must not carry one case's writes into the
//! next run: a reserved header byte written there made the next run's XRSTOR
//! fault inside the stub, where no handler expects it (a process-killing
//! SIGSEGV; diff_native, 2026-11-24 session 2).
use xsave_emu::{Case, Control};
use xsave_native::runner::Runner;
use xsave_native::stub::RESET_IMAGE;

#[test]
fn a_case_writing_the_reset_image_does_not_break_the_next_run() {
    let mut r = match Runner::new() {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: no ring-3 runner here: {e}");
            return;
        }
    };
    let m = r.model().clone();
    let ctl: Control = r.control();
    // mov [rdi], rax: header byte 16 of the reset image (SDM1 §13.8.1: must be 0).
    let mut a = Case::new(&m, ctl);
    a.gprs[0] = 1;
    a.gprs[7] = RESET_IMAGE + 512 + 16;
    a.code = vec![0x48, 0x89, 0x07];
    let first = r.run(&a).expect("the write runs");
    assert_eq!(first.fault, None, "the data page is writable to the case");
    let mut b = Case::new(&m, ctl);
    b.code = vec![0x90];
    let after = r.run(&b).expect("the next case runs");
    assert_eq!(after.fault, None);
    let again = r.run(&b).expect("and again");
    assert_eq!(after, again);
}
