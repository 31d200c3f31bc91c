//! The host model read from CPUID equals the matching built-in model (issue 9
//! item 1): `xeon-amx-vm` on the Intel host, `zen5` on the AMD host.

use xsave_emu::CpuModel;
use xsave_native::host;

#[test]
fn host_model_matches_a_builtin_model() {
    let m = host::host_model().expect("host model");
    let want = match m.vendor {
        xsave_emu::model::Vendor::Intel => "xeon-amx-vm",
        xsave_emu::model::Vendor::Amd => "zen5",
        xsave_emu::model::Vendor::Other => panic!("neither Intel nor AMD: {m:?}"),
    };
    let b = CpuModel::builtin(want).unwrap();
    let d = m.differences(&b);
    println!("host model: {} (compared with built-in {want})", m.name);
    for l in &d {
        println!("  difference: {l}");
    }
    assert!(d.is_empty(), "host differs from {want}: {d:#?}");
    assert_eq!(m.name, want);
    assert_eq!(m.quirks, b.quirks);
    assert_eq!(m.os_xss, b.os_xss);
}

/// Linux arms XFD for every XFD-capable component without permission (this test
/// process never asks for it): on the Intel host that is TILEDATA (bit 18).
#[test]
fn xfd_armed_without_permission() {
    let m = host::host_model().unwrap();
    let capable = (0..=19)
        .filter(|&i| m.component(i).is_some_and(|c| c.xfd))
        .fold(0u64, |a, i| a | 1 << i)
        & m.os_xcr0;
    println!(
        "XFD-capable components in XCR0: {capable:#x}, armed: {:#x}",
        m.os_xfd
    );
    assert_eq!(m.os_xfd, if m.xfd { capable } else { 0 });
}

/// MXCSR_MASK from FXSAVE is the model file's (SDM1 §11.6.6).
#[test]
fn mxcsr_mask_measured() {
    let m = host::host_model().unwrap();
    println!("MXCSR_MASK {:#x}", m.mxcsr_mask);
    assert_ne!(m.mxcsr_mask, 0);
    assert_eq!(m.mxcsr_mask & 0xFFBF, 0xFFBF);
}
