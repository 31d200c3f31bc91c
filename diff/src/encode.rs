//! Hand encodings of the few instructions cases use (64-bit mode), so that
//! generation costs no assembler call. Each is checked against iced-x86's
//! decoder in the tests.

/// General registers that may serve as an area's base: not RAX/RCX/RDX (the
/// instruction mask and XGETBV's index) nor RSP (the runner's stack).
pub const BASES: [u8; 7] = [3, 5, 6, 7, 9, 12, 13];

/// A memory-operand instruction `[prefixes] [REX] opcode modrm [sib] [disp]`
/// with ModRM.reg = `reg` and the address `[base + disp]`.
pub fn mem(
    out: &mut Vec<u8>,
    prefixes: &[u8],
    rex_w: bool,
    opcode: &[u8],
    reg: u8,
    base: u8,
    disp: i32,
) {
    out.extend_from_slice(prefixes);
    let rex = 0x40 | (rex_w as u8) << 3 | ((reg >> 3) & 1) << 2 | (base >> 3) & 1;
    if rex != 0x40 {
        out.push(rex);
    }
    out.extend_from_slice(opcode);
    let b = base & 7;
    let md: u8 = if disp == 0 && b != 5 {
        0
    } else if (-128..128).contains(&disp) {
        1
    } else {
        2
    };
    out.push(md << 6 | (reg & 7) << 3 | b);
    if b == 4 {
        out.push(0x24);
    }
    match md {
        1 => out.push(disp as i8 as u8),
        2 => out.extend_from_slice(&disp.to_le_bytes()),
        _ => {}
    }
}

/// `mov r32, imm32` (zero-extends into the 64-bit register).
pub fn mov_r32_imm(out: &mut Vec<u8>, r: u8, imm: u32) {
    if r >= 8 {
        out.push(0x41);
    }
    out.push(0xB8 + (r & 7));
    out.extend_from_slice(&imm.to_le_bytes());
}

/// `mov r64, imm64`.
pub fn mov_r64_imm(out: &mut Vec<u8>, r: u8, imm: u64) {
    out.push(0x48 | (r >> 3) & 1);
    out.push(0xB8 + (r & 7));
    out.extend_from_slice(&imm.to_le_bytes());
}

/// `movq xmmN, r64`.
pub fn movq_xmm_r64(out: &mut Vec<u8>, x: u8, r: u8) {
    out.push(0x66);
    out.push(0x48 | ((x >> 3) & 1) << 2 | (r >> 3) & 1);
    out.extend_from_slice(&[0x0F, 0x6E, 0xC0 | (x & 7) << 3 | (r & 7)]);
}

/// `kmovq kN, r64` (VEX.L0.F2.0F.W1 92 /r).
pub fn kmovq_k_r64(out: &mut Vec<u8>, k: u8, r: u8) {
    let b1 = 0xE1 & !(((r >> 3) & 1) << 5);
    out.extend_from_slice(&[0xC4, b1, 0xFB, 0x92, 0xC0 | (k & 7) << 3 | (r & 7)]);
}

pub const XGETBV: [u8; 3] = [0x0F, 0x01, 0xD0];
pub const VZEROUPPER: [u8; 3] = [0xC5, 0xF8, 0x77];
pub const FNINIT: [u8; 2] = [0xDB, 0xE3];

/// The XSAVE-family instructions with a memory operand: (mnemonic, opcode, ModRM.reg).
pub const FAMILY: [(&str, [u8; 2], u8); 10] = [
    ("fxsave", [0x0F, 0xAE], 0),
    ("fxrstor", [0x0F, 0xAE], 1),
    ("xsave", [0x0F, 0xAE], 4),
    ("xrstor", [0x0F, 0xAE], 5),
    ("xsaveopt", [0x0F, 0xAE], 6),
    ("xsavec", [0x0F, 0xC7], 4),
    ("xsaves", [0x0F, 0xC7], 5),
    ("xrstors", [0x0F, 0xC7], 3),
    ("ldmxcsr", [0x0F, 0xAE], 2),
    ("stmxcsr", [0x0F, 0xAE], 3),
];

pub fn family(name: &str) -> ([u8; 2], u8) {
    let f = FAMILY.iter().find(|f| f.0 == name).expect("known mnemonic");
    (f.1, f.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::casefile::disassemble;

    fn dis(b: &[u8]) -> String {
        let d = disassemble(b);
        assert_eq!(d.len(), 1, "{b:02x?} is one instruction");
        d[0].1.clone()
    }

    #[test]
    fn encodings_decode_as_intended() {
        // Checked against iced-x86's decoder (Intel syntax).
        let mut v = Vec::new();
        mem(&mut v, &[], true, &[0x0F, 0xAE], 4, 7, 0);
        assert_eq!(v, [0x48, 0x0F, 0xAE, 0x27]);
        assert_eq!(dis(&v), "xsave64 [rdi]");
        v.clear();
        mem(&mut v, &[], false, &[0x0F, 0xC7], 4, 13, 0x40);
        assert_eq!(dis(&v), "xsavec [r13+40h]");
        v.clear();
        mem(&mut v, &[], true, &[0x0F, 0xAE], 5, 12, 0x1000);
        assert_eq!(dis(&v), "xrstor64 [r12+1000h]");
        v.clear();
        mem(&mut v, &[], false, &[0x0F, 0xAE], 6, 5, 0);
        assert_eq!(dis(&v), "xsaveopt [rbp]");
        v.clear();
        movq_xmm_r64(&mut v, 9, 3);
        assert_eq!(dis(&v), "movq xmm9,rbx");
        v.clear();
        kmovq_k_r64(&mut v, 3, 9);
        assert_eq!(dis(&v), "kmovq k3,r9");
        v.clear();
        mov_r32_imm(&mut v, 2, 7);
        assert_eq!(dis(&v), "mov edx,7");
        v.clear();
        mov_r64_imm(&mut v, 9, 1 << 40);
        assert_eq!(dis(&v), "mov r9,10000000000h");
    }
}
