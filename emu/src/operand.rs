//! The memory operand of a helper instruction (emu/src/helpers.rs,
//! emu/src/tile_config.rs): its address, with the 64-bit mode checks (SDM2 each
//! instruction's exceptions), and the note of the bytes it wrote.

use crate::fault::Fault;
use crate::machine::{Machine, Policy, Unsupported};
use crate::rules;
use iced_x86::{Instruction, OpKind, Register};

/// Under the architectural policy, notes a MOV's or STMXCSR's `len` bytes at
/// `a` (STMXCSR's copy MXCSR: `source`).
pub fn wrote(m: &mut Machine, a: u64, len: u64, source: Option<crate::provenance::Source>) {
    if m.policy == Policy::Architectural {
        m.prov.written.push(crate::provenance::Written {
            first: a,
            last: a.wrapping_add(len - 1),
            rule: &rules::INSN_SEMANTICS,
            site: m.site,
            source,
        });
        m.lat.bytes_written(a, len, None);
    }
}

/// The operand's linear address (RIP-relative from the next instruction), or
/// its fault: #GP(0) or #SS(0) when non-canonical, #AC when alignment checking
/// is on and it is not a multiple of `size`; FS/GS overrides are declined.
pub fn data_addr(
    m: &Machine,
    ins: &Instruction,
    size: u64,
) -> Result<Result<u64, Fault>, Unsupported> {
    if matches!(ins.memory_segment(), Register::FS | Register::GS) {
        return Err(Unsupported("FS/GS segment override".into()));
    }
    let gprs = m.gprs;
    let rip = ins.next_ip();
    // The memory operand's index (1 for loads such as `mov rax, [rsi]`).
    let op = (0..ins.op_count())
        .find(|&i| ins.op_kind(i) == OpKind::Memory)
        .unwrap_or(0);
    let a = ins
        .virtual_address(op, 0, |r, _, _| match r {
            Register::RIP => Some(rip),
            Register::None | Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
            r if r.is_gpr64() => Some(gprs[r.number()]),
            r if r.is_gpr32() => Some(gprs[r.number()] & 0xFFFF_FFFF),
            _ => None,
        })
        .ok_or_else(|| Unsupported(format!("cannot compute the address of `{ins}`")))?;
    crate::decode::a32_wrap(ins, a, Some(size), &m.mem)?;
    // SDM2 (LDMXCSR, MOV, ... 64-bit mode exceptions): a non-canonical address is
    // #SS(0) when the access uses SS, #GP(0) otherwise.
    if !m.canonical(a) {
        let f = if crate::decode::stack_based(ins) {
            Fault::Ss
        } else {
            Fault::gp0()
        };
        return Ok(Err(m.raise(&rules::MEM_GP_NON_CANONICAL, f)));
    }
    if m.ctl.alignment_checking() && a % size != 0 {
        return Ok(Err(m.raise(&rules::INSN_SEMANTICS, Fault::Ac)));
    }
    Ok(Ok(a))
}

/// #GP(0) (#SS(0) for an RSP or RBP base) when the `len`-byte operand at `a`
/// (canonical) runs past the canonical boundary: the canonical check covers
/// the whole operand before any page is touched (Intel host: STTILECFG and
/// LDTILECFG at 7FFF_FFFF_FFFFH and 7FFF_FFFF_FFC1H are #GP(0), not #PF;
/// corpus/silicon/amx-*-crosses-canonical-boundary-gp.case).
pub fn span_canonical(m: &Machine, ins: &Instruction, a: u64, len: u64) -> Result<(), Fault> {
    // The operand is shorter than the non-canonical hole: it reaches into the
    // hole exactly when its last byte lies there. Wrapping past FFFF_FFFF_FFFF_FFFFH
    // to 0 stays canonical (Intel host: LDTILECFG at FFFF_FFFF_FFFF_FFFFH is #PF
    // there, on the kernel's page).
    if m.canonical(a.wrapping_add(len - 1)) {
        return Ok(());
    }
    let f = if crate::decode::stack_based(ins) {
        Fault::Ss
    } else {
        Fault::gp0()
    };
    Err(m.raise(&rules::MEM_GP_NON_CANONICAL, f))
}
