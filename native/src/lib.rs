//! xsave-native: runs xsave-emu cases on this CPU. Ring 3 in process
//! ([`runner::Runner`]), and the wire format of the `xsave-harness` binary that runs
//! the same runner under user-mode emulators ([`protocol`]).
//!
//! The only crate of the workspace with `unsafe`; each block is small and says why
//! it is sound.

pub mod bench_hw;
pub mod host;
pub mod mapped;
pub mod phase;
pub mod protocol;
pub mod ring0;
pub mod runner;
pub mod signal;
pub mod stub;

use std::fmt;

/// Why a backend will not run a case: a short, stable reason that can be counted
/// ("needs CPL 0", "XCR0 differs from the host's", ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    pub reason: String,
}

impl Refusal {
    pub fn new(reason: &str) -> Refusal {
        Refusal {
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)
    }
}

impl std::error::Error for Refusal {}
