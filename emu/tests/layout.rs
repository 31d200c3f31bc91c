//! Layouts against what Linux printed at boot on each silicon (SDM1 §13.4.3).
use xsave_emu::{layout, CpuModel, Xfeatures};

fn offsets(l: &layout::Layout) -> Vec<(usize, u32)> {
    l.slots.iter().map(|s| (s.index, s.offset)).collect()
}

#[test]
fn zen5_compacted_guest_fpstate_with_cet_s() {
    // Linux on zen5: x86/fpu: xstate_offset[2..12] 576 832 896 1408 2432 2448, context size 2472.
    let m = CpuModel::builtin("zen5").unwrap();
    let l = layout::compacted(&m, Xfeatures::from_bits_retain(0x18e7));
    assert_eq!(
        offsets(&l),
        vec![
            (2, 576),
            (5, 832),
            (6, 896),
            (7, 1408),
            (11, 2432),
            (12, 2448)
        ]
    );
    assert_eq!(l.size, 2472);
}

#[test]
fn zen5_compacted_normal_fpstate_without_cet_s() {
    // The Linux CET-S series keeps CET_S out of normal fpstates: 24 bytes less.
    let m = CpuModel::builtin("zen5").unwrap();
    assert_eq!(
        layout::compacted(&m, Xfeatures::from_bits_retain(0x08e7)).size,
        2448
    );
}

#[test]
fn zen5_standard_size() {
    // CPUID.(0DH,0):EBX = ECX = 2432 on zen5.
    let m = CpuModel::builtin("zen5").unwrap();
    assert_eq!(
        layout::standard(&m, Xfeatures::from_bits_retain(0xe7)).size,
        2432
    );
}

#[test]
fn xeon_amx_vm_compacted_xcr0() {
    // Linux on the Intel host: 576 832 896 1408 2432 2496, context size 10688;
    // TILECFG (17) rounds 2432 up to 64 (already aligned), TILEDATA (18) 2496.
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let l = layout::compacted(&m, Xfeatures::from_bits_retain(0x600e7));
    assert_eq!(
        offsets(&l),
        vec![
            (2, 576),
            (5, 832),
            (6, 896),
            (7, 1408),
            (17, 2432),
            (18, 2496)
        ]
    );
    assert_eq!(l.size, 10688);
    assert_eq!(
        layout::standard(&m, Xfeatures::from_bits_retain(0x600e7)).size,
        11008
    );
}

#[test]
fn compacted_alignment_applies_after_a_gap() {
    // SDM1 §13.4.3: a component with CPUID.(0DH,i).ECX[1] = 1 starts on a 64-byte
    // boundary. AVX (256) then TILEDATA alone: 576 + 256 = 832, aligned already;
    // x87|SSE|OPMASK|TILECFG: 576 + 64 = 640 for TILECFG.
    let m = CpuModel::builtin("xeon-amx-vm").unwrap();
    let l = layout::compacted(&m, Xfeatures::from_bits_retain(0x20023));
    assert_eq!(offsets(&l), vec![(5, 576), (17, 640)]);
    let m = CpuModel::builtin("sapphire-rapids").unwrap();
    // CET_U (16 B) at 576, CET_S (24 B) at 592, TILECFG aligned from 616 to 640.
    let l = layout::compacted(&m, Xfeatures::from_bits_retain(0x21803));
    assert_eq!(offsets(&l), vec![(11, 576), (12, 592), (17, 640)]);
    assert_eq!(l.size, 704);
}

#[test]
fn every_builtin_model_parses() {
    for m in CpuModel::builtin_all() {
        assert!(m.xsave, "{}", m.name);
        assert_eq!(m.xcr0_supported & 3, 3, "{}", m.name);
    }
}

#[test]
fn model_file_errors_name_the_line() {
    let e = CpuModel::parse("name x\ncpuid 0xd 0 eax=1 ebx=2 ecx=3\n").unwrap_err();
    assert_eq!(e.line, 2);
    let e = CpuModel::parse("name x\nquirk no-such-quirk\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("unknown quirk"));
}
