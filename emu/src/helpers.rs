//! The few non-XSAVE instructions a case may use to change state between
//! XSAVE-family instructions: GPR and memory moves, LDMXCSR/STMXCSR, MOVQ to an
//! XMM register, PXOR, VZEROUPPER, KMOVQ, FNINIT, NOP, UD2. Writing a component's
//! registers sets its XINUSE and XMODIFIED bits (SDM1 §13.6).

use crate::exec::{Machine, Unsupported};
use crate::fault::Fault;
use crate::legacy;
use iced_x86::{Code, Instruction, OpKind, Register};

/// Under `xinuse-by-contents` (AMD) the bit follows the contents after LDMXCSR,
/// FNINIT and the PXOR zeroing idiom; other register writes set it
/// ([`touch_always`], [`sse_write`]).
/// AMD Zen 5 host, from the init state: MOVQ XMM0, RAX with RAX = 0 and
/// PXOR XMM0, XMM1 read XINUSE[1] = 1; PXOR XMM0, XMM0, LDMXCSR 1F80H and
/// FNINIT read 0.
fn touch(m: &mut Machine, i: usize) {
    if m.quirks().xinuse_by_contents && m.st.is_init(i) {
        m.st.xinuse &= !(1 << i);
    } else {
        m.st.xinuse |= 1 << i;
    }
    m.st.xmodified |= 1 << i;
}

fn touch_always(m: &mut Machine, i: usize) {
    m.st.xinuse |= 1 << i;
    m.st.xmodified |= 1 << i;
}

/// An SSE instruction wrote an XMM register. `sse-write-avx-under-zmm-hi256`:
/// with ZMM_Hi256 in use it also puts AVX in use (AMD Zen 5 host, ZMM11[511:256]
/// non-zero: MOVQ XMM7, R8 and PXOR XMM0, XMM0 read XINUSE[2] = 1; with only
/// Hi16_ZMM or opmask in use, 0).
fn sse_write(m: &mut Machine, zero_idiom: bool) {
    if zero_idiom {
        touch(m, 1);
    } else {
        touch_always(m, 1);
    }
    if m.quirks().sse_write_avx_under_zmm_hi256 && m.st.xinuse >> 6 & 1 != 0 {
        touch_always(m, 2);
    }
}

fn data_addr(m: &Machine, ins: &Instruction, size: u64) -> Result<Result<u64, Fault>, Unsupported> {
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
    // SDM2 (LDMXCSR, MOV, ... 64-bit mode exceptions): a non-canonical address is
    // #SS(0) when the access uses SS, #GP(0) otherwise.
    if !m.canonical(a) {
        return Ok(Err(if crate::exec::stack_based(ins) {
            Fault::Ss
        } else {
            Fault::gp0()
        }));
    }
    if m.ctl.alignment_checking() && a % size != 0 {
        return Ok(Err(Fault::Ac));
    }
    Ok(Ok(a))
}

fn gpr(r: Register) -> usize {
    r.full_register().number()
}

pub fn step_helper(m: &mut Machine, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
    let r = match ins.code() {
        // UD2 is #UD by definition (SDM2 UD).
        // UD0, UD1, UD2: defined to raise #UD (UD0 without ModRM on AMD).
        Code::Ud2
        | Code::Ud0
        | Code::Ud0_r16_rm16
        | Code::Ud0_r32_rm32
        | Code::Ud0_r64_rm64
        | Code::Ud1_r16_rm16
        | Code::Ud1_r32_rm32
        | Code::Ud1_r64_rm64 => Err(Fault::Ud),
        Code::Nopd | Code::Nopq | Code::Nopw | Code::Nop_rm32 | Code::Nop_rm16 | Code::Nop_rm64 => {
            Ok(())
        }
        Code::Mov_r64_imm64 => {
            m.gprs[gpr(ins.op0_register())] = ins.immediate64();
            Ok(())
        }
        Code::Mov_r32_imm32 => {
            m.gprs[gpr(ins.op0_register())] = ins.immediate32() as u64;
            Ok(())
        }
        Code::Mov_rm64_imm32 if ins.op0_kind() == OpKind::Register => {
            m.gprs[gpr(ins.op0_register())] = ins.immediate32to64() as u64;
            Ok(())
        }
        Code::Mov_rm64_r64 | Code::Mov_r64_rm64
            if ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register =>
        {
            m.gprs[gpr(ins.op0_register())] = m.gprs[gpr(ins.op1_register())];
            Ok(())
        }
        Code::Mov_rm64_r64 => match data_addr(m, ins, 8)? {
            Ok(a) => {
                let v = m.gprs[gpr(ins.op1_register())];
                let cpl = m.ctl.cpl;
                m.mem.write(a, &v.to_le_bytes(), cpl)
            }
            Err(f) => Err(f),
        },
        Code::Mov_r64_rm64 => match data_addr(m, ins, 8)? {
            Ok(a) => {
                let mut b = [0u8; 8];
                let cpl = m.ctl.cpl;
                m.mem
                    .read(a, &mut b, cpl)
                    .map(|_| m.gprs[gpr(ins.op0_register())] = u64::from_le_bytes(b))
            }
            Err(f) => Err(f),
        },
        Code::Ldmxcsr_m32 => match data_addr(m, ins, 4)? {
            Ok(a) => {
                let mut b = [0u8; 4];
                let cpl = m.ctl.cpl;
                match m.mem.read(a, &mut b, cpl) {
                    Ok(()) => {
                        let v = u32::from_le_bytes(b);
                        // LDMXCSR is an SSE instruction: it puts SSE in use whatever
                        // the value (Intel host: XSAVE64 after LDMXCSR 1F80H writes
                        // XSTATE_BV[1] = 1; native case `ldmxcsr_default_puts_sse_in_use`).
                        legacy::check_mxcsr(m, v).map(|_| {
                            m.st.mxcsr = v;
                            touch(m, 1);
                        })
                    }
                    Err(f) => Err(f),
                }
            }
            Err(f) => Err(f),
        },
        Code::Stmxcsr_m32 => match data_addr(m, ins, 4)? {
            Ok(a) => {
                let cpl = m.ctl.cpl;
                let v = m.st.mxcsr;
                m.mem.write(a, &v.to_le_bytes(), cpl)
            }
            Err(f) => Err(f),
        },
        Code::Movq_xmm_rm64 if ins.op1_kind() == OpKind::Register => {
            let x = ins.op0_register().number();
            let v = m.gprs[gpr(ins.op1_register())];
            m.st.xmm[x] = [0; 16];
            m.st.xmm[x][..8].copy_from_slice(&v.to_le_bytes());
            sse_write(m, false);
            Ok(())
        }
        Code::Pxor_xmm_xmmm128 if ins.op1_kind() == OpKind::Register => {
            let d = ins.op0_register().number();
            let s = ins.op1_register().number();
            for k in 0..16 {
                m.st.xmm[d][k] ^= m.st.xmm[s][k];
            }
            sse_write(m, d == s);
            Ok(())
        }
        Code::VEX_Vzeroupper => {
            if m.ctl.xcr0 & 0b110 != 0b110 {
                return Ok(Err(Fault::Ud));
            }
            m.st.init_component(2);
            if m.model.component(6).is_some() {
                m.st.comp_mut(6).fill(0);
            }
            m.st.xmodified |= 1 << 2 | 1 << 6;
            // Both are now in init configuration and tracked as such (Intel host:
            // XINUSE[2] = XINUSE[6] = 0 after it; native case `vzeroupper_then_xsave64`).
            m.st.xinuse &= !(1 << 2 | 1 << 6);
            Ok(())
        }
        Code::VEX_Kmovq_kr_r64 => {
            if m.ctl.xcr0 & 0xE6 != 0xE6 {
                return Ok(Err(Fault::Ud));
            }
            let k = ins.op0_register().number();
            let v = m.gprs[gpr(ins.op1_register())];
            m.st.comp_mut(5)[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
            // Zen 5 host: KMOVQ K1, RAX with RAX = 0 reads XINUSE[5] = 1.
            touch_always(m, 5);
            Ok(())
        }
        Code::Fninit => {
            // The physical registers keep their contents while TOP becomes 0: the
            // slot saved as ST(i) holds R(i) afterwards, which was ST((i - TOP) mod 8)
            // (seen on the Intel host: ST7 with TOP = 4 comes back as ST3).
            let old = m.st.x87;
            let top = ((old.fsw >> 11) & 7) as usize;
            let st = std::array::from_fn(|i| old.st[(i + 8 - top) % 8]);
            m.st.x87 = crate::state::X87 {
                st,
                ..crate::state::X87::init()
            };
            touch(m, 0);
            Ok(())
        }
        _ => return Err(Unsupported(format!("instruction `{ins}` is not modelled"))),
    };
    Ok(r)
}
