//! Intel-syntax assembly for `[code]` lines: `xsaves64 [rbx+0x40]`,
//! `mov eax, 0x18e7`, `ldmxcsr dword ptr [rdi]`. The operand parser is ours;
//! the encoding is iced-x86's: every [`Code`] of the mnemonic that takes the
//! parsed operands in 64-bit mode is built and encoded, and the shortest
//! encoding wins (the first in iced's order on a tie). The disassembly xsdiff
//! writes after `#` (iced's Intel formatter: `18E7h`, `[rdi+40h]`) assembles
//! back to an instruction that formats the same.

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One parsed operand.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Reg(Register),
    /// A memory operand and the size its `PTR` qualifier states (bytes).
    Mem(MemoryOperand, Option<usize>),
    Imm(i128),
}

/// Mnemonic (lower case) -> its codes valid in 64-bit mode.
fn codes() -> &'static HashMap<String, Vec<Code>> {
    static T: OnceLock<HashMap<String, Vec<Code>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m: HashMap<String, Vec<Code>> = HashMap::new();
        for c in Code::values() {
            let oc = c.op_code();
            if oc.is_instruction() && oc.mode64() {
                m.entry(format!("{:?}", c.mnemonic()).to_lowercase())
                    .or_default()
                    .push(c);
            }
        }
        m
    })
}

/// Other spellings of a mnemonic (Intel's name, as iced's formatter writes
/// it) -> iced's mnemonic: FWAIT is WAIT (SDM2 "WAIT/FWAIT", opcode 9B).
const MNEMONIC_ALIASES: [(&str, &str); 1] = [("fwait", "wait")];

/// Register name (lower case) -> register.
fn registers() -> &'static HashMap<String, Register> {
    static T: OnceLock<HashMap<String, Register>> = OnceLock::new();
    T.get_or_init(|| {
        Register::values()
            .filter(|&r| r != Register::None)
            .map(|r| (format!("{r:?}").to_lowercase(), r))
            .collect()
    })
}

/// `0x1f`, `1Fh`, `31`, `-8`, `0b101`.
fn number(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r.trim()),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i128::from_str_radix(&h.replace('_', ""), 16).ok()?
    } else if let Some(b) = s.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = s.strip_suffix(['h', 'H']) {
        if !h.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        i128::from_str_radix(h, 16).ok()?
    } else {
        s.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

const SIZES: [(&str, usize); 9] = [
    ("byte", 1),
    ("word", 2),
    ("dword", 4),
    ("fword", 6),
    ("qword", 8),
    ("tbyte", 10),
    ("xmmword", 16),
    ("ymmword", 32),
    ("zmmword", 64),
];

/// `[base + index*scale + disp]`, with an optional `SIZE ptr` before it.
fn memory(s: &str) -> Result<Op, String> {
    let (size, rest) = match s.split_once('[') {
        Some((q, r)) => (q.trim(), r),
        None => unreachable!("called on an operand with `[`"),
    };
    let size = if size.is_empty() {
        None
    } else {
        let q = size.strip_suffix("ptr").map(str::trim).ok_or_else(|| {
            format!("expected `SIZE ptr [..]` (byte, word, dword, qword, ...), found `{s}`")
        })?;
        Some(
            SIZES
                .iter()
                .find(|(n, _)| *n == q)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    format!("unknown operand size `{q}` (expected byte, word, dword, fword, qword, tbyte, xmmword, ymmword or zmmword)")
                })?,
        )
    };
    let inner = rest
        .strip_suffix(']')
        .ok_or_else(|| format!("expected `]` at the end of `{s}`"))?;
    let (mut base, mut index, mut scale, mut disp) = (Register::None, Register::None, 1u32, 0i128);
    // Terms with their signs: `rdi+rsi*4-0x10`.
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut sign = 1i128;
    for ch in inner.chars().filter(|c| !c.is_whitespace()) {
        if ch == '+' || ch == '-' {
            if !cur.is_empty() {
                terms.push((sign, std::mem::take(&mut cur)));
            }
            sign = if ch == '-' { -1 } else { 1 };
        } else {
            cur.push(ch);
        }
    }
    if !cur.is_empty() {
        terms.push((sign, cur));
    }
    for (sign, t) in terms {
        let (a, b) = t.split_once('*').unwrap_or((&t, ""));
        let (reg, sc) = if b.is_empty() {
            (registers().get(a), None)
        } else if let Some(r) = registers().get(a) {
            (Some(r), number(b))
        } else {
            (registers().get(b), number(a))
        };
        match reg {
            Some(&r) => {
                if sign < 0 {
                    return Err(format!("a register cannot be subtracted in `{s}`"));
                }
                if r == Register::RIP {
                    return Err(format!(
                        "RIP-relative operands are not supported (`{s}`): use a register base"
                    ));
                }
                if !(r.is_gpr64() || r.is_gpr32() || r.is_xmm() || r.is_ymm() || r.is_zmm()) {
                    return Err(format!(
                        "`{a}` cannot address memory in `{s}` (expected a 64- or 32-bit register)"
                    ));
                }
                match sc {
                    Some(k @ (1 | 2 | 4 | 8)) if index == Register::None => {
                        index = r;
                        scale = k as u32;
                    }
                    None if base == Register::None => base = r,
                    None if index == Register::None => index = r,
                    _ => return Err(format!("expected `[base + index*scale + displacement]` with a scale of 1, 2, 4 or 8, found `{s}`")),
                }
            }
            None => {
                if b.contains(|c: char| c.is_ascii_alphabetic()) || !b.is_empty() {
                    return Err(format!(
                        "`{t}` is not a register or a scaled index in `{s}`"
                    ));
                }
                let v = number(a).ok_or_else(|| {
                    if a.contains(':') {
                        format!("segment overrides are not supported (`{s}`)")
                    } else {
                        format!("`{a}` is not a register or a number in `{s}`")
                    }
                })?;
                disp += sign * v;
            }
        }
    }
    if disp < i64::MIN as i128 || disp > u64::MAX as i128 {
        return Err(format!("displacement out of range in `{s}`"));
    }
    let disp = disp as i64;
    let displ_size = if disp != 0 || base == Register::None {
        1
    } else {
        0
    };
    let displ_size = if base == Register::None && index == Register::None {
        8
    } else {
        displ_size
    };
    let m = MemoryOperand::new(base, index, scale, disp, displ_size, false, Register::None);
    Ok(Op::Mem(m, size))
}

fn operand(s: &str) -> Result<Op, String> {
    let s = s.trim();
    if s.contains('[') {
        return memory(s);
    }
    if let Some(&r) = registers().get(s) {
        return Ok(Op::Reg(r));
    }
    if let Some(v) = number(s) {
        if v < i64::MIN as i128 || v > u64::MAX as i128 {
            return Err(format!("immediate `{s}` does not fit in 64 bits"));
        }
        return Ok(Op::Imm(v));
    }
    Err(format!(
        "expected a register, a number or a memory operand `[..]`, found `{s}`"
    ))
}

fn imm32(v: i128) -> Result<Result<i32, u32>, ()> {
    if let Ok(x) = i32::try_from(v) {
        Ok(Ok(x))
    } else if let Ok(x) = u32::try_from(v) {
        Ok(Err(x))
    } else {
        Err(())
    }
}

/// The instruction `code` with `ops`, if iced accepts them.
fn build(code: Code, ops: &[Op]) -> Option<Instruction> {
    use Op::*;
    macro_rules! imm {
        ($v:expr, |$x:ident| $e:expr) => {
            match imm32($v).ok()? {
                Ok($x) => $e.ok(),
                Err($x) => $e.ok(),
            }
        };
    }
    match *ops {
        [] => Some(Instruction::with(code)),
        [Reg(a)] => Instruction::with1(code, a).ok(),
        [Mem(a, _)] => Instruction::with1(code, a).ok(),
        [Imm(v)] => imm!(v, |x| Instruction::with1(code, x)),
        [Reg(a), Reg(b)] => Instruction::with2(code, a, b).ok(),
        [Reg(a), Mem(b, _)] => Instruction::with2(code, a, b).ok(),
        [Mem(a, _), Reg(b)] => Instruction::with2(code, a, b).ok(),
        [Reg(a), Imm(v)] => {
            if let Ok(x) = i64::try_from(v) {
                Instruction::with2(code, a, x).ok()
            } else {
                Instruction::with2(code, a, v as u64).ok()
            }
        }
        [Mem(a, _), Imm(v)] => imm!(v, |x| Instruction::with2(code, a, x)),
        [Imm(v), Reg(b)] => imm!(v, |x| Instruction::with2(code, x, b)),
        [Reg(a), Reg(b), Reg(c)] => Instruction::with3(code, a, b, c).ok(),
        [Reg(a), Reg(b), Mem(c, _)] => Instruction::with3(code, a, b, c).ok(),
        [Reg(a), Mem(b, _), Reg(c)] => Instruction::with3(code, a, b, c).ok(),
        [Mem(a, _), Reg(b), Reg(c)] => Instruction::with3(code, a, b, c).ok(),
        [Reg(a), Reg(b), Imm(v)] => imm!(v, |x| Instruction::with3(code, a, b, x)),
        [Reg(a), Mem(b, _), Imm(v)] => imm!(v, |x| Instruction::with3(code, a, b, x)),
        [Mem(a, _), Reg(b), Imm(v)] => imm!(v, |x| Instruction::with3(code, a, b, x)),
        _ => None,
    }
}

/// Assembles one line of Intel-syntax assembly at `ip`; the error says what
/// was expected.
pub fn assemble(line: &str, ip: u64) -> Result<Vec<u8>, String> {
    let text = line.trim().to_lowercase();
    let (mnem, rest) = text
        .split_once(char::is_whitespace)
        .unwrap_or((text.as_str(), ""));
    if [
        "lock", "rep", "repe", "repz", "repne", "repnz", "xacquire", "xrelease",
    ]
    .contains(&mnem)
    {
        return Err(format!(
            "prefix `{mnem}` is not supported in assembly: write the instruction's bytes in hex"
        ));
    }
    let mnem = MNEMONIC_ALIASES
        .iter()
        .find(|a| a.0 == mnem)
        .map_or(mnem, |a| a.1);
    let codes = codes().get(mnem).ok_or_else(|| {
        let near = crate::fields::nearest(mnem, codes().keys().map(String::as_str), 3);
        if near.is_empty() {
            format!("unknown mnemonic `{mnem}`")
        } else {
            format!(
                "unknown mnemonic `{mnem}` (did you mean {}?)",
                near.join(", ")
            )
        }
    })?;
    let ops: Vec<Op> = if rest.trim().is_empty() {
        Vec::new()
    } else {
        rest.split(',').map(operand).collect::<Result<_, _>>()?
    };
    let qualifier = ops.iter().find_map(|o| match o {
        Op::Mem(_, q) => Some(*q),
        _ => None,
    });
    let mut best: Option<(Vec<u8>, Instruction)> = None;
    let mut sizes = Vec::new();
    for &code in codes {
        if code.op_code().op_count() as usize != ops.len() {
            continue;
        }
        let Some(ins) = build(code, &ops) else {
            continue;
        };
        let msize = ins.memory_size().size();
        if let Some(Some(q)) = qualifier {
            if msize != q {
                continue;
            }
        }
        let mut enc = Encoder::new(64);
        if enc.encode(&ins, ip).is_err() {
            continue;
        }
        let bytes = enc.take_buffer();
        if qualifier.is_some() && !sizes.contains(&msize) {
            sizes.push(msize);
        }
        if best.as_ref().is_none_or(|(b, _)| bytes.len() < b.len()) {
            best = Some((bytes, ins));
        }
    }
    if qualifier == Some(None) && sizes.len() > 1 {
        return Err(format!(
            "the memory operand's size is ambiguous in `{}`: write `byte|word|dword|qword ptr [..]`",
            line.trim()
        ));
    }
    best.map(|(b, _)| b).ok_or_else(|| {
        let forms: Vec<&str> = codes
            .iter()
            .map(|c| c.op_code().instruction_string())
            .collect();
        format!(
            "cannot assemble `{}` in 64-bit mode: expected one of {}",
            line.trim(),
            forms.join("; ")
        )
    })
}

/// Whether a `[code]` line is instruction bytes (`48 0f ae 27`): every
/// whitespace-separated token is two hex digits. Anything else is assembly.
pub fn is_hex_line(line: &str) -> bool {
    let mut any = false;
    for t in line.split_whitespace() {
        if t.len() != 2 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::case::CODE_BASE;

    fn asm(s: &str) -> Vec<u8> {
        assemble(s, CODE_BASE).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn xsave_family_and_helpers() {
        // SDM2 XSAVES: NP REX.W + 0F C7 /5; XRSTORS: NP REX.W + 0F C7 /3.
        assert_eq!(asm("xsaves64 [rbx+0x40]"), [0x48, 0x0f, 0xc7, 0x6b, 0x40]);
        assert_eq!(asm("xrstors64 [rbx]"), [0x48, 0x0f, 0xc7, 0x1b]);
        assert_eq!(asm("xsave64 [rdi]"), [0x48, 0x0f, 0xae, 0x27]);
        assert_eq!(
            asm("XSAVEC [RDI + 0x1000]"),
            [0x0f, 0xc7, 0xa7, 0x00, 0x10, 0x00, 0x00]
        );
        // MOV r32, imm32 (B8+rd id) is shorter than C7 /0.
        assert_eq!(asm("mov eax, 0x18e7"), [0xb8, 0xe7, 0x18, 0, 0]);
        // MOV r/m64, imm32 sign-extended (7 bytes) is shorter than B8+rd io (10).
        assert_eq!(
            asm("mov rax, -1"),
            [0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            asm("mov rax, 0x123456789"),
            [0x48, 0xb8, 0x89, 0x67, 0x45, 0x23, 1, 0, 0, 0]
        );
        assert_eq!(asm("xor eax, eax"), [0x31, 0xc0]);
        assert_eq!(asm("wrmsr"), [0x0f, 0x30]);
        assert_eq!(asm("xsetbv"), [0x0f, 0x01, 0xd1]);
        assert_eq!(asm("ldmxcsr dword ptr [rdi]"), [0x0f, 0xae, 0x17]);
        assert_eq!(asm("fldcw [rsi+rcx*2-8]"), [0xd9, 0x6c, 0x4e, 0xf8]);
        // SDM2 WAIT/FWAIT: 9B, either name; iced's formatter writes `fwait`.
        assert_eq!(asm("fwait"), [0x9b]);
        assert_eq!(asm("wait"), [0x9b]);
        // The formatter's own spelling.
        assert_eq!(asm("mov ecx,6A4h"), [0xb9, 0xa4, 0x06, 0, 0]);
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = assemble("xsaves64 rbx", CODE_BASE).unwrap_err();
        assert!(e.contains("XSAVES64 mem"), "{e}");
        let e = assemble("xsavez [rdi]", CODE_BASE).unwrap_err();
        assert!(
            e.contains("unknown mnemonic `xsavez`") && e.contains("xsave"),
            "{e}"
        );
        let e = assemble("add [rdi], 1", CODE_BASE).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        let e = assemble("mov rax, [rip+8]", CODE_BASE).unwrap_err();
        assert!(e.contains("RIP-relative"), "{e}");
    }

    #[test]
    fn hex_lines_are_two_digit_tokens() {
        assert!(is_hex_line("48 0f ae 27"));
        assert!(!is_hex_line("fadd"));
        assert!(!is_hex_line("480fae27"));
        assert!(!is_hex_line("xsave64 [rdi]"));
    }
}
