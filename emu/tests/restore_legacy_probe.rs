//! Intel's XRSTOR probes the legacy region before the header checks (quirk
//! `pf-last-byte`): after the region's last byte, byte 0 if RFBM[0] = 1 and
//! byte 24 (MXCSR) if RFBM[1] or RFBM[2] = 1, whatever XSTATE_BV says, before
//! any header #GP and XFD's #NM (SDM1 §13.13 leaves the order open). Intel host
//! observations: corpus/silicon/xrstor-probe-byte-*.case and
//! xrstor-compacted-probe-byte-24-before-header-gp.case.
use xsave_emu::case::ARENA_BASE;
use xsave_emu::{check, predict, Case, Control, CpuModel, Fault, Memory, Prot};

const BASE: u64 = ARENA_BASE + 0xFC0;

/// XRSTOR64 [rdi] at arena + FC0H, page 0 absent, page 1 holding the header.
fn case(m: &CpuModel, rfbm: u64, header: &[(usize, u8)]) -> Case {
    let mut c = Case::new(m, Control::user(m));
    c.memory = Memory::new(ARENA_BASE, 2);
    c.memory.prot[0] = Prot::None;
    for &(off, b) in header {
        c.memory.bytes[0xFC0 + 512 + off] = b;
    }
    c.gprs[0] = rfbm & 0xFFFF_FFFF;
    c.gprs[2] = rfbm >> 32;
    c.gprs[7] = BASE;
    c.code = vec![0x48, 0x0f, 0xae, 0x2f];
    c
}

fn pf_at(m: &CpuModel, c: &Case) -> Option<u64> {
    match predict(m, c).unwrap().fault.map(|f| f.fault) {
        Some(Fault::Pf { addr, .. }) => Some(addr - BASE),
        other => panic!("expected #PF, got {other:?}"),
    }
}

#[test]
fn intel_probes_byte_0_for_x87_with_xstate_bv_0_and_before_header_gp() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    assert_eq!(pf_at(&m, &case(&m, 1, &[])), Some(0));
    // Header byte 16 set: #GP(0) otherwise (SDM1 §13.8.1).
    assert_eq!(pf_at(&m, &case(&m, 1, &[(16, 1)])), Some(0));
    // x87 | SSE: byte 0 first.
    assert_eq!(pf_at(&m, &case(&m, 3, &[])), Some(0));
}

#[test]
fn intel_probes_byte_24_for_sse_or_avx_before_header_gp() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    assert_eq!(pf_at(&m, &case(&m, 2, &[(16, 1)])), Some(24));
    assert_eq!(pf_at(&m, &case(&m, 4, &[(16, 1)])), Some(24));
}

#[test]
fn intel_compacted_probes_only_the_legacy_bytes_of_xcomp_bv() {
    // diff_native on the Intel host (issue 13; corpus/silicon/
    // xrstor-compacted-probe-byte-24-not-0-x87-outside-xcomp-bv.case): XRSTOR64,
    // RFBM = E7H, XCOMP_BV = 2^63 | SSE, header byte 24 set: #PF at base + 24,
    // not base + 0: x87 is outside XCOMP_BV, so it is initialized, not probed.
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let xcomp = |bits: u64| {
        let v: u64 = 1 << 63 | bits;
        (0..8).map(move |k| (8 + k, (v >> (8 * k)) as u8))
    };
    let hdr: Vec<(usize, u8)> = xcomp(2).chain([(24, 1)]).collect();
    assert_eq!(pf_at(&m, &case(&m, 0xE7, &hdr)), Some(24));
    // With x87 in XCOMP_BV, byte 0 first (xrstor-probe-byte-0-* in compacted form).
    let hdr: Vec<(usize, u8)> = xcomp(3).chain([(24, 1)]).collect();
    assert_eq!(pf_at(&m, &case(&m, 0xE7, &hdr)), Some(0));
    // The envelope admits either address for any model (SDM1 §13.13), names
    // the latitude, and rejects an address outside the region.
    let hdr: Vec<(usize, u8)> = xcomp(2).chain([(24, 1)]).collect();
    let c = case(&m, 0xE7, &hdr);
    let mut o = predict(&m, &c).unwrap();
    let f = o.fault.unwrap();
    o.fault = Some(xsave_emu::FaultAt {
        fault: Fault::Pf { err: 4, addr: BASE },
        ..f
    });
    let j = check(&m, &c, &o).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["pf-any-byte-of-region"]);
    o.fault = Some(xsave_emu::FaultAt {
        fault: Fault::Pf {
            err: 4,
            addr: BASE - 0x1000,
        },
        ..f
    });
    assert_eq!(
        check(&m, &c, &o).unwrap().rule_ids(),
        ["mem.pf-within-region"]
    );
}

#[test]
fn the_architectural_envelope_admits_the_probe_and_the_plain_gp() {
    // A model without the quirk predicts the header #GP; the SDM allows the #PF
    // on byte 0 too (any byte of the region may be accessed first).
    // (zen5 without its quirks: the Zen 5 host probes byte 0 first as well,
    // corpus/silicon/xrstor-pf-byte-0-before-header.case.)
    let intel = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut zen5 = CpuModel::builtin("zen5").unwrap();
    zen5.quirks = Default::default();
    let c = case(&zen5, 1, &[(16, 1)]);
    let f = predict(&zen5, &c).unwrap().fault.map(|f| f.fault);
    assert_eq!(f, Some(Fault::gp0()));
    let observed = predict(&intel, &case(&intel, 1, &[(16, 1)])).unwrap();
    let mut on_zen5 = predict(&zen5, &c).unwrap();
    on_zen5.fault = observed.fault;
    let j = check(&zen5, &c, &on_zen5).unwrap();
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["pf-any-byte-of-region"]);
}

/// Intel's XSAVE past its probes: a fault in the middle of the area comes after
/// every byte before it is written; the header is not (Intel host,
/// corpus/silicon/xsave-pf-mid-area-writes-before.case). A model without the
/// quirk writes nothing (SDM silent; the envelope admits any subset).
#[test]
fn intel_xsave_writes_up_to_a_mid_area_fault_but_not_the_header() {
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let mut c = Case::new(&m, Control::user(&m));
    c.memory = Memory::new(ARENA_BASE, 3);
    c.memory.prot[1] = Prot::None;
    c.memory.bytes[0x80 + 24] = 0xAA; // MXCSR's place
    c.memory.bytes[0x80 + 512] = 0xAA; // XSTATE_BV's place
    c.memory.bytes[0xFFF] = 0xAA; // TILEDATA's last byte on page 0
    c.gprs[0] = 0xFFFF_FFFF;
    c.gprs[2] = 0xFFFF_FFFF;
    c.gprs[13] = ARENA_BASE + 0x80;
    c.code = vec![0x49, 0x0f, 0xae, 0x65, 0x00]; // xsave64 [r13]
    let o = predict(&m, &c).unwrap();
    assert_eq!(
        o.fault.map(|f| f.fault),
        Some(Fault::Pf {
            err: 6,
            addr: ARENA_BASE + 0x1000
        })
    );
    assert_eq!(&o.memory[0x98..0x9c], &0x1F80u32.to_le_bytes());
    assert_eq!(o.memory[0xFFF], 0, "TILEDATA's init bytes before the fault");
    assert_eq!(o.memory[0x280], 0xAA, "the header is not written");
}
