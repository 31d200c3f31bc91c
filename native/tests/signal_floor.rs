//! `bench_hw::signal_floor` takes over SIGSEGV and SIGILL and the alternate
//! signal stack for its loop: afterwards the process's own actions and stack
//! must be exactly what they were (the runner's handler, installed first, is
//! what a campaign's later runs depend on). Its own process: signal actions
//! are process-wide.

use xsave_native::bench_hw::{signal_floor, FloorFault};

fn action(sig: libc::c_int) -> (usize, libc::c_int) {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action
    // only reads the current one.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::sigaction(sig, std::ptr::null(), &mut sa) },
        0
    );
    (sa.sa_sigaction, sa.sa_flags)
}

fn alt_stack() -> (usize, usize, libc::c_int) {
    // SAFETY: a zeroed stack_t is a valid out-parameter; a null new stack only
    // reads the current one.
    let mut st: libc::stack_t = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut st) }, 0);
    (st.ss_sp as usize, st.ss_size, st.ss_flags)
}

extern "C" fn own(_: libc::c_int) {}

#[test]
fn signal_floor_puts_back_the_actions_and_stack() {
    // Actions of this process's own before the loop (not the defaults, so
    // that a put-back to SIG_DFL would show).
    // SAFETY: a handler that does nothing, for signals this test never raises
    // outside signal_floor's loop.
    unsafe {
        libc::signal(libc::SIGSEGV, own as *const () as libc::sighandler_t);
        libc::signal(libc::SIGILL, own as *const () as libc::sighandler_t);
    }
    let before = (action(libc::SIGSEGV), action(libc::SIGILL), alt_stack());
    let mut ran = 0;
    for f in [
        FloorFault::Pf,
        FloorFault::Gp,
        FloorFault::Ud,
        FloorFault::XfdNm,
    ] {
        match signal_floor(f, 100) {
            Ok(d) => {
                ran += 1;
                assert!(d.as_nanos() > 0, "{f:?}: a fault takes time");
            }
            // XFD's #NM needs an armed component (the Intel AMX host); an
            // unmapped page that is mapped is the only other refusal.
            Err(e) => println!("{f:?} not measured: {e}"),
        }
        let after = (action(libc::SIGSEGV), action(libc::SIGILL), alt_stack());
        assert_eq!(after, before, "{f:?}: actions and alternate stack put back");
    }
    assert!(ran >= 3, "#PF, #GP and #UD measured on any x86-64 host");
}
