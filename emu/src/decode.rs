//! Decoding the case's code with iced-x86, and what the decoder tells about an
//! instruction beyond its operation: whether its memory operand uses SS, and
//! whether it is longer than 15 bytes.

use crate::case::CODE_BASE;
use crate::model::CpuModel;
use iced_x86::{CpuidFeature, Decoder, DecoderError, DecoderOptions, Instruction, Register};

/// Decodes the case's code into instructions (at [`CODE_BASE`]). A truncated
/// last instruction comes out as an invalid instruction; [`decode_checked`] tells
/// it apart.
pub fn decode(code: &[u8]) -> Vec<Instruction> {
    decode_checked(code).into_iter().map(|(i, _)| i).collect()
}

/// Decodes the case's code; each instruction comes with `true` when the code
/// ended inside it (hardware would fetch bytes past the case's code).
pub fn decode_checked(code: &[u8]) -> Vec<(Instruction, bool)> {
    decode_with_errors(code)
        .into_iter()
        .map(|(ins, e)| (ins, e == DecoderError::NoMoreBytes))
        .collect()
}

/// Whether a memory operand's access uses SS: in 64-bit mode the ES, CS, SS and
/// DS overrides are ignored (SDM1 §3.3.7.1), so SS is used exactly when the base
/// register is RSP or RBP (ESP/EBP with a 67H prefix). Intel host: a
/// non-canonical `ds: ldmxcsr [rbp]` and `ds: xsave64 [rbp]` give #SS(0), `ss:
/// ldmxcsr [rbx]` gives #GP(0) (corpus/silicon/non-canonical-stack-base-ss.case).
pub fn stack_based(ins: &Instruction) -> bool {
    matches!(
        ins.memory_base(),
        Register::RSP | Register::RBP | Register::ESP | Register::EBP
    )
}

/// The largest span of bytes one instruction's memory operand may cover (an
/// XSAVE area of every component is under 12 KiB on the built-in models).
const MAX_OPERAND_SPAN: u64 = 1 << 16;

/// Whether the instruction's memory operand has a 32-bit address size (67H
/// prefix in 64-bit mode; SDM1 §3.3.7: the effective address is computed in 32
/// bits and zero-extended).
pub fn is_a32(ins: &Instruction) -> bool {
    let (b, i) = (ins.memory_base(), ins.memory_index());
    b.is_gpr32()
        || i.is_gpr32()
        || b == Register::EIP
        || (b == Register::None
            && i == Register::None
            && ins.memory_displ_size() == 4
            && (0..ins.op_count()).any(|k| ins.op_kind(k) == iced_x86::OpKind::Memory))
}

/// The first address past the 32-bit address space.
pub const FOUR_GIB: u64 = 1 << 32;

/// Declines a memory operand with a 32-bit address size whose `span` bytes from
/// `addr` may run past 4 GiB when the arena `mem` lies within reach of either
/// the wrapped addresses (from 0) or the model's unwrapped ones (to 4 GiB + 64
/// KiB). Each byte's address wraps at 4 GiB (Intel host: `xsavec [esp-80h]`
/// with ESP = 0 reports its #PF at cr2 = 1BFH, the area's last byte wrapped).
/// With the arena out of reach (as at [`crate::case::ARENA_BASE`]) every byte
/// either way is on an absent page: the model runs the access unwrapped, faults
/// on the byte the CPU faults on, and [`wrap_fault`] reports its address as
/// the CPU computes it. `span`: the operand's size, or None for an XSAVE-family
/// area (sized later; MAX_OPERAND_SPAN bounds it).
pub fn a32_wrap(
    ins: &Instruction,
    addr: u64,
    span: Option<u64>,
    mem: &crate::memory::Memory,
) -> Result<(), crate::Unsupported> {
    let reach = FOUR_GIB + MAX_OPERAND_SPAN;
    if addr + span.unwrap_or(MAX_OPERAND_SPAN) > FOUR_GIB && mem.base < reach && is_a32(ins) {
        return Err(crate::Unsupported(format!(
            "`{ins}`: a 32-bit address whose operand may wrap at 4 GiB onto the arena is not modelled"
        )));
    }
    Ok(())
}

/// A #PF past 4 GiB raised by an instruction with a 32-bit address size, at the
/// address the CPU computes for that byte (modulo 4 GiB; see [`a32_wrap`]).
pub fn wrap_fault(ins: &Instruction, f: crate::fault::Fault) -> crate::fault::Fault {
    match f {
        crate::fault::Fault::Pf { err, addr } if addr >= FOUR_GIB && is_a32(ins) => {
            crate::fault::Fault::Pf {
                err,
                addr: addr & (FOUR_GIB - 1),
            }
        }
        f => f,
    }
}

/// A legacy prefix (SDM Vol.2 §2.1.1: lock/rep, segment, operand and address
/// size) or a REX prefix.
fn is_prefix(b: u8) -> bool {
    matches!(
        b,
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
    ) || is_rex(b)
}

fn is_rex(b: u8) -> bool {
    (0x40..=0x4f).contains(&b)
}

/// Whether the (invalid) instruction at `ins` is longer than 15 bytes (SDM
/// Vol.2 §2.3.11: #GP(0)). iced-x86 rejects such an instruction without saying
/// how long it is; its length is measured by decoding it again with the run of
/// prefixes collapsed (one copy of each distinct legacy prefix, in the order of
/// its last occurrence, so the last segment or F2/F3 prefix still wins, and the
/// REX prefix if it is the last byte before the opcode), then adding back the
/// bytes removed. 15 or more prefix bytes can never end within 15 bytes.
/// `None`: the length cannot be told (see the end).
pub fn too_long(code: &[u8], ins: &Instruction, model: &CpuModel) -> Option<bool> {
    let options = model.decoder_options();
    let start = ins.ip().wrapping_sub(CODE_BASE) as usize;
    let Some(rest) = code.get(start..) else {
        return Some(false);
    };
    let run = rest.iter().take_while(|&&b| is_prefix(b)).count();
    if run >= 15 {
        return Some(true);
    }
    let (prefixes, tail) = rest.split_at(run);
    let mut kept: Vec<u8> = Vec::new();
    for &b in prefixes.iter().filter(|&&b| !is_rex(b)) {
        kept.retain(|&k| k != b);
        kept.push(b);
    }
    if let Some(&last) = prefixes.last().filter(|&&b| is_rex(b)) {
        kept.push(last);
    }
    // The length decoder sizes an opcode before anything checks that it is
    // valid: an undefined form (66H 0F 78 /6 on Intel) still has the length of
    // its opcode map entry. When the collapsed bytes do not decode, they are
    // sized again without the mandatory prefixes (66H, F2H, F3H), which select
    // the form but not the ModRM and displacement (NP 0F 78 /r is VMREAD).
    let without_mandatory: Vec<u8> = kept
        .iter()
        .copied()
        .filter(|b| !matches!(b, 0x66 | 0xf2 | 0xf3))
        .collect();
    // On a CPU with SSE4a, 66H 0F 78H is group 17 (EXTRQ xmm, imm8, imm8): the
    // length decoder gives every ModRM.reg the two immediates of /0, and only
    // /0 is defined (Zen 5 host: 66H 0F 78H /7 ib ib after 10 prefixes, 16
    // bytes, is #GP(0); after 9, 15 bytes, #UD; corpus/silicon
    // insn-extrq-group-length-*-amd.case). Sized as /0.
    let mandatory = kept.iter().rev().find(|b| matches!(b, 0x66 | 0xf2 | 0xf3));
    let group17 = (model.sse4a && mandatory == Some(&0x66))
        .then(|| match tail {
            [0x0f, 0x78, modrm, ..] => {
                let mut t = tail.to_vec();
                t[2] = modrm & !0x38;
                Some((kept.clone(), t))
            }
            _ => None,
        })
        .flatten();
    // Sized by the first candidate that decodes. An opcode of AMD's retired
    // extensions (3DNow!, SSE4a, XOP, FMA4, TBM, LWP), which iced-x86 decodes for
    // any CPU, is sized by a CPU without them as something else: Intel host, 13
    // REX prefixes then 0F 0F 0F 1C (3DNow! with ModRM and suffix, 17 bytes) is
    // #UD, not #GP(0) (fuzz/artifacts-found/diff_native-3dnow-length-ud.bin); 7
    // 67H then XOP map 0AH 12H /0 id (LWPINS, 16 bytes) is #UD
    // (diff_native-lwp-length-ud.bin). Unknown, except SSE4a on a CPU that has it.
    let sized = std::iter::once((kept.clone(), tail.to_vec()))
        .chain(group17)
        .chain(std::iter::once((without_mandatory, tail.to_vec())))
        .find_map(|(mut p, t)| {
            let removed = run - p.len();
            p.extend_from_slice(&t);
            let ins = Decoder::with_ip(64, &p, CODE_BASE, options).decode();
            if ins.is_invalid() {
                return None;
            }
            let retired = ins.cpuid_features().iter().any(|f| match f {
                CpuidFeature::SSE4A => !model.sse4a,
                CpuidFeature::D3NOW
                | CpuidFeature::D3NOWEXT
                | CpuidFeature::XOP
                | CpuidFeature::FMA4
                | CpuidFeature::TBM
                | CpuidFeature::LWP => true,
                _ => false,
            });
            Some((!retired).then(|| ins.len() + removed > 15))
        });
    // Neither decodes (or only as a retired AMD opcode): the length is the
    // hardware length decoder's. The longest form (3-byte opcode, ModRM, SIB,
    // disp32, imm32) is 13 bytes, so after at most two prefixes it cannot pass
    // 15 bytes.
    sized.flatten().or((run <= 2).then_some(false))
}

/// LOCK-prefixed forms that iced-x86 calls invalid (LOCK on an instruction that
/// cannot be locked is #UD, SDM Vol.2 §2.1.1) but an AMD CPU runs: (opcode
/// after the prefixes, ModRM.reg or any, memory operand only, what it runs as).
/// Neither is modelled, so a case reaching one is declined, not predicted #UD.
const AMD_LOCK_ACCEPTED: [(&[u8], Option<u8>, bool, &str); 3] = [
    // AMD's MOV CR8 (CPUID 80000001H:ECX[4]); Zen 5 host: F0 0F 22 00 and F0 0F
    // 20 00 at CPL 3 are #GP(0), as MOV CRn is (diff_native finding).
    (
        &[0x0F, 0x20],
        None,
        false,
        "LOCK MOV CRn, MOV CR8 on AMD (CPUID 80000001H:ECX[4]); MOV CRn",
    ),
    (
        &[0x0F, 0x22],
        None,
        false,
        "LOCK MOV CRn, MOV CR8 on AMD (CPUID 80000001H:ECX[4]); MOV CRn",
    ),
    // Zen 5 host: F0 0F 00 /5 (LOCK VERW m16) reads its operand (#PF on an
    // absent page) and completes without #UD; LOCK VERR m16 and LOCK VERW r16
    // are #UD (corpus/silicon/insn-lock-verw-runs-amd*.case; diff_native finding).
    (
        &[0x0F, 0x00],
        Some(5),
        true,
        "LOCK VERW m16, which AMD runs without #UD; VERW",
    ),
];

/// What the undefined (to iced-x86) instruction `ins` runs as on `model`'s CPU,
/// when it is one of [`AMD_LOCK_ACCEPTED`] on an AMD model.
pub fn amd_lock_accepted(model: &CpuModel, code: &[u8], ins: &Instruction) -> Option<&'static str> {
    let at = ins.ip().wrapping_sub(CODE_BASE) as usize;
    let bytes = code.get(at..).unwrap_or_default();
    let n = bytes.iter().take_while(|&&b| is_prefix(b)).count();
    if model.vendor != crate::model::Vendor::Amd || !bytes[..n].contains(&0xF0) {
        return None;
    }
    let rest = &bytes[n..];
    AMD_LOCK_ACCEPTED
        .iter()
        .find(|(op, reg, mem, _)| {
            let modrm = rest.get(op.len()).copied();
            rest.starts_with(op)
                && reg.is_none_or(|r| modrm.is_some_and(|m| (m >> 3) & 7 == r))
                && (!mem || modrm.is_some_and(|m| m >> 6 != 3))
        })
        .map(|e| e.3)
}

/// Decodes the case's code with iced-x86's verdict on each instruction
/// (`DecoderError::None` for a valid one).
pub fn decode_with_errors(code: &[u8]) -> Vec<(Instruction, DecoderError)> {
    decode_lazily(code, DecoderOptions::NONE).collect()
}

/// [`decode_with_errors`] one instruction at a time, as the run reaches it
/// (nothing after a fault is decoded), with `options` ([`CpuModel::decoder_options`]).
pub fn decode_lazily(
    code: &[u8],
    options: u32,
) -> impl Iterator<Item = (Instruction, DecoderError)> + '_ {
    let mut d = Decoder::with_ip(64, code, CODE_BASE, options);
    std::iter::from_fn(move || {
        d.can_decode().then(|| {
            let ins = d.decode();
            let e = if ins.is_invalid() {
                d.last_error()
            } else {
                DecoderError::None
            };
            (ins, e)
        })
    })
}
