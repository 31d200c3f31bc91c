//! A hardware timing path for the benchmarks: XSAVEC64 then XRSTOR64 of a
//! chosen state, `iters` times in one asm block on this CPU, with the host's
//! own state saved before and restored after. Only what the benchmark needs:
//! the loop, the state it starts from, and the area it leaves.

use crate::runner::AlignedArea;
use std::time::{Duration, Instant};

/// XSAVEC + XRSTOR round trips of one state on this CPU.
pub struct HwRoundTrip {
    /// The state loaded before the loop (standard format, the host's XSAVE size).
    pattern: AlignedArea,
    /// The compacted area the loop saves to and restores from.
    area: AlignedArea,
    /// The host's own state, saved and restored around the loop.
    saved: AlignedArea,
    rfbm: u64,
}

impl HwRoundTrip {
    /// `pattern`: a standard-format image of the host's XSAVE size whose header
    /// and MXCSR are valid for XRSTOR (and whose XSTATE_BV holds no component the
    /// kernel keeps XFD-armed for this process); `rfbm`: the instruction mask of
    /// the round trip; `compacted_size`: the XSAVEC area size for `rfbm`.
    pub fn new(pattern: &[u8], rfbm: u64, compacted_size: usize) -> Result<HwRoundTrip, String> {
        let host = crate::host::host_model()?;
        if !host.xsavec || !crate::host::osxsave() {
            return Err("no XSAVEC on this CPU (CPUID.(0DH,1):EAX[1] = 0)".into());
        }
        let std = crate::runner::Runner::new()?.host_area_size();
        if pattern.len() != std {
            return Err(format!(
                "pattern of {} bytes, the host's XSAVE area is {std}",
                pattern.len()
            ));
        }
        let mut p = AlignedArea::new(std);
        p.bytes_mut().copy_from_slice(pattern);
        Ok(HwRoundTrip {
            pattern: p,
            area: AlignedArea::new(compacted_size.max(576)),
            saved: AlignedArea::new(std),
            rfbm,
        })
    }

    /// Runs `iters` (at least 1) round trips and returns the time they took.
    pub fn run(&mut self, iters: u64) -> Duration {
        let iters = iters.max(1);
        let saved = self.saved.bytes_mut().as_mut_ptr();
        let pattern = self.pattern.bytes_mut().as_mut_ptr();
        let area = self.area.bytes_mut().as_mut_ptr();
        let start = Instant::now();
        // SAFETY: the three areas are 64-byte aligned and large enough (host XSAVE
        // size, compacted size of RFBM); the pattern's header and MXCSR are valid
        // for XRSTOR (checked by `new`'s caller contract) so no instruction here
        // faults; the host's whole XSAVE-managed state is saved first and restored
        // last, so the compiler's view of vector registers is unchanged; RAX, RDX
        // and RCX are declared clobbered.
        unsafe {
            core::arch::asm!(
                "mov eax, -1",
                "mov edx, -1",
                "xsave64 [{saved}]",
                "xrstor64 [{pattern}]",
                "2:",
                "mov rax, {rfbm}",
                "mov rdx, {rfbm}",
                "shr rdx, 32",
                "xsavec64 [{area}]",
                "xrstor64 [{area}]",
                "dec rcx",
                "jnz 2b",
                "mov eax, -1",
                "mov edx, -1",
                "xrstor64 [{saved}]",
                saved = in(reg) saved,
                pattern = in(reg) pattern,
                area = in(reg) area,
                rfbm = in(reg) self.rfbm,
                inout("rcx") iters => _,
                out("rax") _,
                out("rdx") _,
                options(nostack),
            );
        }
        start.elapsed()
    }

    /// The compacted area as the last XSAVEC left it.
    pub fn area(&self) -> &[u8] {
        self.area.bytes()
    }
}

/// The CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID): for timing a
/// loop on a machine others load, where wall-clock time also counts the time
/// the thread waited for a CPU.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: a zeroed timespec is a valid out-parameter for clock_gettime.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid timespec to write; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The faults [`signal_floor`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorFault {
    /// A load from an unmapped page (SIGSEGV, trapno 14).
    Pf,
    /// A load from a non-canonical address (SIGSEGV, trapno 13).
    Gp,
    /// UD2 (SIGILL, trapno 6).
    Ud,
    /// XRSTOR64 of an XFD-armed component (XFD's #NM: SIGILL, trapno not
    /// updated); an error where none is armed.
    XfdNm,
}

/// Where the floor's handler resumes (the instruction after the fault).
static FLOOR_RESUME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn floor_handler(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: `uc` is the ucontext the kernel passed; REG_RIP indexes its gregs.
    unsafe {
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] =
            FLOOR_RESUME.load(std::sync::atomic::Ordering::Relaxed) as i64
    };
}

/// The kernel's part of a faulting case, without the runner: the mean thread
/// CPU time of `n` faults of kind `f` in a bare ring-3 loop, each delivered as
/// a signal to a handler (SA_SIGINFO, on an alternate stack, every signal
/// blocked meanwhile: as the runner's) that only moves RIP past the faulting
/// instruction and returns (rt_sigreturn). What a faulting case costs the
/// runner beyond a non-faulting one comes close to this, not below it.
/// Installs its own handler for SIGSEGV and SIGILL and puts the previous ones
/// back: must not run while a [`crate::runner::Batch`] is alive.
pub fn signal_floor(f: FloorFault, n: u32) -> Result<Duration, String> {
    const UNMAPPED: u64 = 0x6fff_ffff_f000;
    if crate::mapped::is_mapped(UNMAPPED) {
        return Err(format!("{UNMAPPED:#x} is mapped"));
    }
    // For XFD's #NM: a standard-format image (FCW 037FH, MXCSR 1F80H) whose
    // XSTATE_BV names the lowest armed component, restored with RFBM = all
    // ones: should the XRSTOR change any state before its #NM, it is the
    // init state with the default control words.
    let model = crate::host::host_model()?;
    let armed = xsave_emu::Control::user(&model).xfd_armed();
    if f == FloorFault::XfdNm && armed == 0 {
        return Err("no XFD-armed component on this host".into());
    }
    let size = xsave_emu::layout::standard(
        &model,
        xsave_emu::Xfeatures::from_bits_retain(model.os_xcr0),
    )
    .size as usize;
    let mut image = AlignedArea::new(size);
    image.bytes_mut()[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    image.bytes_mut()[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    image.bytes_mut()[512..520].copy_from_slice(&(armed & armed.wrapping_neg()).to_le_bytes());
    let image = image.bytes().as_ptr() as u64;
    let mut alt = vec![0u8; crate::signal::ALT_STACK];
    let st = libc::stack_t {
        ss_sp: alt.as_mut_ptr() as *mut libc::c_void,
        ss_flags: 0,
        ss_size: alt.len(),
    };
    // SAFETY: zeroed stack_t/sigaction are valid out-parameters and values.
    let mut old_st: libc::stack_t = unsafe { std::mem::zeroed() };
    let mut old: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
    // SAFETY: `st` describes `alt`, which outlives its use (the old stack is
    // put back before `alt` is dropped).
    unsafe { libc::sigaltstack(&st, &mut old_st) };
    let sigs = [libc::SIGSEGV, libc::SIGILL];
    let (mut set, mut failed) = (0, None);
    for (k, &sig) in sigs.iter().enumerate() {
        match crate::signal::set_action(sig, floor_handler, &mut old[k]) {
            Ok(()) => set += 1,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let addr = match f {
        FloorFault::Pf => UNMAPPED,
        _ => 0x8000_0000_0000_0000,
    };
    let r = &FLOOR_RESUME as *const _ as u64;
    let t0 = thread_cpu_time();
    for _ in 0..n * failed.is_none() as u32 {
        // SAFETY: the load, UD2 or XRSTOR faults; the handler above resumes at
        // label 2 with every register as it was at the fault (the kernel
        // restores them from the signal frame); RAX and RDX are outputs.
        unsafe {
            match f {
                FloorFault::Ud => core::arch::asm!(
                    "lea rax, [rip + 2f]", "mov [{r}], rax", "ud2", "2:",
                    r = in(reg) r, out("rax") _,
                ),
                // The image is 64-byte aligned and of the XCR0 size; every
                // register the C ABI lets a call change counts as changed.
                FloorFault::XfdNm => core::arch::asm!(
                    "lea rax, [rip + 2f]", "mov [{r}], rax",
                    "mov eax, -1", "mov edx, -1", "xrstor64 [{i}]", "2:",
                    r = in(reg) r, i = in(reg) image, out("rax") _, out("rdx") _,
                    clobber_abi("C"),
                ),
                _ => core::arch::asm!(
                    "lea rax, [rip + 2f]", "mov [{r}], rax", "mov rax, [{a}]", "2:",
                    r = in(reg) r, a = in(reg) addr, out("rax") _,
                ),
            }
        }
    }
    let t = (thread_cpu_time() - t0) / n.max(1);
    // SAFETY: puts back the actions set and the stack saved above.
    unsafe {
        for k in 0..set {
            libc::sigaction(sigs[k], &old[k], std::ptr::null_mut());
        }
        libc::sigaltstack(&old_st, std::ptr::null_mut());
    }
    failed.map_or(Ok(t), Err)
}
