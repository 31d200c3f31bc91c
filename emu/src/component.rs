//! State components of the XSAVE feature set (SDM1 §13.1, §13.5) and the
//! bitmap type that names them (XCR0, IA32_XSS, RFBM, XSTATE_BV, XCOMP_BV, XINUSE).

bitflags::bitflags! {
    /// A state-component bitmap. Bit 63 of XCOMP_BV is the compacted-format
    /// flag, not a component; it is kept as [`Xfeatures::COMPACTED`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct Xfeatures: u64 {
        const X87 = 1 << 0;
        const SSE = 1 << 1;
        const AVX = 1 << 2;
        const BNDREGS = 1 << 3;
        const BNDCSR = 1 << 4;
        const OPMASK = 1 << 5;
        const ZMM_HI256 = 1 << 6;
        const HI16_ZMM = 1 << 7;
        const PT = 1 << 8;
        const PKRU = 1 << 9;
        const PASID = 1 << 10;
        const CET_U = 1 << 11;
        const CET_S = 1 << 12;
        const HDC = 1 << 13;
        const UINTR = 1 << 14;
        const LBR = 1 << 15;
        const HWP = 1 << 16;
        const XTILECFG = 1 << 17;
        const XTILEDATA = 1 << 18;
        const APX = 1 << 19;
        const COMPACTED = 1 << 63;
        const _ = !0;
    }
}

/// The highest component number this model knows.
pub const MAX_COMPONENT: usize = 19;

/// Static facts of one component that do not depend on the CPU model.
#[derive(Debug, Clone, Copy)]
pub struct ComponentInfo {
    pub index: usize,
    pub name: &'static str,
    /// Supervisor state: managed only by XSAVES/XRSTORS, enabled in IA32_XSS.
    pub supervisor: bool,
    /// Init configuration (SDM1 §13.6): the component's bytes are all zero except
    /// the little-endian qword `init_qword0` at offset 0 (HDC = 1, HWP = 8000FF01H).
    pub init_qword0: u64,
}

const fn c(index: usize, name: &'static str, supervisor: bool) -> ComponentInfo {
    ComponentInfo {
        index,
        name,
        supervisor,
        init_qword0: 0,
    }
}

/// One row per component number 0..=19 (SDM1 Table 13-1; APX from later editions).
pub const COMPONENTS: [ComponentInfo; MAX_COMPONENT + 1] = [
    c(0, "x87", false),
    c(1, "SSE", false),
    c(2, "AVX", false),
    c(3, "BNDREGS", false),
    c(4, "BNDCSR", false),
    c(5, "OPMASK", false),
    c(6, "ZMM_Hi256", false),
    c(7, "Hi16_ZMM", false),
    c(8, "PT", true),
    c(9, "PKRU", false),
    c(10, "PASID", true),
    c(11, "CET_U", true),
    c(12, "CET_S", true),
    ComponentInfo {
        index: 13,
        name: "HDC",
        supervisor: true,
        init_qword0: 1,
    },
    c(14, "UINTR", true),
    c(15, "LBR", true),
    ComponentInfo {
        index: 16,
        name: "HWP",
        supervisor: true,
        init_qword0: 0x8000_FF01,
    },
    c(17, "XTILECFG", false),
    c(18, "XTILEDATA", false),
    c(19, "APX", false),
];

impl Xfeatures {
    pub fn has(self, i: usize) -> bool {
        i < 64 && self.bits() & (1u64 << i) != 0
    }
    pub fn bit(i: usize) -> Xfeatures {
        Xfeatures::from_bits_retain(1u64 << i)
    }
    /// Component numbers set in the mask, ascending (bit 63 excluded).
    pub fn indices(self) -> impl Iterator<Item = usize> {
        // One step per set bit (the lowest set bit, then cleared): the layout
        // functions call this several times per instruction.
        let mut b = self.bits() & !(1u64 << 63);
        std::iter::from_fn(move || {
            if b == 0 {
                return None;
            }
            let i = b.trailing_zeros() as usize;
            b &= b - 1;
            Some(i)
        })
    }
    /// Names of the set bits, e.g. `x87|SSE|AVX`.
    pub fn names(self) -> String {
        let mut v: Vec<String> = self
            .indices()
            .map(|i| {
                component_name(i)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("bit{i}"))
            })
            .collect();
        if self.contains(Xfeatures::COMPACTED) {
            v.push("COMPACTED".into());
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join("|")
        }
    }
}

pub fn component_name(i: usize) -> Option<&'static str> {
    COMPONENTS.get(i).map(|c| c.name)
}

/// Component number from its name (case-insensitive).
pub fn component_by_name(name: &str) -> Option<usize> {
    COMPONENTS
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
}
