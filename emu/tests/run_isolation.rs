//! A case's outcome depends on the case alone: `run` reuses the last run's
//! buffers on the same thread (reuse.rs), and nothing of the last run's state
//! may show through. A case whose initial XRSTOR faults (#GP(0): XSTATE_BV sets
//! a bit not in XCR0, SDM2 XRSTOR) changes nothing, so its capture shows the
//! state the run starts from: every component in its init configuration
//! (SDM1 §13.6: AVX and TILEDATA all zero).
use xsave_emu::{envelope, layout, predict, Case, Control, CpuModel, Fault, FaultAt, Xfeatures};

/// Offset and size of component `i` in the standard format of XCR0.
fn slot(m: &CpuModel, xcr0: u64, i: usize) -> (usize, usize) {
    let s = layout::standard(m, Xfeatures::from_bits_retain(xcr0))
        .slot(i)
        .unwrap();
    (s.offset as usize, s.size as usize)
}

/// Every XCR0 component in use: AVX 0xAA, TILEDATA 0x55, a valid palette-1
/// TILECFG (one 16 x 64-byte tile).
fn dirtying_case(m: &CpuModel, ctl: Control) -> Case {
    let mut c = Case::new(m, ctl);
    let (o, n) = slot(m, ctl.xcr0, 2);
    c.init[o..o + n].fill(0xAA);
    if ctl.xcr0 >> 18 & 1 != 0 {
        let (o, n) = slot(m, ctl.xcr0, 18);
        c.init[o..o + n].fill(0x55);
        let (o, _) = slot(m, ctl.xcr0, 17);
        c.init[o] = 1;
        c.init[o + 16..o + 18].copy_from_slice(&64u16.to_le_bytes());
        c.init[o + 48] = 16;
    }
    c.set_init_xstate_bv(ctl.xcr0);
    c
}

/// The same image with XSTATE_BV[63] = 1: the initial XRSTOR is #GP(0).
fn faulting_case(m: &CpuModel, ctl: Control) -> Case {
    let mut c = dirtying_case(m, ctl);
    c.set_init_xstate_bv(ctl.xcr0 | 1 << 63);
    c
}

#[test]
fn a_run_does_not_see_the_last_runs_state() {
    let amx = CpuModel::builtin("xeon-amx-vm").unwrap();
    let zen5 = CpuModel::builtin("zen5").unwrap();
    let amx_ctl = Control {
        xfd: 0,
        ..Control::user(&amx)
    };
    let zen5_ctl = Control::user(&zen5);
    // Expected on a thread that has run nothing before.
    let fresh = |m: &CpuModel, c: &Case| {
        let (m, c) = (m.clone(), c.clone());
        std::thread::spawn(move || (predict(&m, &c).unwrap(), envelope(&m, &c).unwrap()))
            .join()
            .unwrap()
    };
    let (avx_o, avx_n) = slot(&amx, amx_ctl.xcr0, 2);
    let (tile_o, tile_n) = slot(&amx, amx_ctl.xcr0, 18);

    let a = dirtying_case(&amx, amx_ctl);
    let out = predict(&amx, &a).unwrap();
    assert_eq!(out.fault, None);
    assert!(out.final_image[avx_o..avx_o + avx_n]
        .iter()
        .all(|&b| b == 0xAA));
    assert!(out.final_image[tile_o..tile_o + tile_n]
        .iter()
        .all(|&b| b == 0x55));

    let b = faulting_case(&amx, amx_ctl);
    let expect = fresh(&amx, &b);
    // After a run that left AVX and TILEDATA non-init, and after runs on a
    // model of another layout (zen5: no AMX), under both policies.
    for before in [
        vec![(&amx, &a)],
        vec![(&zen5, &dirtying_case(&zen5, zen5_ctl))],
        vec![(&amx, &a), (&zen5, &faulting_case(&zen5, zen5_ctl))],
    ] {
        for (m, c) in &before {
            predict(m, c).unwrap();
        }
        let out = predict(&amx, &b).unwrap();
        assert_eq!(
            out.fault,
            Some(FaultAt {
                fault: Fault::gp0(),
                insn: None
            })
        );
        assert!(out.final_image[avx_o..avx_o + avx_n]
            .iter()
            .all(|&b| b == 0));
        assert!(out.final_image[tile_o..tile_o + tile_n]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(out, expect.0);
        for (m, c) in &before {
            envelope(m, c).unwrap();
        }
        assert_eq!(envelope(&amx, &b).unwrap(), expect.1);
    }
}
