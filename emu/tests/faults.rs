//! Faults and their order (SDM2 exception tables, SDM1 §13.7-13.12, reference
//! §5), XGETBV/XSETBV, decoding limits, and the envelope's verdicts.
mod common;
use common::*;
use iced_x86::code_asm::*;
use xsave_emu::{CpuModel, Fault, FaultAt, Prot};

#[test]
fn lock_prefix_is_ud() {
    // SDM2 XSAVE/XRSTOR/XGETBV: #UD if the LOCK prefix is used.
    for code in [&[0xF0, 0x0F, 0xAE, 0x23][..], &[0xF0, 0x0F, 0x01, 0xD0]] {
        let mut t = T::user("xeon-amx-vm");
        t.bytes(code);
        assert_eq!(t.fault(), Some(Fault::Ud), "{code:02x?}");
    }
}

#[test]
fn np_prefixes_are_ud_or_select_another_instruction() {
    // Reference §3 ("NP"): 66/F2 before 0F AE /4 (XSAVE), 0F AE /5 (XRSTOR), 0F C7 /4
    // (XSAVEC) and 0F 01 D0 (XGETBV) are #UD (iced-x86 decodes them as invalid);
    // F3 0F AE /4 is PTWRITE and 66 0F AE /6 is CLWB: other instructions, which the
    // model does not run (Unsupported, never a guess).
    for code in [
        &[0x66, 0x0F, 0xAE, 0x23][..],
        &[0xF2, 0x0F, 0xAE, 0x23],
        &[0x66, 0x0F, 0xAE, 0x2B],
        &[0x66, 0x0F, 0xC7, 0x23],
        &[0xF3, 0x0F, 0xC7, 0x2B],
        &[0x66, 0x0F, 0x01, 0xD0],
    ] {
        let mut t = T::user("xeon-amx-vm");
        t.bytes(code);
        assert_eq!(t.fault(), Some(Fault::Ud), "{code:02x?}");
    }
    for code in [&[0xF3, 0x0F, 0xAE, 0x23][..], &[0x66, 0x0F, 0xAE, 0x33]] {
        let mut t = T::user("xeon-amx-vm");
        t.bytes(code);
        let e = xsave_emu::predict(&t.model, &t.case).unwrap_err();
        assert!(e.0.contains("not modelled"), "{code:02x?}: {e}");
    }
}

#[test]
fn a_truncated_last_instruction_is_unsupported() {
    // The hardware would fetch bytes past the case's code: not a #UD to predict.
    let mut t = T::user("zen5");
    t.bytes(&[0x0F, 0xAE]);
    let e = xsave_emu::predict(&t.model, &t.case).unwrap_err();
    assert!(e.0.contains("cut off"), "{e}");
    // A fault before it stops the run first: the cut instruction is never reached.
    t.bytes(&[0xF0, 0x0F, 0xAE, 0x23, 0x0F, 0xAE]);
    assert_eq!(t.fault(), Some(Fault::Ud));
}

#[test]
fn osxsave_0_is_ud_for_the_xsave_family_but_not_fxsave() {
    // SDM2 XSAVE/XRSTOR/XGETBV/XSETBV: #UD if CR4.OSXSAVE = 0; FXSAVE does not
    // depend on it.
    for insn in 0..4 {
        let mut t = T::user("zen5");
        t.ctl().cr4_osxsave = false;
        t.code(|a| match insn {
            0 => a.xsave(ptr(rbx)),
            1 => a.xrstor(ptr(rbx)),
            2 => a.xgetbv(),
            _ => a.xsetbv(),
        });
        assert_eq!(t.fault(), Some(Fault::Ud), "insn {insn}");
    }
    let mut t = T::user("zen5");
    t.ctl().cr4_osxsave = false;
    t.code(|a| a.fxsave(ptr(rbx)));
    assert_eq!(t.fault(), None);
}

#[test]
fn missing_cpuid_features_are_ud() {
    // SDM2: XSAVEC #UD if CPUID.(0DH,1):EAX[1] = 0, XSAVES/XRSTORS if EAX[3] = 0
    // (qemu-max-7.2: EAX = 5), XSAVEOPT if EAX[0] = 0 (a model without it).
    let mut t = T::kernel("qemu-max-7.2");
    t.code(|a| a.xsavec(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Ud));
    t.code(|a| a.xsaves(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Ud));
    t.code(|a| a.xrstors(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Ud));
    let text = xsave_emu::model::BUILTIN
        .iter()
        .find(|(n, _)| *n == "zen5")
        .unwrap()
        .1
        .replace(
            "cpuid 0x0000000d 0x1 eax=0x0000000f",
            "cpuid 0x0000000d 0x1 eax=0x0000000e",
        );
    let m = CpuModel::parse(&text).unwrap();
    let mut t = T::with(m.clone(), xsave_emu::Control::user(&m));
    t.code(|a| a.xsaveopt(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Ud));
}

#[test]
fn ud_comes_before_nm_and_nm_before_cpl() {
    // Reference §5.2 items 1-3: #UD (CR4.OSXSAVE = 0) before #NM (CR0.TS), #NM
    // before XSAVES's CPL #GP(0).
    let mut t = T::user("zen5");
    t.ctl().cr4_osxsave = false;
    t.ctl().cr0_ts = true;
    t.code(|a| a.xsave(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Ud));
    let mut t = T::user("zen5");
    t.ctl().cr0_ts = true;
    t.code(|a| a.xsaves(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Nm));
    t.ctl().cr0_ts = false;
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn cr0_ts_is_nm_and_cr0_em_only_for_fxsave() {
    // SDM2: the XSAVE family checks CR0.TS only; FXSAVE/FXRSTOR check TS and EM.
    let mut t = T::user("zen5");
    t.ctl().cr0_ts = true;
    t.code(|a| a.xrstor(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Nm));
    let mut t = T::user("zen5");
    t.ctl().cr0_em = true;
    t.code(|a| a.xsave(ptr(rbx)));
    assert_eq!(t.fault(), None);
    t.code(|a| a.fxsave(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Nm));
}

#[test]
fn xsaves_and_xrstors_at_cpl3_are_gp() {
    // SDM2 XSAVES/XRSTORS: #GP(0) if CPL > 0.
    let mut t = T::user("zen5");
    t.code(|a| a.xsaves64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    t.code(|a| a.xrstors64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn misaligned_area_is_gp_or_ac_with_alignment_checking() {
    // SDM1 §13.7 footnote: a base not 64-byte aligned is #GP(0); with CR0.AM = 1,
    // CPL 3 and EFLAGS.AC = 1, #AC may occur instead, the width of the check being
    // implementation-specific. Zen 5 (quirk misaligned-gp-not-ac): never #AC, #GP(0)
    // (native cases `*_misaligned_*_with_alignment_check` on the Zen 5 host); Intel
    // (quirk ac-width-4): #AC only when address bits 1:0 are not zero. The envelope
    // admits #GP(0) wherever #AC is predicted.
    for (model, off, want) in [
        ("zen5", 32, Fault::Gp(0)),
        ("zen5", 2, Fault::Gp(0)),
        ("xeon-amx-vm", 32, Fault::Gp(0)),
        ("xeon-amx-vm", 2, Fault::Ac),
    ] {
        let mut t = T::user(model);
        t.rfbm(3).code(|a| a.xsave(ptr(rbx + off)));
        assert_eq!(t.fault(), Some(Fault::Gp(0)), "{model} +{off}: AC off");
        t.ctl().eflags_ac = true;
        let o = t.predict();
        assert_eq!(o.fault.map(|f| f.fault), Some(want), "{model} +{off}");
        let mut gp = o.clone();
        gp.fault = Some(FaultAt {
            fault: Fault::Gp(0),
            insn: Some(0),
        });
        let j = xsave_emu::check(&t.model, &t.case, &gp).unwrap();
        assert!(j.inside(), "{j}");
        if want != Fault::Gp(0) {
            assert_eq!(j.latitude_ids(), ["ac-or-gp-misaligned"], "{model} +{off}");
        }
        let mut ud = o;
        ud.fault = Some(FaultAt {
            fault: Fault::Ud,
            insn: Some(0),
        });
        let v = xsave_emu::check(&t.model, &t.case, &ud).unwrap();
        assert_eq!(v.rule_ids(), ["xsave.gp-misaligned"], "{v}");
        let v = v.first().unwrap();
        assert_eq!(v.field, "fault");
        // At CPL 0 alignment checking is off: #GP(0).
        t.ctl().cpl = 0;
        assert_eq!(t.fault(), Some(Fault::Gp(0)));
    }
}

#[test]
fn non_canonical_area_is_gp_or_ss() {
    // SDM2 XSAVE: #GP(0) for a non-canonical address, #SS(0) when it is SS-based
    // (RSP/RBP base). 0x0100_0000_0000_0000 is non-canonical with 48 or 57 bits.
    let mut t = T::user("xeon-amx-vm");
    t.case.gprs[3] = 0x0100_0000_0000_0000;
    t.code(|a| a.xsave(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    t.case.gprs[4] = 0x0100_0000_0000_0000;
    t.code(|a| a.xsave(ptr(rsp)));
    assert_eq!(t.fault(), Some(Fault::Ss));
    // 0x0000_8000_0000_0000 is canonical with 5-level paging (sapphire-rapids: LA57,
    // the OS's paging follows it; absent there: #PF), not with 4-level (zen5).
    let mut t = T::user("sapphire-rapids");
    t.case.gprs[3] = 0x0000_8000_0000_0000;
    t.code(|a| a.xsave(ptr(rbx)));
    assert!(matches!(t.fault(), Some(Fault::Pf { .. })));
    let mut t = T::user("zen5");
    t.case.gprs[3] = 0x0000_8000_0000_0000;
    t.code(|a| a.xsave(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn save_onto_a_read_only_page_is_pf_and_writes_nothing() {
    // SDM Vol.3 §4.7: #PF error code P|W|U = 7 for a user write to a present
    // read-only page. Intel (quirk pf-last-byte, recording): CR2 = the last byte of
    // the region (AVX's last byte for RFBM = 7: B + 831), nothing written. zen5:
    // CR2 = the first byte the save writes on that page.
    let mut t = T::user("xeon-amx-vm");
    t.fill(0xAA).prot(0, Prot::Read).rfbm(7);
    t.code(|a| a.xsave64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(
        o.fault.map(|f| f.fault),
        Some(Fault::Pf {
            err: 7,
            addr: B + 831
        })
    );
    assert!(o.memory.iter().all(|&b| b == 0xAA));
    let mut t = T::user("zen5");
    t.fill(0xAA).prot(0, Prot::Read).rfbm(7);
    t.code(|a| a.xsave64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Pf { err: 7, addr: B }));
}

#[test]
fn intel_pf_reports_the_region_end_even_past_the_written_bytes() {
    // Intel recording (record 1491): FXSAVE with the page 448 bytes into the area
    // absent faults at B + 511 (err 6), though FXSAVE writes nothing past byte 415.
    let mut t = T::user("xeon-amx-vm");
    t.case.gprs[3] = B + 4096 - 448;
    t.prot(1, Prot::None).code(|a| a.fxsave(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 6,
            addr: B + 4096 - 448 + 511
        })
    );
    // The Zen 5 host does the same (corpus/silicon/fxsave-pf-last-byte.case: FXSAVE64
    // at an absent page faults at base + 1FFH): quirk pf-last-byte.
    let mut t = T::user("zen5");
    t.case.gprs[3] = B + 4096 - 448;
    t.prot(1, Prot::None).code(|a| a.fxsave(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 6,
            addr: B + 4096 - 448 + 511
        })
    );
}

#[test]
fn xrstor_header_pf_comes_before_header_gp() {
    // Reference §5.2 item 5: XRSTOR reads the header before checking it. Intel reads
    // XCOMP_BV first (quirk xrstor-header-xcomp-first): CR2 = B + 520; zen5: B + 512.
    for (model, fault_addr) in [("xeon-amx-vm", B + 520), ("zen5", B + 512)] {
        let mut t = T::user(model);
        t.case.gprs[3] = B + 4096 - 512;
        t.prot(1, Prot::None).put_u64(4096 - 512 + 520, 7);
        t.code(|a| a.xrstor(ptr(rbx)));
        assert_eq!(
            t.fault(),
            Some(Fault::Pf {
                err: 4,
                addr: fault_addr + 4096 - 512
            }),
            "{model}"
        );
    }
}

#[test]
fn a_fault_stops_the_case() {
    // Run semantics: nothing after the first fault runs.
    let mut t = T::user("zen5");
    t.case.gprs[1] = 0x55;
    t.code(|a| {
        a.xsave(ptr(rbx + 8))?;
        a.movq(xmm0, rcx)
    });
    let o = t.predict();
    assert_eq!(
        o.fault,
        Some(FaultAt {
            fault: Fault::Gp(0),
            insn: Some(0)
        })
    );
    assert_eq!(u64_at(&o.final_image, 160), 0);
}

#[test]
fn the_runners_initial_xrstor_can_fault() {
    // Run semantics: a rejected initial image is a fault with insn = None.
    let mut t = T::user("zen5");
    t.init_u64(520, 1);
    let o = t.predict();
    assert_eq!(
        o.fault,
        Some(FaultAt {
            fault: Fault::Gp(0),
            insn: None
        })
    );
}

#[test]
fn xgetbv_reads_xcr0_and_xinuse() {
    // SDM2 XGETBV: ECX = 0 -> XCR0, ECX = 1 -> XCR0 AND XINUSE (bit 1 also for MXCSR
    // != 1F80H), RCX[63:32] ignored, RAX/RDX[63:32] cleared; other ECX -> #GP(0).
    let mut t = T::user("xeon-amx-vm");
    t.case.gprs[0] = 0xFFFF_FFFF_FFFF_FFFF;
    t.case.gprs[2] = 0xFFFF_FFFF_FFFF_FFFF;
    t.case.gprs[1] = 0x1_0000_0000;
    t.code(|a| a.xgetbv());
    let o = t.predict();
    assert_eq!((o.gprs[0], o.gprs[2]), (0x600e7, 0));
    t.init_bv(0b100).init(576, &pat(2, 256));
    t.case.gprs[1] = 1;
    let o = t.predict();
    assert_eq!((o.gprs[0], o.gprs[2]), (0b100, 0));
    t.case.gprs[1] = 2;
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
}

#[test]
fn xgetbv1_needs_cpuid_support() {
    // SDM2 XGETBV: ECX = 1 is #GP(0) unless CPUID.(0DH,1):EAX[2] = 1.
    let text = xsave_emu::model::BUILTIN
        .iter()
        .find(|(n, _)| *n == "zen5")
        .unwrap()
        .1
        .replace(
            "cpuid 0x0000000d 0x1 eax=0x0000000f",
            "cpuid 0x0000000d 0x1 eax=0x0000000b",
        );
    let m = CpuModel::parse(&text).unwrap();
    let mut t = T::with(m.clone(), xsave_emu::Control::user(&m));
    t.case.gprs[1] = 1;
    t.code(|a| a.xgetbv());
    assert_eq!(t.fault(), Some(Fault::Gp(0)));
    assert_eq!(t.predict().xinuse, None);
}

#[test]
fn xsetbv_rules() {
    // SDM1 §13.3, SDM2 XSETBV: #GP(0) at CPL > 0, for ECX != 0, bit 0 clear, AVX
    // without SSE, AVX-512 partial, TILECFG without TILEDATA, an unsupported bit;
    // a valid value is loaded (RCX[63:32] ignored).
    let mut t = T::user("xeon-amx-vm");
    t.rfbm(0x7).code(|a| a.xsetbv());
    assert_eq!(t.fault(), Some(Fault::Gp(0)), "CPL 3");
    let mut t = T::kernel("xeon-amx-vm");
    for (v, ok) in [
        (0x7u64, true),
        (0x6, false),
        (0x5, false),
        (0x27, false),
        (0xE7, true),
        (0x200e7, false),
        (0x600e7, true),
        (0x207, false),
        (0x8_0000_0007, false),
    ] {
        t.rfbm(v).code(|a| {
            a.xsetbv()?;
            a.mov(ecx, 0)?;
            a.xgetbv()
        });
        t.case.gprs[1] = 0x7_0000_0000;
        let o = t.predict();
        if ok {
            assert_eq!(o.fault, None, "{v:#x}");
            assert_eq!(o.gprs[0] | o.gprs[2] << 32, v, "{v:#x}");
        } else {
            assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)), "{v:#x}");
        }
    }
    t.case.gprs[1] = 1;
    t.rfbm(7).code(|a| a.xsetbv());
    assert_eq!(t.fault(), Some(Fault::Gp(0)), "ECX = 1");
    t.ctl().vmx_nonroot = true;
    t.case.gprs[1] = 0;
    assert!(xsave_emu::predict(&t.model, &t.case).is_err(), "VM exit");
}

#[test]
fn the_envelope_names_the_rule_and_field_that_break_it() {
    // The envelope is not "anything goes": a changed XMM0 byte, a changed saved
    // XMM0 byte, an XINUSE bit cleared over non-init contents and a fault XSAVE
    // does not raise are each rejected, naming the rule and the field; all four
    // at once name all four rules.
    let mut t = T::user("zen5");
    t.init(160, &pat(1, 16)).init_bv(2);
    t.rfbm(3).code(|a| a.xsave(ptr(rbx)));
    let o = t.predict();
    let judge = |bad: &xsave_emu::Outcome| {
        let j = xsave_emu::check(&t.model, &t.case, bad).unwrap();
        let fields: Vec<(&str, String)> = j
            .broken
            .iter()
            .flat_map(|b| b.fields.iter().map(move |f| (b.rule.id, f.field.clone())))
            .collect();
        fields
    };
    let mut xmm = o.clone();
    // XMM0 came from the initial XRSTOR (XSTATE_BV[1] = 1: loaded).
    xmm.final_image[161] ^= 1;
    assert_eq!(
        judge(&xmm),
        [(
            "xrstor.loads-rfbm-by-xstate-bv",
            "final[161..162] (SSE)".into()
        )]
    );
    let mut mem = o.clone();
    mem.memory[170] ^= 1;
    assert_eq!(judge(&mem), [("xsave.saves-rfbm", "memory[0xaa]".into())]);
    let mut inuse = o.clone();
    inuse.xinuse = Some(0);
    assert_eq!(
        judge(&inuse),
        [("xinuse.zero-only-in-init", "xinuse".into())]
    );
    let mut gp = o.clone();
    gp.fault = Some(FaultAt {
        fault: Fault::Gp(0),
        insn: Some(0),
    });
    assert_eq!(judge(&gp), [("insn.faults-only-as-listed", "fault".into())]);
    // Three at once: every rule is named, not only the first field's (memory
    // is judged before the final registers).
    let mut all = xmm.clone();
    all.memory[170] ^= 1;
    all.xinuse = Some(0);
    let ids: Vec<&str> = xsave_emu::check(&t.model, &t.case, &all)
        .unwrap()
        .rule_ids();
    assert_eq!(
        ids,
        [
            "xsave.saves-rfbm",
            "xrstor.loads-rfbm-by-xstate-bv",
            "xinuse.zero-only-in-init"
        ]
    );
}

#[test]
fn the_envelope_admits_a_pf_anywhere_in_the_region() {
    // SDM1 §13.13: an instruction may access any byte of the components it operates
    // on: a #PF at the region's last byte (Intel's) is admitted for zen5 too, one
    // outside the region or on a writable page is not.
    let mut t = T::user("zen5");
    t.case.gprs[3] = B + 4096 - 448;
    t.prot(1, Prot::None).code(|a| a.fxsave(ptr(rbx)));
    let o = t.predict();
    let mut pf = o.clone();
    let at = |addr| {
        Some(FaultAt {
            fault: Fault::Pf { err: 6, addr },
            insn: Some(0),
        })
    };
    let judge = |pf: &xsave_emu::Outcome| xsave_emu::check(&t.model, &t.case, pf).unwrap();
    pf.fault = at(B + 4096 - 448 + 511);
    assert!(judge(&pf).inside());
    // The first byte of the absent page: predicted by neither silicon.
    pf.fault = at(B + 4096);
    let j = judge(&pf);
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["pf-any-byte-of-region"]);
    // Past the region: no byte FXSAVE accesses.
    pf.fault = at(B + 4096 - 448 + 512);
    assert_eq!(judge(&pf).rule_ids(), ["mem.pf-within-region"]);
    // In the region, on a writable page: no #PF there (SDM3 §4.7).
    pf.fault = at(B + 4096 - 8);
    assert_eq!(judge(&pf).rule_ids(), ["mem.pf"]);
}

#[test]
fn xsaveopt_operates_on_every_rfbm_component_in_use_or_not() {
    // SDM1 §13.13 ("any byte of any state component it operates on") with SDM1
    // §13.9: XSAVEOPT operates on the components of RFBM; XINUSE and XMODIFIED
    // only choose which of them it writes. PKRU (standard offset A80H, 8 bytes)
    // not in use, RFBM = ZMM_Hi256 | PKRU, the area at page offset 580H so that
    // PKRU is the first byte of page 1, read-only: a #PF there is admitted
    // although no write of the prediction goes there.
    let area = B + 0x1000 - 0xA80;
    let pf = |model: &str| {
        let mut t = T::user(model);
        t.case.gprs[3] = area;
        t.prot(1, Prot::Read)
            .rfbm(1 << 6 | 1 << 9)
            .code(|a| a.xsaveopt64(ptr(rbx)));
        let mut o = t.predict();
        o.fault = Some(FaultAt {
            fault: Fault::Pf {
                err: 7,
                addr: B + 0x1000,
            },
            insn: Some(0),
        });
        (
            t.predict().fault,
            xsave_emu::check(&t.model, &t.case, &o).unwrap(),
        )
    };
    // The prediction writes the header only (page 0): no fault.
    let (predicted, j) = pf("sapphire-rapids");
    assert_eq!(predicted, None);
    assert!(j.inside(), "{j}");
    assert_eq!(j.latitude_ids(), ["pf-any-byte-of-region"]);
    // Bochs 2.7's CPUID.(0DH,9) is all zeros (PKRU in XCR0, with no size and
    // no offset): by its own enumeration PKRU has no bytes in the area, so the
    // region ends with ZMM_Hi256 (680H) and the same #PF is outside it (the
    // Bochs 2.7 campaign's mem.pf-within-region on XSAVEOPT,
    // corpus/ring0/bochs-xsaveopt-pkru-offset-by-rfbm.case).
    let (predicted, j) = pf("bochs-2.7-tigerlake");
    assert_eq!(predicted, None);
    assert_eq!(j.rule_ids(), ["mem.pf-within-region"], "{j}");
}

#[test]
fn unmodelled_supervisor_components_are_unsupported() {
    // PT, UINTR, Arch LBR, HWP have XSAVES/XRSTORS rules of their own (reference
    // §3.4, §6): a case enabling them in IA32_XSS is refused, never guessed.
    let mut t = T::kernel("sapphire-rapids");
    t.ctl().xss = 0x1900;
    let e = xsave_emu::predict(&t.model, &t.case).unwrap_err();
    assert!(e.0.contains("PT"), "{e}");
}

#[test]
fn intel_save_fault_order_x87_then_header_then_rest() {
    // Quirk pf-last-byte (xsdiff run on the Intel host): after the last byte, XSAVE
    // checks x87/MXCSR (bytes 0..159), then the header, then the rest. x87 and
    // header on a read-only page: CR2 = base + 0; the area at page offset F00H with
    // the next page read-only: CR2 = base + 512 (XMM bytes 256..415 are on it too).
    let mut t = T::user("xeon-amx-vm");
    t.prot(0, Prot::Read).rfbm(0x40001);
    t.code(|a| a.xsave64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Pf { err: 7, addr: B }));
    let mut t = T::user("xeon-amx-vm");
    t.prot(1, Prot::Read).rfbm(!0);
    t.case.gprs[3] = B + 0xF00;
    t.code(|a| a.xsave64(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 7,
            addr: B + 0xF00 + 512
        })
    );
}

#[test]
fn intel_probe_region_ends_where_an_armed_component_starts() {
    // Quirk pf-last-byte (xsdiff run on the Intel host): XSAVEOPT with RFBM =
    // TILEDATA, armed, at an absent address faults at base + 2815, the byte before
    // TILEDATA's offset 2816 (XSAVE, which writes it, at base + 11007).
    let mut t = T::user("xeon-amx-vm");
    t.ctl().xfd = 1 << 18;
    t.case.gprs[3] = 0;
    t.rfbm(1 << 18).code(|a| a.xsaveopt64(ptr(rbx)));
    assert_eq!(t.fault(), Some(Fault::Pf { err: 6, addr: 2815 }));
    t.code(|a| a.xsave64(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 6,
            addr: 11007
        })
    );
}

#[test]
fn intel_saves_probe_x87_and_mxcsr_by_rfbm_not_by_what_they_write() {
    // Quirk pf-last-byte (`xsdiff run --amx` on the Intel host; XFD disarmed): with
    // x87, header and MXCSR on a read-only page, XSAVEOPT with RFBM = x87|TILEDATA
    // and x87 in init (not written) faults at base + 0; XSAVEC with RFBM =
    // SSE|TILEDATA and SSE in init at base + 24; XSAVEC with RFBM = TILEDATA at the
    // header, base + 512.
    for (rfbm, off, xsavec) in [
        (0x40001u64, 0u64, false),
        (0x40002, 24, true),
        (0x40000, 512, true),
    ] {
        let mut t = T::user("xeon-amx-vm");
        t.prot(0, Prot::Read).rfbm(rfbm);
        t.case.gprs[3] = B + 0xC0;
        if xsavec {
            t.code(|a| a.xsavec64(ptr(rbx)));
        } else {
            t.code(|a| a.xsaveopt(ptr(rbx)));
        }
        assert_eq!(
            t.fault(),
            Some(Fault::Pf {
                err: 7,
                addr: B + 0xC0 + off
            }),
            "rfbm {rfbm:#x}"
        );
    }
}

#[test]
fn intel_xrstor_probe_counts_armed_components_in_full() {
    // Quirk pf-last-byte, Intel host (`xsdiff record`, TILEDATA armed, its end on an
    // absent page; corpus/silicon/xrstor-probe-armed-tiledata-xstate-bv-0.case,
    // xrstor-compacted-probe-armed-tiledata.case): XRSTOR probes TILEDATA's last
    // byte although TILEDATA is armed and XSTATE_BV = 0 (standard: 2AFFH;
    // compacted with XCOMP_BV = 2^63 | 600E7H: 29BFH). XSAVEC with RFBM = TILEDATA
    // does not (xsavec-armed-tiledata-not-probed.case: the header's end, 23FH).
    let mut t = T::user("xeon-amx-vm");
    t.ctl().xfd = 1 << 18;
    t.prot(2, Prot::None).rfbm(1 << 18);
    t.code(|a| a.xrstor64(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 4,
            addr: B + 0x2aff
        })
    );
    t.rfbm(!0).put_u64(520, 1 << 63 | 0x600e7);
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 4,
            addr: B + 0x29bf
        })
    );
    // TILEDATA outside XCOMP_BV: only initialized, nothing past the header probed.
    t.put_u64(520, 1 << 63 | 3);
    assert_eq!(t.fault(), None);
    let mut t = T::user("xeon-amx-vm");
    t.ctl().xfd = 1 << 18;
    t.case.gprs[3] = B + 0xe00;
    t.prot(1, Prot::None).rfbm(1 << 18);
    t.code(|a| a.xsavec64(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 6,
            addr: B + 0xe00 + 0x23f
        })
    );
}

#[test]
fn intel_xrstor_probe_comes_before_header_gp_and_xfd_nm() {
    // Quirk pf-last-byte, Intel host (corpus/silicon/xrstor-probe-before-*.case,
    // xrstor-compacted-probe-before-bit63-gp.case, -xcomp-bv-gp-before-probe.case):
    // after reading the header, XRSTOR probes the region's last byte before the
    // header #GP checks and before XFD's #NM; the compacted form checks
    // XCOMP_BV[62:0] against XCR0 first. The area at B + 800H, page 1 absent,
    // RFBM = 0E7H: the region ends at B + 800H + A7FH (standard) or + 97FH
    // (compacted 0E7H).
    let case = |xstate_bv: u64, xcomp_bv: u64, byte23: u8| {
        let mut t = T::user("xeon-amx-vm");
        t.case.gprs[3] = B + 0x800;
        t.prot(1, Prot::None).rfbm(0xe7);
        t.put_u64(0x800 + 512, xstate_bv)
            .put_u64(0x800 + 520, xcomp_bv);
        t.put(0x800 + 535, &[byte23]);
        t.code(|a| a.xrstor64(ptr(rbx)));
        t.fault()
    };
    let pf = |off: u64| {
        Some(Fault::Pf {
            err: 4,
            addr: B + 0x800 + off,
        })
    };
    assert_eq!(case(0, 0, 0x80), pf(0xa7f), "header byte 23");
    assert_eq!(case(0x100, 0, 0), pf(0xa7f), "XSTATE_BV not in XCR0");
    assert_eq!(case(0, 1, 0), pf(0xa7f), "XCOMP_BV != 0 without bit 63");
    assert_eq!(
        case(1 << 63 | 1, 1 << 63 | 0xe7, 0),
        pf(0x97f),
        "XSTATE_BV[63]"
    );
    assert_eq!(
        case(0x100, 1 << 63 | 0xe7, 0),
        pf(0x97f),
        "XSTATE_BV not in XCOMP_BV"
    );
    assert_eq!(
        case(0, 1 << 63 | 0x1e7, 0),
        Some(Fault::Gp(0)),
        "XCOMP_BV not in XCR0"
    );
    // XFD: loading the armed TILEDATA is #NM, after the probe (its end absent: #PF).
    let mut t = T::user("xeon-amx-vm");
    t.ctl().xfd = 1 << 18;
    t.prot(2, Prot::None).rfbm(!0).put_u64(512, 0x40003);
    t.code(|a| a.xrstor64(ptr(rbx)));
    assert_eq!(
        t.fault(),
        Some(Fault::Pf {
            err: 4,
            addr: B + 0x2aff
        })
    );
    t.prot(2, Prot::ReadWrite);
    assert_eq!(t.fault(), Some(Fault::Nm));
}

#[test]
fn the_envelope_admits_a_restore_pf_before_the_header_gp() {
    // SDM silent on whether a #PF on the area's other pages precedes the header
    // #GP (reference §5.2 item 5): for a model without the probe (zen5) the
    // prediction is #GP(0), and Intel's #PF on the region's last byte is inside
    // the envelope; a #PF past the region is not.
    let mut t = T::user("zen5");
    t.case.gprs[3] = B + 0x800;
    t.prot(1, Prot::None).rfbm(0xe7).put(0x800 + 535, &[0x80]);
    t.code(|a| a.xrstor64(ptr(rbx)));
    let o = t.predict();
    assert_eq!(o.fault.map(|f| f.fault), Some(Fault::Gp(0)));
    let end =
        xsave_emu::layout::standard_end(&t.model, xsave_emu::Xfeatures::from_bits_retain(0xe7));
    let mut pf = o.clone();
    let at = |addr| {
        Some(FaultAt {
            fault: Fault::Pf { err: 4, addr },
            insn: Some(0),
        })
    };
    pf.fault = at(B + 0x800 + end as u64 - 1);
    assert!(xsave_emu::check(&t.model, &t.case, &pf).unwrap().inside());
    pf.fault = at(B + 0x800 + end as u64);
    assert_eq!(
        xsave_emu::check(&t.model, &t.case, &pf).unwrap().rule_ids(),
        ["mem.pf-within-region"]
    );
}

#[test]
fn the_pf_present_bit_outside_the_case_pages_is_the_oss() {
    // foreign_page.rs: a #PF on a page outside the arena and the code page reports
    // P from the OS's page tables (diff_native on the Intel host: XRSTOR64 at
    // FFFFFFFF00000000H, a kernel mapping, err 5). The prediction says P = 0; the
    // envelope admits either. On an arena page P is the case's: 5 is outside.
    for model in ["xeon-amx-vm", "zen5"] {
        let mut t = T::user(model);
        let k = 0xffff_ffff_0000_0000u64;
        t.case.gprs[3] = k;
        t.code(|a| a.xrstor64(ptr(rbx)));
        let o = t.predict();
        // Zen 5 touches byte 0 before the header (quirk pf-first-byte).
        let first = if t.model.quirks.pf_first_byte {
            0
        } else if t.model.quirks.xrstor_header_xcomp_first {
            520
        } else {
            512
        };
        let pf = |err| {
            Some(FaultAt {
                fault: Fault::Pf {
                    err,
                    addr: k + first,
                },
                insn: Some(0),
            })
        };
        assert_eq!(o.fault, pf(4), "{model}");
        let mut obs = o.clone();
        obs.fault = pf(5);
        let j = xsave_emu::check(&t.model, &t.case, &obs).unwrap();
        assert!(j.inside(), "{model}: {j}");
        assert_eq!(j.latitude_ids(), ["pf-p-bit-outside-case"], "{model}");
        // A write (W = 1) where XRSTOR only reads.
        obs.fault = pf(6);
        assert_eq!(
            xsave_emu::check(&t.model, &t.case, &obs)
                .unwrap()
                .rule_ids(),
            ["mem.pf"],
            "{model}"
        );
        // An absent arena page: P = 0 is the case's own, P = 1 is outside.
        let mut t = T::user(model);
        t.prot(0, Prot::None).code(|a| a.xrstor64(ptr(rbx)));
        let o = t.predict();
        let mut obs = o.clone();
        let Some(FaultAt {
            fault: Fault::Pf { err: 4, addr },
            insn,
        }) = o.fault
        else {
            panic!("{model}: {:?}", o.fault)
        };
        obs.fault = Some(FaultAt {
            fault: Fault::Pf { err: 5, addr },
            insn,
        });
        assert_eq!(
            xsave_emu::check(&t.model, &t.case, &obs)
                .unwrap()
                .rule_ids(),
            ["mem.pf"],
            "{model}"
        );
    }
}
