//! What a run of a case shows: the same fields for the emulator and for every
//! backend that runs the case for real.

use crate::arena_bytes::ArenaBytes;
use crate::fault::FaultAt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The first fault, if any; nothing after it ran.
    pub fault: Option<FaultAt>,
    /// XSAVE64 with RFBM = all ones (standard format, XCR0's size) over a zeroed
    /// area, after the case.
    pub final_image: Vec<u8>,
    /// XGETBV(1) after the case (None where the CPU lacks XGETBV1).
    pub xinuse: Option<u64>,
    pub gprs: [u64; 16],
    /// The arena after the case (the case's own bytes when nothing wrote them).
    pub memory: ArenaBytes,
    /// Supervisor state after the case (what a ring-0 runner's XSAVES of
    /// XCR0 | IA32_XSS sees): the contents of each supervisor component enabled
    /// in IA32_XSS, in ascending component order, concatenated, with init values
    /// for components in init configuration. Empty when IA32_XSS = 0.
    pub supervisor: Vec<u8>,
}
