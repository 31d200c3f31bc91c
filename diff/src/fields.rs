//! The register-field catalog: every named field of an XSAVE image (legacy
//! region, header, extended components) with its offset and length for a given
//! layout. Case files name initial and final state by these names; the
//! comparison names differences by them ("XMM3[4..8]").

use xsave_emu::layout;
use xsave_emu::CpuModel;
use xsave_emu::Xfeatures;

/// One named field of an image: `len` bytes at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub len: usize,
    /// Component number the field belongs to (None for the header).
    pub component: Option<usize>,
    /// Written sparsely by byte ranges (`tiledata[a..b] = hex`) rather than whole.
    pub ranged: bool,
}

/// The catalog of one layout.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub fields: Vec<Field>,
}

fn push(v: &mut Vec<Field>, name: String, offset: usize, len: usize, comp: Option<usize>) {
    v.push(Field {
        name,
        offset,
        len,
        component: comp,
        ranged: false,
    });
}

/// Fields of extended component `i` placed at `base`.
fn component_fields(v: &mut Vec<Field>, i: usize, base: usize, size: usize) {
    let c = Some(i);
    match i {
        2 => (0..16).for_each(|k| push(v, format!("ymm{k}_h"), base + 16 * k, 16, c)),
        5 => (0..8).for_each(|k| push(v, format!("k{k}"), base + 8 * k, 8, c)),
        6 => (0..16).for_each(|k| push(v, format!("zmm{k}_h"), base + 32 * k, 32, c)),
        7 => (0..16).for_each(|k| push(v, format!("zmm{}", k + 16), base + 64 * k, 64, c)),
        // SDM1 13.5.6: the nine trace MSRs, 8 bytes each, in this order.
        8 => PT_MSRS
            .iter()
            .enumerate()
            .for_each(|(k, m)| push(v, m.0.into(), base + 8 * k, 8, c)),
        9 => push(v, "pkru".into(), base, 4, c),
        10 => push(v, "pasid".into(), base, 8, c),
        13 => push(v, "pm_ctl1".into(), base, 8, c),
        // SDM1 13.5.11: UINTR state as six qwords (UIF is bit 63 of the third).
        14 => UINTR_MSRS
            .iter()
            .enumerate()
            .for_each(|(k, m)| push(v, m.0.into(), base + 8 * k, 8, c)),
        // SDM1 13.5.12: five MSRs, then a (FROM_IP, TO_IP, INFO) triple per
        // record, as many as the component's size holds.
        15 => {
            LBR_MSRS
                .iter()
                .enumerate()
                .for_each(|(k, m)| push(v, m.0.into(), base + 8 * k, 8, c));
            for x in 0..size.saturating_sub(40) / 24 {
                let at = base + 40 + 24 * x;
                push(v, format!("lbr{x}_from_ip"), at, 8, c);
                push(v, format!("lbr{x}_to_ip"), at + 8, 8, c);
                push(v, format!("lbr{x}_info"), at + 16, 8, c);
            }
        }
        16 => push(v, "hwp_request".into(), base, 8, c),
        11 => {
            push(v, "u_cet".into(), base, 8, c);
            push(v, "pl3_ssp".into(), base + 8, 8, c);
        }
        12 => {
            push(v, "pl0_ssp".into(), base, 8, c);
            push(v, "pl1_ssp".into(), base + 8, 8, c);
            push(v, "pl2_ssp".into(), base + 16, 8, c);
        }
        17 => push(v, "tilecfg".into(), base, size.min(64), c),
        18 => v.push(Field {
            name: "tiledata".into(),
            offset: base,
            len: size,
            component: c,
            ranged: true,
        }),
        _ => {}
    }
}

impl Catalog {
    /// The catalog of an image: standard format for the user components of
    /// `mask`, or compacted for `mask` (XCOMP_BV without bit 63).
    pub fn new(model: &CpuModel, mask: u64, compacted: bool) -> Catalog {
        let mut v = Vec::with_capacity(128);
        let c0 = Some(0);
        let c1 = Some(1);
        push(&mut v, "fcw".into(), 0, 2, c0);
        push(&mut v, "fsw".into(), 2, 2, c0);
        push(&mut v, "ftw".into(), 4, 1, c0);
        push(&mut v, "fop".into(), 6, 2, c0);
        push(&mut v, "fip".into(), 8, 8, c0);
        push(&mut v, "fdp".into(), 16, 8, c0);
        push(&mut v, "mxcsr".into(), 24, 4, c1);
        push(&mut v, "mxcsr_mask".into(), 28, 4, c1);
        for k in 0..8 {
            push(&mut v, format!("st{k}"), 32 + 16 * k, 10, c0);
        }
        for k in 0..16 {
            push(&mut v, format!("xmm{k}"), 160 + 16 * k, 16, c1);
        }
        push(&mut v, "xstate_bv".into(), 512, 8, None);
        push(&mut v, "xcomp_bv".into(), 520, 8, None);
        let m = Xfeatures::from_bits_retain(mask & !(1 << 63));
        let lay = if compacted {
            layout::compacted(model, m)
        } else {
            layout::standard(model, m)
        };
        for s in &lay.slots {
            component_fields(&mut v, s.index, s.offset as usize, s.size as usize);
        }
        Catalog { fields: v }
    }

    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field holding byte `off`, if any.
    pub fn at(&self, off: usize) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| off >= f.offset && off < f.offset + f.len)
    }
}

/// The MSRs the supervisor components' fields hold (SDM4 table 2-2):
/// (field name, MSR name, MSR number).
pub const SUPERVISOR_MSRS: [(&str, &str, u32); 8] = [
    ("u_cet", "IA32_U_CET", 0x6a0),
    ("pl3_ssp", "IA32_PL3_SSP", 0x6a7),
    ("pl0_ssp", "IA32_PL0_SSP", 0x6a4),
    ("pl1_ssp", "IA32_PL1_SSP", 0x6a5),
    ("pl2_ssp", "IA32_PL2_SSP", 0x6a6),
    ("pasid", "IA32_PASID", 0xd93),
    ("pm_ctl1", "IA32_PM_CTL1", 0xdb0),
    ("hwp_request", "IA32_HWP_REQUEST", 0x774),
];

/// PT state (component 8), in its order in the area (SDM1 13.5.6).
pub const PT_MSRS: [(&str, &str, u32); 9] = [
    ("rtit_ctl", "IA32_RTIT_CTL", 0x570),
    ("rtit_output_base", "IA32_RTIT_OUTPUT_BASE", 0x560),
    ("rtit_output_mask_ptrs", "IA32_RTIT_OUTPUT_MASK_PTRS", 0x561),
    ("rtit_status", "IA32_RTIT_STATUS", 0x571),
    ("rtit_cr3_match", "IA32_RTIT_CR3_MATCH", 0x572),
    ("rtit_addr0_a", "IA32_RTIT_ADDR0_A", 0x580),
    ("rtit_addr0_b", "IA32_RTIT_ADDR0_B", 0x581),
    ("rtit_addr1_a", "IA32_RTIT_ADDR1_A", 0x582),
    ("rtit_addr1_b", "IA32_RTIT_ADDR1_B", 0x583),
];

/// UINTR state (component 14), in its order in the area (SDM1 13.5.11).
pub const UINTR_MSRS: [(&str, &str, u32); 6] = [
    ("uintr_handler", "IA32_UINTR_HANDLER", 0x986),
    ("uintr_stackadjust", "IA32_UINTR_STACKADJUST", 0x987),
    ("uintr_misc", "IA32_UINTR_MISC (bit 63: UIF)", 0x988),
    ("uintr_pd", "IA32_UINTR_PD", 0x989),
    ("uintr_rr", "IA32_UINTR_RR", 0x985),
    ("uintr_tt", "IA32_UINTR_TT", 0x98a),
];

/// Arch LBR state (component 15) before its records (SDM1 13.5.12).
pub const LBR_MSRS: [(&str, &str, u32); 5] = [
    ("lbr_ctl", "IA32_LBR_CTL", 0x14ce),
    ("lbr_depth", "IA32_LBR_DEPTH", 0x14cf),
    ("ler_from_ip", "IA32_LER_FROM_IP", 0x1dd),
    ("ler_to_ip", "IA32_LER_TO_IP", 0x1de),
    ("ler_info", "IA32_LER_INFO", 0x1e0),
];

/// The MSR a supervisor field holds: (MSR name, number).
pub fn msr_of(field: &str) -> Option<(String, u32)> {
    let fixed = SUPERVISOR_MSRS
        .iter()
        .chain(&PT_MSRS)
        .chain(&UINTR_MSRS)
        .chain(&LBR_MSRS)
        .find(|m| m.0 == field)
        .map(|m| (m.1.to_string(), m.2));
    fixed.or_else(|| {
        // lbrX_from_ip, lbrX_to_ip, lbrX_info: IA32_LBR_X_* at 1500H, 1600H, 1200H + X.
        let r = field.strip_prefix("lbr")?;
        let (x, what) = r.split_once('_')?;
        let x: u32 = x.parse().ok()?;
        let (name, base) = match what {
            "from_ip" => ("FROM_IP", 0x1500),
            "to_ip" => ("TO_IP", 0x1600),
            "info" => ("INFO", 0x1200),
            _ => return None,
        };
        Some((format!("IA32_LBR_{x}_{name}"), base + x))
    })
}

/// The fields of the supervisor state an outcome reports ([`xsave_emu::Outcome::supervisor`]:
/// each supervisor component enabled in `xss`, ascending, concatenated), with
/// their offsets in it.
pub fn supervisor_fields(model: &CpuModel, xss: u64) -> Vec<Field> {
    let mut v = Vec::new();
    let mut base = 0usize;
    for i in Xfeatures::from_bits_retain(xss).indices() {
        if let Some(c) = model.component(i).filter(|c| c.supervisor) {
            component_fields(&mut v, i, base, c.size as usize);
            base += c.size as usize;
        }
    }
    v
}

/// Every field name a model's images can hold: the catalog of the compacted
/// image of every component the model supports (user and supervisor).
pub fn all_fields(model: &CpuModel) -> Catalog {
    let all = model.xcr0_supported | model.xss_supported;
    Catalog::new(model, all | 1 << 63, true)
}

/// The `k` names of `names` nearest to `key` (edit distance at most 3).
pub fn nearest<'a>(key: &str, names: impl Iterator<Item = &'a str>, k: usize) -> Vec<&'a str> {
    let mut v: Vec<(usize, &str)> = names
        .map(|n| (distance(key, n), n))
        .filter(|(d, _)| *d <= 3)
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.1 == b.1);
    v.into_iter().take(k).map(|(_, n)| n).collect()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// One row of `xsdiff fields`: a name a case file may use, where it lives,
/// and the sections it may appear in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub place: String,
    pub sections: String,
}

const IMAGE: &str = "[init], [expect], [record M]";

/// Every name a case file may use on `model`, in file order: the control
/// state, the image's fields, the supervisor state, the GPRs and the keys
/// that take ranges or whole outcomes. `xsdiff fields` prints it and the
/// format's documentation (diff/CASE-FIELDS.md) is generated from it.
pub fn rows(model: &CpuModel) -> Vec<Row> {
    let r = |n: &str, p: String, s: &str| Row {
        name: n.to_string(),
        place: p,
        sections: s.to_string(),
    };
    let mut v = vec![
        r("xcr0", "XCR0 (XSETBV ECX = 0)".into(), "[control]"),
        r("xss", "IA32_XSS (MSR DA0H)".into(), "[control]"),
        r("xfd", "IA32_XFD (MSR 1C4H)".into(), "[control]"),
        r("cpl", "CPL 0..3 (3 unless said)".into(), "[control]"),
    ];
    for f in [
        "cr0.ts",
        "cr0.em",
        "cr0.am",
        "cr4.osxsave",
        "cr4.osfxsr",
        "eflags.ac",
        "vmx_nonroot",
    ] {
        v.push(r(
            f,
            format!("{} flag, 0 or 1", f.to_uppercase()),
            "[control]",
        ));
    }
    v.push(r(
        "size",
        "the initial image's length in bytes".into(),
        "[init]",
    ));
    let std = Catalog::new(model, model.xcr0_supported, false);
    let all = model.xcr0_supported | model.xss_supported;
    let cmp = Catalog::new(model, all | 1 << 63, true);
    for f in &std.fields {
        let c = cmp.get(&f.name).map_or(f.offset, |c| c.offset);
        let name = if f.ranged {
            format!("{}[A..B]", f.name)
        } else {
            f.name.clone()
        };
        let place = if f.component.is_none_or(|i| i < 2) {
            format!("image +{}, {} bytes", f.offset, f.len)
        } else {
            format!(
                "image +{} standard, +{c} compacted with XCOMP_BV = {:#x}, {} bytes",
                f.offset,
                all | 1 << 63,
                f.len
            )
        };
        v.push(r(&name, place, IMAGE));
    }
    for &(n, o, l) in &ALIASES {
        v.push(r(
            n,
            format!("image +{o}, {l} bytes (32-bit format)"),
            IMAGE,
        ));
    }
    // The supervisor state as a case has it: every supervisor component the
    // model supports (a CPL 0 case enables them in IA32_XSS).
    let xss = model.xss_supported;
    let sup = supervisor_fields(model, xss);
    for f in &sup {
        let Some(i) = f.component else { continue };
        let msr = msr_of(&f.name).map_or(String::new(), |m| format!("{} (MSR {:X}H); ", m.0, m.1));
        let c = cmp.get(&f.name).map_or(0, |c| c.offset);
        v.push(r(
            &f.name,
            format!(
                "{msr}compacted image +{c} with XCOMP_BV = {:#x}; supervisor state +{} with IA32_XSS = {:#x}; {} bytes",
                all | 1 << 63,
                f.offset,
                xss,
                f.len
            ),
            &format!("[init] (xcomp_bv bits 63 and {i}), [expect], [record M] (xss bit {i})"),
        ));
    }
    for g in xsave_emu::case::GPR_NAMES {
        v.push(r(
            g,
            "general-purpose register, 8 bytes".into(),
            "[gprs], [expect], [record M]",
        ));
    }
    v.extend([
        r("init[A..B]", "initial image bytes A..B".into(), "[init]"),
        r(
            "final[A..B]",
            "final image bytes A..B (standard format)".into(),
            "[expect], [record M]",
        ),
        r(
            "supervisor[A..B]",
            "supervisor state bytes A..B".into(),
            "[expect], [record M]",
        ),
        r(
            "pages",
            format!("arena pages, 1..{}", xsave_emu::case::MAX_ARENA_PAGES),
            "[arena]",
        ),
        r(
            "page N",
            "page N's protection: rw, r or none".into(),
            "[arena]",
        ),
        r("OFFSET", "arena bytes at OFFSET".into(), "[arena]"),
        r(
            "A..B",
            "arena bytes A..B, one byte repeated (`0x100..0x200 = 55*`)".into(),
            "[arena]",
        ),
        r(
            "fill",
            "every arena byte (`fill = aa`), before OFFSET lines".into(),
            "[arena]",
        ),
        r(
            "mem[A..B]",
            "arena bytes A..B after the case".into(),
            "[expect], [record M]",
        ),
        r(
            "fault",
            "none, or `#GP(0x0) at 0`, `#PF(err=0x6, cr2=arena+0x1000) at 1`, `#NM at init`".into(),
            "[expect], [record M]",
        ),
        r(
            "xinuse",
            "XGETBV(1), or none".into(),
            "[expect], [record M]",
        ),
        r(
            "only",
            "the parts checked: fault, gprs, final, xinuse, memory, supervisor, layout".into(),
            "[expect], [record M]",
        ),
        r(
            "accept",
            "`sdm`: a backend other than the emulator also passes where it differs only by a choice the SDM leaves open (inside the envelope); the emulator is held to every value".into(),
            "[expect], [record M]",
        ),
        r(
            "standard.C",
            "component C's (name or number: `standard.avx`) standard-format `OFFSET, SIZE`, as `xsdiff layout` prints them: CPUID.(0DH,C).EBX, EAX".into(),
            "[expect], [record M]",
        ),
        r(
            "standard.size",
            "the standard-format area's size for the case's XCR0: CPUID.(0DH,0).EBX".into(),
            "[expect], [record M]",
        ),
        r(
            "compacted.C",
            "component C's compacted-format `OFFSET, SIZE` (SDM1 13.4.3) for the initial image's XCOMP_BV when compacted, else XCR0 | IA32_XSS".into(),
            "[expect], [record M]",
        ),
        r(
            "compacted.size",
            "the compacted-format area's size for that mask".into(),
            "[expect], [record M]",
        ),
        r(
            "compacted(M).C",
            "the same for mask M (`compacted(0x18e7).cet_s`, `compacted(0x8e7).size`)".into(),
            "[expect], [record M]",
        ),
    ]);
    v
}

/// The rows as text, one a line.
pub fn text(model: &CpuModel) -> String {
    let rows = rows(model);
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut s = format!("fields of model {}\n", model.name);
    for r in rows {
        s.push_str(&format!("{:<w$}  {}  in {}\n", r.name, r.place, r.sections));
    }
    s
}

/// The rows as the Markdown of diff/CASE-FIELDS.md.
pub fn markdown(model: &CpuModel) -> String {
    let mut s = format!(
        "# Case-file fields\n\nGenerated by `xsdiff fields --cpu {} --markdown` (a test checks that this file\nand the command agree). Other models place the extended components at their own\noffsets: `xsdiff fields --cpu MODEL` prints them.\n\n| name | place | sections |\n|---|---|---|\n",
        model.name
    );
    for r in rows(model) {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.name,
            r.place.replace('|', "\\|"),
            r.sections
        ));
    }
    s
}

/// Aliases accepted when reading: the 32-bit-format selectors, which overlap
/// FIP and FDP in the 64-bit format (name, offset, length).
pub const ALIASES: [(&str, usize, usize); 2] = [("fcs", 12, 2), ("fds", 20, 2)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zen5_standard_catalog_places_avx_and_opmask() {
        // zen5 CPUID.(0DH,2).EBX = 576, (0DH,5).EBX = 832 (silicon.md).
        let m = CpuModel::builtin("zen5").unwrap();
        let c = Catalog::new(&m, 0xe7, false);
        assert_eq!(c.get("ymm1_h").unwrap().offset, 592);
        assert_eq!(c.get("k7").unwrap().offset, 832 + 56);
        assert_eq!(c.get("zmm31").unwrap().offset, 1408 + 15 * 64);
        assert!(c.get("tilecfg").is_none());
    }

    #[test]
    fn supervisor_fields_follow_cet_u_then_cet_s() {
        // Outcome::supervisor with IA32_XSS = 1800H: CET_U's 16 bytes (U_CET,
        // PL3_SSP), then CET_S's 24 (PL0_SSP, PL1_SSP, PL2_SSP) (SDM1 §13.5.6-7).
        let m = CpuModel::builtin("zen5").unwrap();
        let f = supervisor_fields(&m, 0x1800);
        let at = |n: &str| f.iter().find(|x| x.name == n).unwrap().offset;
        assert_eq!((at("u_cet"), at("pl3_ssp")), (0, 8));
        assert_eq!((at("pl0_ssp"), at("pl1_ssp"), at("pl2_ssp")), (16, 24, 32));
        // With CET_S alone it starts at 0.
        let f = supervisor_fields(&m, 0x1000);
        assert_eq!(f.iter().map(|x| x.offset).collect::<Vec<_>>(), [0, 8, 16]);
    }

    #[test]
    fn sapphire_rapids_supervisor_components_by_name() {
        // sapphire-rapids CPUID.(0DH,1):ECX = DD00H: PT (128 bytes), PASID (8),
        // CET_U (16), CET_S (24), UINTR (48), LBR (808: 5 MSRs, 32 records of
        // 24 bytes), in that order in the supervisor state. SDM1 13.5.6: PT's
        // IA32_RTIT_STATUS is its fourth qword; 13.5.11: UINTR's MISC its third;
        // 13.5.12: the records start at 40, IA32_LBR_31_INFO at 800.
        let m = CpuModel::builtin("sapphire-rapids").unwrap();
        let f = supervisor_fields(&m, 0xdd00);
        let at = |n: &str| f.iter().find(|x| x.name == n).unwrap().offset;
        assert_eq!(at("rtit_status"), 24);
        assert_eq!(at("pasid"), 128);
        assert_eq!(at("pl0_ssp"), 128 + 8 + 16);
        assert_eq!(at("uintr_misc"), 176 + 16);
        assert_eq!(at("lbr0_from_ip"), 224 + 40);
        assert_eq!(at("lbr31_info"), 224 + 800);
        assert_eq!(f.last().unwrap().offset + 8, 224 + 808);
        assert_eq!(
            msr_of("lbr31_info"),
            Some(("IA32_LBR_31_INFO".to_string(), 0x121f))
        );
        assert_eq!(msr_of("pasid"), Some(("IA32_PASID".to_string(), 0xd93)));
    }

    #[test]
    fn nearest_names_for_typos() {
        let m = CpuModel::builtin("zen5").unwrap();
        let c = all_fields(&m);
        let names = || c.fields.iter().map(|f| f.name.as_str());
        assert_eq!(nearest("pl0ssp", names(), 2), ["pl0_ssp", "pl1_ssp"]);
        assert_eq!(nearest("mxscr", names(), 1), ["mxcsr"]);
        assert!(nearest("zzzzzzzz", names(), 3).is_empty());
    }

    #[test]
    fn zen5_compacted_catalog_places_cet() {
        // Compacted 0x18e7 on zen5: CET_U at 2432, CET_S at 2448 (Linux boot log).
        let m = CpuModel::builtin("zen5").unwrap();
        let c = Catalog::new(&m, 0x18e7, true);
        assert_eq!(c.get("pl3_ssp").unwrap().offset, 2440);
        assert_eq!(c.get("pl2_ssp").unwrap().offset, 2448 + 16);
    }
}
