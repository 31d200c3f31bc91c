//! Where a run's time goes, with the cargo feature `phase-probes`: the time-stamp
//! counter read at the boundaries of the runner's phases and, inside the stub,
//! between its instructions, summed per phase over every run since the last
//! [`take`]. Without the feature every probe compiles to nothing and the stub
//! has no probe instructions.
//!
//! ```text
//! cargo build --release --example speed_profile -p xsave-diff --features xsave-native/phase-probes
//! ```
//!
//! RDTSC is not ordered with the instructions around it: a phase's figure is
//! where the counter moved while that part of the code ran, good to a few
//! dozen cycles; on a busy machine the counter also runs while the thread is
//! preempted (compare CPU time).

use std::sync::atomic::{AtomicU64, Ordering};

/// The phases, in the order a run passes them. The runner's own work first,
/// then the stub's parts (between its probes), then the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `admit`: the refusal checks (the code decoded) and the predicted
    /// access's mapping.
    Admit,
    /// The case's code and jump written to the code page.
    Code,
    /// The initial image written through the alias, its pages' protection.
    Init,
    /// The arena's bytes written through the alias.
    ArenaBytes,
    /// The arena pages' protections (mprotect where they change).
    ArenaProt,
    /// The final area zeroed, the reset image, the data page's GPRs and flags.
    Areas,
    /// Calling the stub and its first probe; its last probe and the return.
    StubEntry,
    /// The stub's save of the host state (XSAVEC64 here).
    HostSave,
    /// XRSTOR64 of the reset image.
    Reset,
    /// XRSTOR64 of the case's initial image.
    InitXrstor,
    /// The GPRs loaded, the case's code, the jump back (and the kernel's signal
    /// delivery and return when the case faults).
    Case,
    /// The capture: XSAVE64 with RFBM = all ones, XGETBV(1).
    Capture,
    /// XRSTOR64 of the host state.
    HostRestore,
    /// The observation compared with the prediction where it lies.
    Compare,
}

/// Every phase, in order.
pub const PHASES: [Phase; 14] = [
    Phase::Admit,
    Phase::Code,
    Phase::Init,
    Phase::ArenaBytes,
    Phase::ArenaProt,
    Phase::Areas,
    Phase::StubEntry,
    Phase::HostSave,
    Phase::Reset,
    Phase::InitXrstor,
    Phase::Case,
    Phase::Capture,
    Phase::HostRestore,
    Phase::Compare,
];

/// The stub's phases, between its seven probes: those of [`PHASES`] from
/// `HostSave` to `HostRestore`.
const STUB_PHASES: &[Phase] = PHASES
    .split_at(Phase::HostSave as usize)
    .1
    .split_at(Phase::HostRestore as usize + 1 - Phase::HostSave as usize)
    .0;

/// Whether the probes are compiled in.
pub const ENABLED: bool = cfg!(feature = "phase-probes");

static TOTALS: [AtomicU64; PHASES.len()] = [const { AtomicU64::new(0) }; PHASES.len()];

fn now() -> u64 {
    // SAFETY: RDTSC reads the time-stamp counter, which Linux lets ring 3 read
    // (CR4.TSD = 0) on every x86-64 CPU it runs on; it has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A running probe: each [`Clock::lap`] charges the counter's movement since the
/// last lap (or the start) to a phase.
pub struct Clock(u64);

impl Clock {
    #[inline(always)]
    pub fn start() -> Clock {
        Clock(if ENABLED { now() } else { 0 })
    }
    #[inline(always)]
    pub fn lap(&mut self, p: Phase) {
        if ENABLED {
            let t = now();
            add(p, t.wrapping_sub(self.0));
            self.0 = t;
        }
    }
}

/// Charges `cycles` to `p`.
pub fn add(p: Phase, cycles: u64) {
    if ENABLED {
        TOTALS[p as usize].fetch_add(cycles, Ordering::Relaxed);
    }
}

/// Charges the stub's phases from its probes (the counter at each), and takes
/// their span from [`Phase::StubEntry`], to which the whole call was charged.
pub fn stub_probes(probes: [u64; 7]) {
    if ENABLED {
        let spans = stub_spans(probes);
        for (&p, &c) in STUB_PHASES.iter().zip(&spans) {
            add(p, c);
        }
        TOTALS[Phase::StubEntry as usize].fetch_sub(spans.iter().sum(), Ordering::Relaxed);
    }
}

/// The cycles of each of [`STUB_PHASES`] from the counter at the seven probes.
/// A probe the run did not pass (0: an initial image whose XRSTOR faulted
/// skips probe 3) is taken as the one before it, so its phase counts nothing
/// and the time goes to the next.
fn stub_spans(mut probes: [u64; 7]) -> [u64; 6] {
    for k in 1..probes.len() {
        if probes[k] == 0 {
            probes[k] = probes[k - 1];
        }
    }
    std::array::from_fn(|k| probes[k + 1].wrapping_sub(probes[k]))
}

/// The cycles charged to each phase since the last call (and resets them).
pub fn take() -> Vec<(Phase, u64)> {
    PHASES
        .iter()
        .map(|&p| (p, TOTALS[p as usize].swap(0, Ordering::Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spans between the probes; in a run whose initial XRSTOR64 faults
    /// (probe 3 never reached, left 0), `InitXrstor` counts nothing and `Case`
    /// the time from probe 2 to the recovery's probe 4 (the fault's signal
    /// delivery and return).
    #[test]
    fn stub_spans_between_probes_and_over_a_probe_not_passed() {
        assert_eq!(
            STUB_PHASES,
            [
                Phase::HostSave,
                Phase::Reset,
                Phase::InitXrstor,
                Phase::Case,
                Phase::Capture,
                Phase::HostRestore
            ]
        );
        assert_eq!(
            stub_spans([100, 190, 310, 500, 740, 1140, 1260]),
            [90, 120, 190, 240, 400, 120]
        );
        assert_eq!(
            stub_spans([100, 190, 310, 0, 740, 1140, 1260]),
            [90, 120, 0, 430, 400, 120]
        );
    }
}
