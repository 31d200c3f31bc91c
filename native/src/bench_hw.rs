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
