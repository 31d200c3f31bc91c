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
        9 => push(v, "pkru".into(), base, 4, c),
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

/// The supervisor MSRs a supervisor component's fields hold (SDM4 table 2-2):
/// (field name, MSR name, MSR number).
pub const SUPERVISOR_MSRS: [(&str, &str, u32); 5] = [
    ("u_cet", "IA32_U_CET", 0x6a0),
    ("pl3_ssp", "IA32_PL3_SSP", 0x6a7),
    ("pl0_ssp", "IA32_PL0_SSP", 0x6a4),
    ("pl1_ssp", "IA32_PL1_SSP", 0x6a5),
    ("pl2_ssp", "IA32_PL2_SSP", 0x6a6),
];

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
