//! Faults of a case come back as signals: SIGSEGV (#PF, #GP), SIGBUS (#SS, #AC),
//! SIGILL (#UD, and XFD's #NM), SIGFPE, SIGTRAP. One handler, on an alternate
//! signal stack (the case's RSP is the case's own), records the vector, error
//! code, CR2 and RIP in the stub's data page, copies the GPRs of the ucontext,
//! and resumes at the stub's recovery path, which captures the final state and
//! restores the host's. A signal that does not come from a case (or from the
//! runner's #BP prime) is handed to the previous handler.
//!
//! # Telling XFD's #NM from #UD
//! Linux delivers the #NM of an XFD-armed component (without AMX permission) as
//! SIGILL with `si_code` ILL_ILLOPC and does not update the thread's
//! `trap_nr`/`error_code` (the ucontext's trapno and err are whatever the
//! thread's previous trap left there). A real #UD goes through `do_trap`, which
//! sets `trap_nr = 6` (its `si_code` is ILL_ILLOPN: on the Intel host, Linux
//! 6.18, a C program's UD2 gets 2 and its XRSTOR of armed TILEDATA 1; the
//! runner does not rely on it). So for a SIGILL from a case, trapno 6 means #UD and any
//! other trapno means XFD's #NM, provided `trap_nr` was not 6 when the case
//! started. The runner knows when it may have been (a #UD since the thread's last
//! prime); only then, and only when a case's SIGILL comes with trapno 6 and a
//! component is XFD-armed, it takes a cheap #BP (`int3`, SIGTRAP, `trap_nr = 3`)
//! in the stub's prime and runs the case again. Tests in `tests/runner.rs` show
//! both orders.

use crate::stub::{data, DATA_PAGE, EFLAGS_AC};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use xsave_emu::case::CODE_BASE;

/// The signals a case's fault can raise.
pub const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGILL,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGTRAP,
];

/// A case is running (its faults are ours).
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The prime's int3 is running.
pub static PRIMING: AtomicBool = AtomicBool::new(false);
static INIT_XRSTOR: AtomicU64 = AtomicU64::new(0);
static RECOVERY: AtomicU64 = AtomicU64::new(0);
static PRIME_RESUME: AtomicU64 = AtomicU64::new(0);
/// End of the case's code (with its jump back).
pub static CODE_END: AtomicU64 = AtomicU64::new(CODE_BASE);

struct OldActions([libc::sigaction; 5]);
// SAFETY: the saved sigaction structs are plain data written once before any
// handler can read them.
unsafe impl Sync for OldActions {}
unsafe impl Send for OldActions {}
static OLD: OnceLock<Result<OldActions, String>> = OnceLock::new();

/// Size of the alternate signal stack: a signal frame holds the whole XSAVE area
/// (11 KiB with AMX), plus the handler's frames.
pub const ALT_STACK: usize = 256 * 1024;

/// A signal handler as SA_SIGINFO passes it.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Makes `handler` the action for `sig` as the runner's handlers run:
/// SA_SIGINFO on the alternate stack, every signal blocked meanwhile; the
/// previous action goes to `old`.
pub(crate) fn set_action(
    sig: libc::c_int,
    handler: Handler,
    old: &mut libc::sigaction,
) -> Result<(), String> {
    // SAFETY: a zeroed sigaction is valid; sigfillset initialises its mask.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `sa` and `old` are valid sigaction structs.
    let r = unsafe {
        libc::sigfillset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, old)
    };
    if r != 0 {
        return Err(format!(
            "sigaction({sig}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Installs the handler for [`SIGNALS`] once per process, telling it the stub's
/// addresses.
pub fn install(init_xrstor: u64, recovery: u64, prime_resume: u64) -> Result<(), String> {
    INIT_XRSTOR.store(init_xrstor, Ordering::SeqCst);
    RECOVERY.store(recovery, Ordering::SeqCst);
    PRIME_RESUME.store(prime_resume, Ordering::SeqCst);
    OLD.get_or_init(|| {
        // SAFETY: zeroed sigaction structs are valid "no handler" values.
        let mut old: [libc::sigaction; 5] = unsafe { std::mem::zeroed() };
        for (k, &sig) in SIGNALS.iter().enumerate() {
            set_action(sig, handler, &mut old[k])?;
        }
        Ok(OldActions(old))
    })
    .as_ref()
    .map(|_| ())
    .map_err(|e| e.clone())
}

fn reg(uc: *mut libc::ucontext_t, r: libc::c_int) -> *mut i64 {
    // SAFETY: `uc` is the ucontext the kernel passed to the handler and `r` one of
    // the REG_* indices of its gregs array.
    unsafe { std::ptr::addr_of_mut!((*uc).uc_mcontext.gregs[r as usize]) }
}

fn put(off: u64, v: u64) {
    // SAFETY: the data page is mapped read-write for the runner's lifetime and
    // `off` is one of the `data` offsets inside it.
    unsafe { std::ptr::write_volatile((DATA_PAGE + off) as *mut u64, v) }
}

fn get(off: u64) -> u64 {
    // SAFETY: as in `put`.
    unsafe { std::ptr::read_volatile((DATA_PAGE + off) as *const u64) }
}

/// The ucontext's GPRs in x86 register-number order.
const GREG_ORDER: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // A case may have set EFLAGS.AC and the kernel keeps it for the handler: clear
    // it before any compiler-generated access can be misaligned.
    // SAFETY: only RFLAGS.AC changes; the stack has room for one qword.
    unsafe {
        core::arch::asm!("pushfq", "and qword ptr [rsp], {m}", "popfq", m = const !(1i32 << 18));
    }
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: `reg` points into the kernel-provided ucontext.
    let rip = unsafe { *reg(uc, libc::REG_RIP) } as u64;
    if sig == libc::SIGTRAP
        && PRIMING.load(Ordering::SeqCst)
        && rip == PRIME_RESUME.load(Ordering::SeqCst)
    {
        return;
    }
    let in_case = (CODE_BASE..CODE_END.load(Ordering::SeqCst)).contains(&rip)
        || rip == INIT_XRSTOR.load(Ordering::SeqCst);
    if !ACTIVE.load(Ordering::SeqCst) || !in_case {
        // Not a case's fault: give the signal back to whoever had it before; the
        // faulting instruction runs again and reaches that handler.
        if let Some(Ok(old)) = OLD.get() {
            if let Some(k) = SIGNALS.iter().position(|&s| s == sig) {
                // SAFETY: restores a sigaction struct the kernel gave us.
                unsafe { libc::sigaction(sig, &old.0[k], std::ptr::null_mut()) };
            }
        }
        return;
    }
    // SAFETY: `info` is the kernel's siginfo for this signal; `reg` as above.
    let (code, addr, trapno, err) = unsafe {
        (
            (*info).si_code,
            (*info).si_addr() as u64,
            *reg(uc, libc::REG_TRAPNO) as u64,
            *reg(uc, libc::REG_ERR) as u64,
        )
    };
    put(data::FAULTED, 1);
    put(data::SIGNO, sig as u64);
    put(data::SI_CODE, code as u64);
    put(data::TRAPNO, trapno);
    put(data::ERR, err);
    put(data::CR2, addr);
    put(data::RIP, rip);
    for (k, &r) in GREG_ORDER.iter().enumerate() {
        // SAFETY: `reg` as above.
        put(data::GPRS_OUT + 8 * k as u64, unsafe { *reg(uc, r) } as u64);
    }
    // SAFETY: `reg` as above; resuming at the stub's recovery path on its own stack.
    unsafe {
        *reg(uc, libc::REG_RIP) = RECOVERY.load(Ordering::SeqCst) as i64;
        *reg(uc, libc::REG_RSP) = get(data::SAVED_RSP) as i64;
        *reg(uc, libc::REG_EFL) &= !(EFLAGS_AC as i64 | 1 << 8);
    }
}

thread_local! {
    static ALT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// While alive: this thread runs on the runner's alternate signal stack with every
/// signal blocked but [`SIGNALS`] (an asynchronous signal must not land on the
/// case's RSP). Dropping it restores the thread's previous stack and mask.
pub struct CaseSignals {
    old_stack: libc::stack_t,
    old_mask: libc::sigset_t,
}

impl CaseSignals {
    pub fn enter() -> Result<CaseSignals, String> {
        let sp = ALT.with(|a| {
            let mut a = a.borrow_mut();
            if a.is_empty() {
                a.resize(ALT_STACK, 0);
            }
            a.as_mut_ptr()
        });
        let st = libc::stack_t {
            ss_sp: sp as *mut libc::c_void,
            ss_flags: 0,
            ss_size: ALT_STACK,
        };
        // SAFETY: zeroed stack_t/sigset_t are valid out-parameters.
        let mut old_stack: libc::stack_t = unsafe { std::mem::zeroed() };
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `st` describes this thread's ALT buffer, which lives as long as the
        // thread (the stack is switched back in `drop` before the thread can end).
        if unsafe { libc::sigaltstack(&st, &mut old_stack) } != 0 {
            return Err(format!("sigaltstack: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a zeroed sigset_t filled by sigfillset; the signals removed are valid.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigfillset(&mut mask);
            for s in SIGNALS {
                libc::sigdelset(&mut mask, s);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, &mut old_mask);
        }
        Ok(CaseSignals {
            old_stack,
            old_mask,
        })
    }
}

impl Drop for CaseSignals {
    fn drop(&mut self) {
        // SAFETY: restores the stack and mask this thread had before `enter`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
            libc::sigaltstack(&self.old_stack, std::ptr::null_mut());
        }
    }
}

/// The fault record the handler left in the data page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRecord {
    pub signo: i32,
    pub si_code: i32,
    pub trapno: u64,
    pub err: u64,
    pub addr: u64,
    pub rip: u64,
}

/// Clears the fault record before a run.
pub fn clear_record() {
    put(data::FAULTED, 0);
}

/// The fault record of the last run, if it faulted.
pub fn take_record() -> Option<FaultRecord> {
    (get(data::FAULTED) != 0).then(|| FaultRecord {
        signo: get(data::SIGNO) as i32,
        si_code: get(data::SI_CODE) as i32,
        trapno: get(data::TRAPNO),
        err: get(data::ERR),
        addr: get(data::CR2),
        rip: get(data::RIP),
    })
}
