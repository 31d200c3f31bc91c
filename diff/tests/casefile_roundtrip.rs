//! Writing a case then reading it gives the same case, for generated cases on
//! every built-in model; expected-outcome sections read back as the outcome.
use proptest::prelude::*;
use xsave_diff::casefile::{write_case, write_outcome, CaseFile};
use xsave_diff::generate::{generate, Target};
use xsave_emu::{Control, CpuModel};

fn target(name: &str, cpl0: bool, ts: bool) -> Target {
    let model = CpuModel::builtin(name).unwrap();
    let mut control = Control::user(&model);
    if cpl0 {
        control.cpl = 0;
    }
    control.cr0_ts = ts;
    Target { model, control }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn write_then_read_gives_the_same_case(
        seed in any::<u64>(),
        index in any::<u64>(),
        m in 0usize..3,
        cpl0 in any::<bool>(),
        ts in any::<bool>(),
    ) {
        let name = ["zen5", "xeon-amx-vm", "sapphire-rapids"][m];
        let t = target(name, cpl0, ts);
        let case = generate(&t, seed, index);
        let text = write_case(&["a comment".into()], name, &t.model, &case);
        let cf = CaseFile::parse(&text, "gen.case").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cf.comments, &vec!["a comment".to_string()]);
        let back = cf.build(&t.model).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &case, "{}", text);
        // The prediction written as [expect] reads back as the same outcome.
        if let Ok(o) = xsave_emu::predict(&t.model, &case) {
            let full = format!("{text}{}", write_outcome("expect", &t.model, &case, &o));
            let cf = CaseFile::parse(&full, "gen.case").map_err(|e| TestCaseError::fail(e.to_string()))?;
            let exp = cf.expected(cf.expect.as_ref().unwrap(), &t.model, &case)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(exp.check_xinuse);
            prop_assert_eq!(&exp.outcome, &o, "{}", full);
        }
    }
}

#[test]
fn compacted_image_with_supervisor_fields_round_trips() {
    // A compacted image holding CET state (zen5: CET_U at 2432, CET_S at 2448, SDM1 13.4.3).
    let t = target("zen5", true, false);
    let mut case = xsave_emu::Case::new(&t.model, t.control);
    case.init.resize(2472, 0);
    case.init[520..528].copy_from_slice(&(0x18e7u64 | 1 << 63).to_le_bytes());
    case.init[512..520].copy_from_slice(&0x1801u64.to_le_bytes());
    case.init[2440..2448].copy_from_slice(&0x7fff_ffff_f000u64.to_le_bytes());
    case.init[2448..2456].copy_from_slice(&0xffff_8000_0000_0ff8u64.to_le_bytes());
    let text = write_case(&[], "zen5", &t.model, &case);
    assert!(text.contains("pl3_ssp = 0x7ffffffff000"), "{text}");
    assert!(text.contains("pl0_ssp = 0xffff800000000ff8"), "{text}");
    let back = CaseFile::parse(&text, "c.case")
        .unwrap()
        .build(&t.model)
        .unwrap();
    assert_eq!(back, case);
}
