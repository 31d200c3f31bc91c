//! The hardware agreement suite: each case is a rule of the SDM or a question
//! about this silicon, run on this CPU and through xsave-emu with the host model;
//! they must agree exactly and the envelope must admit the hardware.

mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::Fault;

/// SDM2 XSAVE: XSAVE64 of the init state writes every RFBM component and
/// XSTATE_BV = XINUSE = 0 (nothing in use after XRSTOR of XSTATE_BV = 0).
#[test]
fn xsave64_init_state_writes_every_component() {
    let c = case(4, asm(|a| a.xsave64(ptr(rdi))));
    let o = agree("xsave64_init_state", &c);
    assert_eq!(o.fault, None);
    assert_eq!(&o.memory[0..2], &[0x7f, 0x03]);
}

/// SDM2 XSAVE: a misaligned area is #GP(0).
#[test]
fn xsave64_misaligned_is_gp() {
    let mut c = case(4, asm(|a| a.xsave64(ptr(rdi))));
    c.gprs[7] += 8;
    let o = agree("xsave64_misaligned", &c);
    assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)));
}
