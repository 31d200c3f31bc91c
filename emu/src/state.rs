//! Architectural state: the contents of every component, XINUSE, XMODIFIED and
//! XRSTOR_INFO (SDM1 §13.6, §13.8.3).

use crate::component::Xfeatures;
use crate::component::{COMPONENTS, MAX_COMPONENT};
use crate::layout;
use crate::model::CpuModel;

/// The bytes `XState::ext` holds beyond its contents, so that they can start
/// anywhere within a 64-byte line ([`XState::align_with`]).
const SLACK: usize = 63;

/// Copies between the state and an area this long or longer align the state
/// with the area first ([`XState::align_with`]); shorter ones do not gain.
pub const ALIGN_FROM: usize = 4096;

/// MXCSR's power-on and init value.
pub const MXCSR_INIT: u32 = 0x1F80;
/// FCW's init value.
pub const FCW_INIT: u16 = 0x037F;

/// The x87 FPU state that the XSAVE family saves (component 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X87 {
    pub fcw: u16,
    pub fsw: u16,
    /// Abridged tag word: bit j = 1 iff physical register Rj is not empty.
    pub ftw: u8,
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
    /// ST0..ST7 in stack order, 80 bits each.
    pub st: [[u8; 10]; 8],
}

impl X87 {
    pub fn init() -> X87 {
        X87 {
            fcw: FCW_INIT,
            ..X87::default()
        }
    }
    /// Init configuration (SDM1 §13.6): FCW 037FH, FSW 0, FTW all empty, FIP, FDP,
    /// FCS, FDS 0 and ST0..ST7 0. FOP is not part of it (SDM1 lists it nowhere).
    pub fn is_init(&self) -> bool {
        self.fcw == FCW_INIT
            && self.fsw == 0
            && self.ftw == 0
            && self.fip == 0
            && self.fdp == 0
            && self.fcs == 0
            && self.fds == 0
            && self.st.iter().all(|r| r.iter().all(|&b| b == 0))
    }
}

/// XRSTOR_INFO: who last restored, from where, in which format (SDM1 §13.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XrstorInfo {
    pub cpl: u8,
    pub vmx_nonroot: bool,
    pub laddr: u64,
    pub xcomp_bv: u64,
}

/// Everything the XSAVE family reads or writes, apart from memory.
#[derive(Debug, Clone)]
pub struct XState {
    pub x87: X87,
    pub mxcsr: u32,
    pub xmm: [[u8; 16]; 16],
    /// Contents of components 2 and up, each at `pad + ext_off[i]` (a private
    /// layout: the compacted layout of every component the model supports),
    /// with [`SLACK`] bytes to spare for [`XState::align_with`].
    pub ext: Vec<u8>,
    /// Where the contents start in `ext` (below [`SLACK`] + 1).
    pad: usize,
    pub ext_off: [u32; MAX_COMPONENT + 1],
    pub ext_size: [u32; MAX_COMPONENT + 1],
    pub xinuse: u64,
    pub xmodified: u64,
    pub xrstor_info: Option<XrstorInfo>,
    /// Extended components whose bytes in `ext` may differ from their init
    /// configuration (set by [`XState::comp_mut`]); a component whose bit is
    /// clear holds its init configuration, so [`XState::init_component`] and
    /// [`XState::reset_in_place`] leave it alone. Not part of the state: equal
    /// states may differ here.
    dirty: u64,
}

impl PartialEq for XState {
    fn eq(&self, o: &XState) -> bool {
        self.x87 == o.x87
            && self.mxcsr == o.mxcsr
            && self.xmm == o.xmm
            && self.contents() == o.contents()
            && self.ext_off == o.ext_off
            && self.ext_size == o.ext_size
            && self.xinuse == o.xinuse
            && self.xmodified == o.xmodified
            && self.xrstor_info == o.xrstor_info
    }
}
impl Eq for XState {}

impl XState {
    /// Power-on state: every component in its init configuration, XINUSE = 0,
    /// XMODIFIED all ones, no XRSTOR_INFO.
    pub fn reset(model: &CpuModel) -> XState {
        let (ext_off, ext_size, len) = Self::private_layout(model);
        let ext = vec![0; len + SLACK];
        // The contents start at a 64-byte boundary if the allocation allows.
        let pad = ext.as_ptr().align_offset(64).min(SLACK);
        let mut st = XState {
            x87: X87::init(),
            mxcsr: MXCSR_INIT,
            xmm: [[0; 16]; 16],
            ext,
            pad,
            ext_off,
            ext_size,
            xinuse: 0,
            xmodified: !0,
            xrstor_info: None,
            dirty: 0,
        };
        // `ext` is zero: only the components whose init configuration is not
        // all zero need their first qword.
        for (i, c) in COMPONENTS.iter().enumerate().skip(2) {
            if c.init_qword0 != 0 {
                st.write_init(i);
            }
        }
        st
    }

    /// Puts this state in the power-on state of `model` ([`XState::reset`]),
    /// reusing its buffer: when the model's private layout is the one `ext`
    /// already has, only the components changed since they were last in their
    /// init configuration are rewritten.
    pub fn reset_in_place(&mut self, model: &CpuModel) {
        let (ext_off, ext_size, len) = Self::private_layout(model);
        if ext_off != self.ext_off || ext_size != self.ext_size || len != self.len() {
            *self = XState::reset(model);
            return;
        }
        for i in Xfeatures::from_bits_retain(self.dirty).indices() {
            self.write_init(i);
        }
        self.x87 = X87::init();
        self.mxcsr = MXCSR_INIT;
        self.xmm = [[0; 16]; 16];
        self.xinuse = 0;
        self.xmodified = !0;
        self.xrstor_info = None;
    }

    /// Offsets and sizes of the components in `ext` (the compacted layout of
    /// every component the model supports, less the legacy region and header),
    /// and the length of `ext`.
    fn private_layout(
        model: &CpuModel,
    ) -> ([u32; MAX_COMPONENT + 1], [u32; MAX_COMPONENT + 1], usize) {
        let mut ext_off = [0; MAX_COMPONENT + 1];
        let mut ext_size = [0; MAX_COMPONENT + 1];
        let mut end = layout::EXTENDED_START;
        for s in layout::compacted_slots(model, model.supported()) {
            ext_off[s.index] = s.offset - layout::EXTENDED_START;
            ext_size[s.index] = s.size;
            end = s.offset.saturating_add(s.size);
        }
        (ext_off, ext_size, (end - layout::EXTENDED_START) as usize)
    }

    /// The bytes of extended component i (empty if the model lacks it).
    pub fn comp(&self, i: usize) -> &[u8] {
        let (o, n) = self.span(i);
        &self.ext[o..o + n]
    }
    pub fn comp_mut(&mut self, i: usize) -> &mut [u8] {
        self.dirty |= 1u64.checked_shl(i as u32).unwrap_or(0);
        let (o, n) = self.span(i);
        &mut self.ext[o..o + n]
    }
    /// Whether component `next` starts in `ext` where component `prev` ends
    /// (their bytes are one run there).
    pub fn follows(&self, prev: usize, next: usize) -> bool {
        let (o, n) = self.span(prev);
        self.span(next).0 == o + n
    }

    /// The `len` bytes of `ext` from component `first`'s start: the
    /// contents of the components of `run`, one after the other there
    /// ([`XState::follows`]).
    pub fn run(&self, first: usize, len: usize) -> &[u8] {
        let o = self.span(first).0;
        &self.ext[o..o + len]
    }

    /// [`XState::run`] to be written: the components of `run` may differ
    /// from their init configuration afterwards.
    pub fn run_mut(&mut self, run: u64, first: usize, len: usize) -> &mut [u8] {
        self.dirty |= run;
        let o = self.span(first).0;
        &mut self.ext[o..o + len]
    }

    /// The length of the contents in `ext`.
    fn len(&self) -> usize {
        self.ext.len() - SLACK
    }

    /// The contents of components 2 and up.
    fn contents(&self) -> &[u8] {
        &self.ext[self.pad..self.pad + self.len()]
    }

    /// Moves the contents within `ext` (by less than 64 bytes) so that
    /// component `i` starts at the same offset within a 64-byte line as the
    /// host address `peer`, the bytes it is about to be copied to or from: a
    /// copy of thousands of bytes (`rep movsb`) runs markedly slower between
    /// differently aligned buffers (Intel host: 10 KiB each way, ~20 ns of a
    /// ~100 ns pair). The arena's place is the allocator's, so the state
    /// follows it (once, for as long as the arena stays where it is).
    pub fn align_with(&mut self, i: usize, peer: usize) {
        let cur = (self.ext.as_ptr() as usize).wrapping_add(self.span(i).0) % 64;
        let want = peer % 64;
        if cur != want {
            let pad = (self.pad + want + 64 - cur) % 64;
            let len = self.len();
            self.ext.copy_within(self.pad..self.pad + len, pad);
            self.pad = pad;
        }
    }

    /// Offset and size of component i in `ext` (empty for an unknown i).
    fn span(&self, i: usize) -> (usize, usize) {
        match (self.ext_off.get(i), self.ext_size.get(i)) {
            (Some(&o), Some(&n)) if (o as usize).saturating_add(n as usize) <= self.len() => {
                (self.pad + o as usize, n as usize)
            }
            _ => (0, 0),
        }
    }

    /// Puts extended component i (i >= 2) in its init configuration (nothing to
    /// do when it has not changed since it last was).
    pub fn init_component(&mut self, i: usize) {
        if self.is_dirty(i) {
            self.write_init(i);
        }
    }

    /// Whether component i may differ from its init configuration; `false`
    /// means its bytes are its init configuration.
    pub fn is_dirty(&self, i: usize) -> bool {
        self.dirty >> i.min(63) & 1 != 0 || i >= 64
    }

    /// Writes component i's init configuration.
    fn write_init(&mut self, i: usize) {
        let q = COMPONENTS.get(i).map_or(0, |c| c.init_qword0);
        let (o, n) = self.span(i);
        let c = &mut self.ext[o..o + n];
        c.fill(0);
        if q != 0 && c.len() >= 8 {
            c[..8].copy_from_slice(&q.to_le_bytes());
        }
        self.dirty &= !1u64.checked_shl(i as u32).unwrap_or(0);
    }

    /// Whether component i holds its init configuration (SDM1 §13.6). For SSE
    /// only XMM0..XMM15 count (64-bit mode), never MXCSR.
    pub fn is_init(&self, i: usize) -> bool {
        match i {
            0 => self.x87.is_init(),
            1 => self.xmm.iter().all(|r| u128::from_le_bytes(*r) == 0),
            _ if !self.is_dirty(i) => true,
            _ => {
                let q = COMPONENTS.get(i).map_or(0, |c| c.init_qword0);
                let c = self.comp(i);
                match c.split_first_chunk::<8>() {
                    Some((head, rest)) => u64::from_le_bytes(*head) == q && all_zero(rest),
                    None => c.iter().zip(q.to_le_bytes()).all(|(&b, v)| b == v),
                }
            }
        }
    }

    /// The components (among `mask`) not in their init configuration.
    pub fn not_init(&self, mask: u64) -> u64 {
        Xfeatures::from_bits_retain(mask)
            .indices()
            .filter(|&i| !self.is_init(i))
            .fold(0, |m, i| m | 1 << i)
    }
}

/// Whether every byte of `b` is zero: 64 bytes at a time, each block OR-ed
/// as qwords (the compiler's vector code), stopping at the first nonzero block
/// (a byte-by-byte scan of a 1 KiB component cost more than the rest of a
/// prediction under `xinuse-by-contents`).
pub fn all_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    let zero_block = |blk: &[u8]| {
        blk.chunks_exact(8)
            .fold(0u64, |a, q| a | u64::from_le_bytes(q.try_into().unwrap()))
            == 0
    };
    blocks.all(zero_block) && blocks.remainder().iter().all(|&x| x == 0)
}

/// XINUSE as an implementation computes it from register contents (quirk
/// `xinuse-from-contents`, Bochs's `*_xinuse` functions): component i of
/// `mask` is in use when it is not in its init configuration (SDM1 §13.6),
/// x87 also when FOP != 0, SSE also when MXCSR != 1F80H. Both additions set
/// XINUSE[i] = 1 where the SDM allows either value.
pub fn xinuse_from_contents(st: &XState, mask: u64) -> u64 {
    let mut v = st.not_init(mask);
    if mask & 1 != 0 && st.x87.fop != 0 {
        v |= 1;
    }
    if mask & 2 != 0 && st.mxcsr != MXCSR_INIT {
        v |= 2;
    }
    v
}
