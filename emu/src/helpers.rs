//! The few non-XSAVE instructions a case may use to change state between
//! XSAVE-family instructions: GPR and memory moves, register-only GPR
//! arithmetic (XOR, ADD, SUB, AND, OR, MOV, LEA; RFLAGS is not part of an
//! outcome), LDMXCSR/STMXCSR, MOVQ to an XMM register, PXOR, VZEROUPPER,
//! VZEROALL, KMOVQ, FNINIT, FLDCW, FNSTCW, FNSTSW, FWAIT, NOP, UD2, and the AMX
//! LDTILECFG, STTILECFG, TILERELEASE ([`crate::tile_config`]). Writing a component's
//! registers sets its XINUSE and XMODIFIED bits (SDM1 §13.6). Anything else is
//! declined with the instruction's text.

use crate::fault::Fault;
use crate::legacy;
use crate::machine::{Machine, Policy, Unsupported};
use crate::operand::{data_addr, wrote};
use crate::rules;
use iced_x86::{Code, Instruction, OpKind, Register};

/// Under `xinuse-by-contents` (AMD) the bit follows the contents after LDMXCSR,
/// FNINIT and the PXOR zeroing idiom; other register writes set it
/// ([`touch_always`], [`sse_write`]).
/// AMD Zen 5 host, from the init state: MOVQ XMM0, RAX with RAX = 0 and
/// PXOR XMM0, XMM1 read XINUSE[1] = 1; PXOR XMM0, XMM0, LDMXCSR 1F80H and
/// FNINIT read 0.
fn touch(m: &mut Machine, i: usize) {
    touch_always(m, i);
    if m.quirks().xinuse_by_contents && m.st.is_init(i) {
        m.st.xinuse &= !(1 << i);
    }
}

fn touch_always(m: &mut Machine, i: usize) {
    m.st.xinuse |= 1 << i;
    m.st.xmodified |= 1 << i;
}

/// Notes (architectural policy) that this instruction set component i's
/// registers: a changed value there breaks its semantics.
fn wrote_comp(m: &mut Machine, i: usize) {
    m.set_by(1 << i, &rules::INSN_SEMANTICS);
}

/// An SSE instruction wrote an XMM register. `sse-write-avx-under-zmm-hi256`:
/// with ZMM_Hi256 in use it also puts AVX in use (AMD Zen 5 host, ZMM11[511:256]
/// non-zero: MOVQ XMM7, R8 and PXOR XMM0, XMM0 read XINUSE[2] = 1; with only
/// Hi16_ZMM or opmask in use, 0).
fn sse_write(m: &mut Machine, reg: usize, zero_idiom: bool) {
    // One register written: the others keep their alternatives.
    let r = 16 * reg as u32;
    m.set_bytes_by(1, r..r + 16, &rules::INSN_SEMANTICS);
    if zero_idiom {
        touch(m, 1);
    } else {
        touch_always(m, 1);
    }
    if m.quirks().sse_write_avx_under_zmm_hi256 && m.st.xinuse >> 6 & 1 != 0 {
        touch_always(m, 2);
    }
}

fn gpr(r: Register) -> usize {
    r.full_register().number()
}

pub fn step_helper(m: &mut Machine, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
    let before = m.gprs;
    let r = step_other(m, ins)?;
    if m.policy == Policy::Architectural {
        // A GPR it wrote, changed or not (MOV EAX, 0 over 0).
        let dest = (r.is_ok() && ins.op_count() > 0 && ins.op0_kind() == OpKind::Register)
            .then(|| ins.op0_register().full_register())
            .filter(|r| r.is_gpr64())
            .map(|r| r.number());
        for (k, b) in before.iter().enumerate() {
            if m.gprs[k] != *b || dest == Some(k) {
                m.prov.gpr(k, &rules::INSN_SEMANTICS, m.site);
            }
        }
    }
    Ok(r)
}

fn step_other(m: &mut Machine, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
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
        | Code::Ud1_r64_rm64 => Err(m.raise(&rules::INSN_UD_INVALID, Fault::Ud)),
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
                let r = m.mem.write(a, &v.to_le_bytes(), cpl);
                if r.is_ok() {
                    wrote(m, a, 8, None);
                }
                r
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
                        legacy::check_mxcsr(m, v, &rules::LDMXCSR_GP_RESERVED).map(|_| {
                            m.st.mxcsr = v;
                            m.mxcsr_by(&rules::INSN_SEMANTICS);
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
                let r = m.mem.write(a, &v.to_le_bytes(), cpl);
                if r.is_ok() {
                    // MXCSR: capture-image bytes 24..28.
                    wrote(m, a, 4, Some(crate::provenance::Source::Legacy(24)));
                }
                r
            }
            Err(f) => Err(f),
        },
        Code::Movq_xmm_rm64 if ins.op1_kind() == OpKind::Register => {
            let x = ins.op0_register().number();
            let v = m.gprs[gpr(ins.op1_register())];
            m.st.xmm[x] = [0; 16];
            m.st.xmm[x][..8].copy_from_slice(&v.to_le_bytes());
            sse_write(m, x, false);
            Ok(())
        }
        Code::Pxor_xmm_xmmm128 if ins.op1_kind() == OpKind::Register => {
            let d = ins.op0_register().number();
            let s = ins.op1_register().number();
            let (dv, sv) = (m.st.xmm[d], m.st.xmm[s]);
            for k in 0..16 {
                m.st.xmm[d][k] ^= m.st.xmm[s][k];
            }
            // Each byte of XMMd is XMMd ^ XMMs: the alternatives of both
            // combine (PXOR XMMd, XMMd is 0 whatever they were).
            let pairs =
                (d != s).then(|| m.lat.state_pairs(1, 16 * d as u32, 16 * s as u32, &dv, &sv));
            sse_write(m, d, d == s);
            if let Some(p) = pairs {
                m.lat.state_combined(1, 16 * d as u32, p, |a, b| a ^ b);
            }
            Ok(())
        }
        Code::VEX_Vzeroupper | Code::VEX_Vzeroall => {
            return Ok(vzero(m, ins.code() == Code::VEX_Vzeroall))
        }
        Code::VEX_Kmovq_kr_r64 => {
            if m.ctl.xcr0 & 0xE6 != 0xE6 {
                return Ok(Err(m.raise(&rules::INSN_SEMANTICS, Fault::Ud)));
            }
            let k = ins.op0_register().number();
            let v = m.gprs[gpr(ins.op1_register())];
            m.st.comp_mut(5)[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
            // Zen 5 host: KMOVQ K1, RAX with RAX = 0 reads XINUSE[5] = 1.
            touch_always(m, 5);
            let r = 8 * k as u32;
            m.set_bytes_by(5, r..r + 8, &rules::INSN_SEMANTICS);
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
            // The alternatives of the ST bytes move with the registers.
            let moved = m.lat.state_taken(0);
            wrote_comp(m, 0);
            m.lat.state_put(0, moved, |j| {
                let (r, b) = (j.saturating_sub(32) / 16, j.saturating_sub(32) % 16);
                32 + 16 * ((r as usize + top) % 8) as u32 + b
            });
            Ok(())
        }
        Code::Lea_r64_m | Code::Lea_r32_m => {
            // LEA computes the address without accessing memory: no canonical or
            // alignment check (SDM2 LEA); a 32-bit destination zero-extends.
            let gprs = m.gprs;
            let rip = ins.next_ip();
            let a = ins
                .virtual_address(1, 0, |r, _, _| match r {
                    Register::RIP => Some(rip),
                    Register::None | Register::DS | Register::SS => Some(0),
                    r if r.is_gpr64() => Some(gprs[r.number()]),
                    r if r.is_gpr32() => Some(gprs[r.number()] & 0xFFFF_FFFF),
                    _ => None,
                })
                .ok_or_else(|| Unsupported(format!("cannot compute the address of `{ins}`")))?;
            let w = ins.code() == Code::Lea_r64_m;
            m.gprs[gpr(ins.op0_register())] = if w { a } else { a & 0xFFFF_FFFF };
            Ok(())
        }
        Code::Fldcw_m2byte | Code::Fnstcw_m2byte | Code::Fnstsw_m2byte | Code::Fnstsw_AX => {
            return x87_control(m, ins)
        }
        Code::VEX_Tilerelease | Code::VEX_Ldtilecfg_m512 | Code::VEX_Sttilecfg_m512 => {
            return crate::tile_config::step(m, ins)
        }
        Code::Wait => {
            // FWAIT is #NM only when CR0.MP = CR0.TS = 1 (SDM2 WAIT/FWAIT): CR0.MP is
            // not part of a case's control state, so TS = 1 is declined.
            if m.ctl.cr0_ts {
                return Err(Unsupported(
                    "`fwait` with CR0.TS = 1: its #NM depends on CR0.MP, which a case does not set"
                        .into(),
                ));
            }
            if m.st.x87.fsw & 0x80 != 0 {
                return Err(Unsupported(
                    "`fwait` with FSW.ES = 1: the pending x87 exception (#MF) is not modelled"
                        .into(),
                ));
            }
            // An x87 instruction: XINUSE[0] and XMODIFIED[0] become 1 with no
            // register changed (Intel Xeon with AMX host: from the init state
            // XGETBV(1) reads bit 0 set, and XSAVEOPT after XRSTOR; FWAIT writes
            // x87 again: corpus/silicon/fwait-*.case). Under xinuse-by-contents
            // the bit follows the contents, as for FNINIT (not yet seen on AMD).
            touch(m, 0);
            Ok(())
        }
        _ => match gpr_alu(m, ins) {
            Some(r) => r,
            None => return Err(Unsupported(format!("instruction `{ins}` is not modelled"))),
        },
    };
    Ok(r)
}

/// VZEROUPPER zeroes bits MAXVL-1:128 of YMM/ZMM0..15 (AVX and ZMM_Hi256),
/// VZEROALL bits MAXVL-1:0 (also the XMM registers: SSE), in 64-bit mode
/// registers 0..15 only (Hi16_ZMM kept). Exception type 8 (SDM2 §2.8): #UD if
/// CR4.OSXSAVE = 0 or XCR0[2:1] ≠ 11b, then #NM if CR0.TS = 1.
///
/// Intel host: each zeroed component is in init configuration and not in use
/// afterwards, whatever was in use before (VZEROUPPER: native case
/// `vzeroupper_then_xsave64`; VZEROALL: XGETBV(1) reads 0 for SSE, AVX and
/// ZMM_Hi256 with opmask and Hi16_ZMM kept in use,
/// corpus/silicon/xinuse-vzeroall-*.case). Under `xinuse-by-contents` VZEROALL's
/// bits follow the contents (not yet seen on AMD).
fn vzero(m: &mut Machine, all: bool) -> Result<(), Fault> {
    if !m.ctl.cr4_osxsave || m.ctl.xcr0 & 0b110 != 0b110 {
        return Err(m.raise(&rules::INSN_SEMANTICS, Fault::Ud));
    }
    if m.ctl.cr0_ts {
        return Err(m.raise(&rules::INSN_SEMANTICS, Fault::Nm));
    }
    m.set_by(1 << 2 | 1 << 6, &rules::INSN_SEMANTICS);
    m.st.init_component(2);
    if m.model.component(6).is_some() {
        m.st.init_component(6);
    }
    m.st.xmodified |= 1 << 2 | 1 << 6;
    if !all {
        m.st.xinuse &= !(1 << 2 | 1 << 6);
        return Ok(());
    }
    m.st.xmm = [[0; 16]; 16];
    m.set_bytes_by(1, 0..256, &rules::INSN_SEMANTICS);
    m.st.xmodified |= 1 << 1;
    for i in [1, 2, 6] {
        if m.quirks().xinuse_by_contents {
            touch(m, i);
        } else {
            m.st.xinuse &= !(1 << i);
        }
    }
    Ok(())
}

/// XOR, ADD, SUB, AND, OR and MOV between 64- or 32-bit registers or with an
/// immediate (SDM2 each instruction's Operation; a 32-bit destination is
/// zero-extended, SDM1 §3.4.1.1). None for any other form.
fn gpr_alu(m: &mut Machine, ins: &Instruction) -> Option<Result<(), Fault>> {
    use iced_x86::Mnemonic as M;
    if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register || ins.has_lock_prefix() {
        return None;
    }
    let d = ins.op0_register();
    let wide = d.is_gpr64();
    if !wide && !d.is_gpr32() {
        return None;
    }
    let src = match ins.op1_kind() {
        OpKind::Register
            if ins.op1_register().is_gpr64() == wide && (wide || ins.op1_register().is_gpr32()) =>
        {
            m.gprs[gpr(ins.op1_register())]
        }
        OpKind::Immediate32
        | OpKind::Immediate8to32
        | OpKind::Immediate32to64
        | OpKind::Immediate8to64
        | OpKind::Immediate64 => ins.immediate(1),
        _ => return None,
    };
    let a = m.gprs[gpr(d)];
    let v = match ins.mnemonic() {
        M::Xor => a ^ src,
        M::Add => a.wrapping_add(src),
        M::Sub => a.wrapping_sub(src),
        M::And => a & src,
        M::Or => a | src,
        M::Mov => src,
        _ => return None,
    };
    m.gprs[gpr(d)] = if wide { v } else { v & 0xFFFF_FFFF };
    Some(Ok(()))
}

/// FLDCW, FNSTCW and FNSTSW: x87 control instructions, which leave FIP, FDP and
/// FOP as they are (SDM1 §8.1.8). #NM when CR0.EM or CR0.TS is 1 (SDM2 each
/// instruction's exceptions).
fn x87_control(m: &mut Machine, ins: &Instruction) -> Result<Result<(), Fault>, Unsupported> {
    if m.ctl.cr0_em || m.ctl.cr0_ts {
        return Ok(Err(Fault::Nm));
    }
    if ins.code() == Code::Fnstsw_AX {
        let ax = m.gprs[0] & !0xFFFF | m.st.x87.fsw as u64;
        m.gprs[0] = ax;
        return Ok(Ok(()));
    }
    let a = match data_addr(m, ins, 2)? {
        Ok(a) => a,
        Err(f) => return Ok(Err(f)),
    };
    let cpl = m.ctl.cpl;
    Ok(match ins.code() {
        Code::Fldcw_m2byte => {
            // FLDCW is a waiting instruction: a pending unmasked exception (FSW.ES)
            // is #MF first, and a control word unmasking a set flag makes one
            // pending (SDM2 FLDCW): neither is modelled.
            let mut b = [0u8; 2];
            match m.mem.read(a, &mut b, cpl) {
                Ok(()) => {
                    let v = u16::from_le_bytes(b);
                    let fsw = m.st.x87.fsw;
                    if fsw & 0x80 != 0 || fsw & 0x3F & !v != 0 {
                        return Err(Unsupported(format!(
                            "`{ins}` with FSW {fsw:#x} and FCW {v:#x}: a pending unmasked x87 exception (#MF) is not modelled"
                        )));
                    }
                    m.st.x87.fcw = v;
                    touch(m, 0);
                    Ok(())
                }
                Err(f) => Err(f),
            }
        }
        Code::Fnstcw_m2byte => m.mem.write(a, &m.st.x87.fcw.to_le_bytes(), cpl),
        _ => m.mem.write(a, &m.st.x87.fsw.to_le_bytes(), cpl),
    })
}
