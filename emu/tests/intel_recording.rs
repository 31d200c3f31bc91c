//! Calibration of the `xeon-amx-vm` model against silicon: 1500 random ring-3
//! cases recorded on the Intel Xeon with AMX by an independent probe
//! (`tests/data/intel-xeon-amx-seed11.jsonl.gz`, format in
//! `tests/data/README-intel-recording.md`). Each record becomes an
//! `xsave_emu::Case`; the model's prediction must equal every recorded field, and
//! the envelope (what the SDM allows) must admit the recorded outcome.
//!
//! How a record becomes a case:
//! - control: `Control::user(xeon-amx-vm)` (XCR0 0x600e7, IA32_XFD[18] armed as
//!   Linux leaves it, CPL 3);
//! - init: the recorded first 2816 bytes, zero-padded to the standard size (11008);
//!   the recorded images never set XSTATE_BV[18], so the tail is not read;
//! - arena: B = ARENA_BASE + 4096 + `area_page_offset`; `buf_before` at B. The bytes
//!   past 2816 (TILEDATA) were not recorded: they are taken as zero when bytes
//!   2752..2816 of `buf_before` are all zero, else as 0x5A (the probe fills save
//!   buffers with non-zero patterns: every save record with TILEDATA untouched
//!   reports `tail_zero` = 0). With `straddle` = 1, every page from
//!   B + `bytes_to_next_page` on has the protection `next_page`;
//! - code: the instruction (REX.W for the `64` names) with base RBX = B, and
//!   EDX:EAX = `rfbm`.
//!
//! Recorded faults: SIGSEGV trap 13 = #GP(0), trap 14 = #PF(err) at B + `addr_off`.
//! SIGILL is XFD's #NM: Linux delivers it with a stale trapno/err (the thread's
//! previous fault), and none of these encodings can #UD here (no prefixes, XSAVE
//! enabled), so SIGILL is compared as #NM.

use flate2::read::GzDecoder;
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{Case, Control, CpuModel, Fault, FaultAt, Memory, Outcome, Prot};

const RECORDED: usize = 2816;
const PAGE: u64 = 4096;

struct Record {
    n: u64,
    insn: String,
    case: Case,
    b: u64,
    fault: Option<Fault>,
    final_head: Vec<u8>,
    buf_after: Vec<u8>,
    xinuse: u64,
    tail_changed: bool,
    tail_zero: bool,
}

fn hex(v: &Value, field: &str, n: u64) -> Vec<u8> {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("record {n}: field `{field}` is not a string"));
    (0..s.len() / 2)
        .map(|k| {
            u8::from_str_radix(&s[2 * k..2 * k + 2], 16)
                .unwrap_or_else(|_| panic!("record {n}: field `{field}`: bad hex at {k}"))
        })
        .collect()
}

fn hex_u64(v: &Value, field: &str, n: u64) -> u64 {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("record {n}: field `{field}` is not a string"));
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("record {n}: field `{field}`: `{s}`"))
}

fn int(v: &Value, field: &str, n: u64) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("record {n}: field `{field}` is not an integer"))
}

fn code_for(insn: &str) -> Code {
    match insn {
        "xsave" => Code::Xsave_mem,
        "xsave64" => Code::Xsave64_mem,
        "xsaveopt" => Code::Xsaveopt_mem,
        "xsaveopt64" => Code::Xsaveopt64_mem,
        "xsavec" => Code::Xsavec_mem,
        "xsavec64" => Code::Xsavec64_mem,
        "xsaves" => Code::Xsaves_mem,
        "xsaves64" => Code::Xsaves64_mem,
        "xrstor" => Code::Xrstor_mem,
        "xrstor64" => Code::Xrstor64_mem,
        "xrstors" => Code::Xrstors_mem,
        "xrstors64" => Code::Xrstors64_mem,
        "fxsave" => Code::Fxsave_m512byte,
        "fxsave64" => Code::Fxsave64_m512byte,
        "fxrstor" => Code::Fxrstor_m512byte,
        "fxrstor64" => Code::Fxrstor64_m512byte,
        other => panic!("unknown instruction `{other}` in the recording"),
    }
}

/// The instruction `insn [rbx]`, encoded by iced-x86.
pub fn encode(insn: &str) -> Vec<u8> {
    let ins = Instruction::with1(code_for(insn), MemoryOperand::with_base(Register::RBX))
        .expect("memory operand");
    let mut e = Encoder::new(64);
    e.encode(&ins, xsave_emu::case::CODE_BASE)
        .expect("encodable");
    e.take_buffer()
}

fn to_record(model: &CpuModel, line: &str) -> Record {
    let v: Value = serde_json::from_str(line).expect("JSON record");
    let n = v["n"].as_u64().expect("record without `n`");
    let insn = v["insn"].as_str().expect("insn").to_string();
    assert_eq!(hex_u64(&v, "xcr0", n), 0x600e7, "record {n}: xcr0");
    let control = Control::user(model);
    let mut case = Case::new(model, control);
    let std_size = case.init.len();
    let init = hex(&v, "init", n);
    case.init[..init.len()].copy_from_slice(&init);
    assert_eq!(
        case.init_xstate_bv() & (1 << 18),
        0,
        "record {n}: init XSTATE_BV[18]"
    );
    let page_off = int(&v, "area_page_offset", n) as u64;
    let b = ARENA_BASE + PAGE + page_off;
    let pages = (PAGE + page_off + std_size as u64).div_ceil(PAGE) as usize;
    let mut mem = Memory::new(ARENA_BASE, pages);
    let before = hex(&v, "buf_before", n);
    let o = (b - ARENA_BASE) as usize;
    mem.bytes[o..o + before.len()].copy_from_slice(&before);
    let tail_fill = if before[2752..RECORDED].iter().all(|&x| x == 0) {
        0
    } else {
        0x5A
    };
    mem.bytes[o + RECORDED..o + std_size].fill(tail_fill);
    if int(&v, "straddle", n) == 1 {
        let boundary = b.wrapping_add_signed(int(&v, "bytes_to_next_page", n));
        let prot = match v["next_page"].as_str() {
            Some("none") => Prot::None,
            Some("read") => Prot::Read,
            other => panic!("record {n}: next_page {other:?}"),
        };
        let first = ((boundary - ARENA_BASE) / PAGE) as usize;
        for p in &mut mem.prot[first..] {
            *p = prot;
        }
    }
    case.memory = mem;
    case.code = encode(&insn);
    let rfbm = hex_u64(&v, "rfbm", n);
    case.gprs[0] = rfbm & 0xFFFF_FFFF;
    case.gprs[2] = rfbm >> 32;
    case.gprs[3] = b;
    let f = &v["fault"];
    let fault = match (int(f, "sig", n), int(f, "trap", n)) {
        (0, _) => None,
        (11, 13) => Some(Fault::Gp(int(f, "err", n) as u32)),
        (11, 14) => Some(Fault::Pf {
            err: int(f, "err", n) as u32,
            addr: b.wrapping_add_signed(int(f, "addr_off", n)),
        }),
        (4, _) => Some(Fault::Nm),
        (s, t) => panic!("record {n}: signal {s} trap {t} not expected"),
    };
    Record {
        n,
        insn,
        case,
        b,
        fault,
        final_head: hex(&v, "final", n),
        buf_after: hex(&v, "buf_after", n),
        xinuse: hex_u64(&v, "xinuse", n),
        tail_changed: int(&v, "tail_changed", n) == 1,
        tail_zero: int(&v, "tail_zero", n) == 1,
    }
}

fn records(model: &CpuModel) -> Vec<Record> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/intel-xeon-amx-seed11.jsonl.gz"
    );
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    BufReader::new(GzDecoder::new(f))
        .lines()
        .map(|l| to_record(model, &l.unwrap_or_else(|e| panic!("{path}: {e}"))))
        .collect()
}

fn ranges(a: &[u8], b: &[u8]) -> String {
    let mut out = Vec::new();
    let mut k = 0;
    while k < a.len().min(b.len()) {
        if a[k] != b[k] {
            let s = k;
            while k < a.len() && a[k] != b[k] {
                k += 1;
            }
            out.push(format!("{s}..{k}"));
        } else {
            k += 1;
        }
    }
    out.join(",")
}

/// The differences between the prediction and the record, one string per field.
fn compare(r: &Record, p: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    let want_fault = r.fault.map(|f| FaultAt {
        fault: f,
        insn: Some(0),
    });
    if p.fault != want_fault {
        d.push(format!(
            "fault: predicted {:?}, recorded {:?}",
            p.fault.map(|f| f.fault),
            r.fault
        ));
    }
    if p.final_image[..RECORDED] != r.final_head[..] {
        d.push(format!(
            "final bytes {}",
            ranges(&p.final_image[..RECORDED], &r.final_head)
        ));
    }
    let o = (r.b - ARENA_BASE) as usize;
    if p.memory[o..o + RECORDED] != r.buf_after[..] {
        d.push(format!(
            "buf_after bytes {}",
            ranges(&p.memory[o..o + RECORDED], &r.buf_after)
        ));
    }
    let std_size = r.case.init.len();
    let tail_after = &p.memory[o + RECORDED..o + std_size];
    let tail_before = &r.case.memory.bytes[o + RECORDED..o + std_size];
    if (tail_after != tail_before) != r.tail_changed {
        d.push(format!("tail_changed: recorded {}", r.tail_changed));
    }
    if tail_after.iter().all(|&x| x == 0) != r.tail_zero {
        d.push(format!("tail_zero: recorded {}", r.tail_zero));
    }
    if p.xinuse != Some(r.xinuse) {
        d.push(format!(
            "xinuse: predicted {:x?}, recorded {:#x}",
            p.xinuse, r.xinuse
        ));
    }
    d
}

/// The recorded outcome as an `Outcome`: the prediction with every recorded field
/// replaced by the silicon's value.
fn observed(r: &Record, p: &Outcome) -> Outcome {
    let mut obs = p.clone();
    obs.fault = r.fault.map(|f| FaultAt {
        fault: f,
        insn: Some(0),
    });
    obs.final_image[..RECORDED].copy_from_slice(&r.final_head);
    let o = (r.b - ARENA_BASE) as usize;
    obs.memory[o..o + RECORDED].copy_from_slice(&r.buf_after);
    obs.xinuse = Some(r.xinuse);
    obs
}

#[test]
fn xeon_amx_vm_predicts_every_recorded_case() {
    let model = CpuModel::builtin("xeon-amx-vm").expect("built-in model");
    let recs = records(&model);
    assert_eq!(recs.len(), 1500);
    let mut mismatches = Vec::new();
    let mut outside = Vec::new();
    for r in &recs {
        let p = xsave_emu::predict(&model, &r.case)
            .unwrap_or_else(|e| panic!("record {} ({}): unsupported: {e}", r.n, r.insn));
        let d = compare(r, &p);
        if !d.is_empty() {
            mismatches.push(format!(
                "record {} {} rfbm={:#x}: {}",
                r.n,
                r.insn,
                r.case.gprs[2] << 32 | r.case.gprs[0],
                d.join("; ")
            ));
        }
        match xsave_emu::check(&model, &r.case, &observed(r, &p)) {
            Ok(j) if j.inside() => {}
            Ok(j) => outside.push(format!("record {} {}: {j}", r.n, r.insn)),
            Err(e) => outside.push(format!("record {} {}: unsupported: {e}", r.n, r.insn)),
        }
    }
    println!(
        "xeon-amx-vm: {} of {} recorded cases predicted exactly; {} outside the envelope",
        recs.len() - mismatches.len(),
        recs.len(),
        outside.len()
    );
    for m in mismatches.iter().take(40) {
        println!("  mismatch: {m}");
    }
    for m in outside.iter().take(40) {
        println!("  outside the envelope: {m}");
    }
    assert!(
        mismatches.is_empty() && outside.is_empty(),
        "{} mismatches, {} outside the envelope",
        mismatches.len(),
        outside.len()
    );
}
