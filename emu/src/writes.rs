//! A save's writes, collected before any is made ([`Writes`]): each piece an
//! address, its bytes (copied, a component's contents read when written, or
//! a component's initial configuration) and the rule that writes it. Making
//! them (checked against the pages, in the order a silicon faults in) is
//! [`crate::area`]'s.

use crate::arena_bytes::ArenaBytes;
use crate::memory::Memory;
use crate::rules::{self, Rule};
use crate::state::XState;

/// Where a piece's bytes come from: copied into the collection (the legacy
/// region, the header), or read from the state when the writes are made (an
/// extended component, thousands of bytes, never copied twice), or a
/// component's initial configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src {
    /// `Writes::buf[start..start + len]`.
    Buf(usize),
    /// The contents of component i (`XState::comp`).
    Comp(usize),
    /// Component i in its initial configuration (zero but for its first qword).
    Init(usize),
    /// XMM0..XMM15 as the legacy region holds them (bytes 160..416).
    Xmm,
}

/// The bytes a piece (or a run of them) writes: borrowed, or a component's
/// initial configuration of the given length (made where it is written).
enum Source<'a> {
    Bytes(&'a [u8]),
    Init(usize, usize),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub(crate) addr: u64,
    pub(crate) len: usize,
    pub(crate) src: Src,
    /// The rule that writes it.
    pub(crate) rule: &'static Rule,
}

impl Piece {
    /// The state byte a save's piece starts with (its bytes copy the state
    /// bytes from there on), for the area at `base`: a component's contents,
    /// or the legacy region's x87 (offsets 0..160) or XMM (160..416) bytes.
    pub(crate) fn state_byte(&self, base: u64) -> Option<crate::latitude::StateByte> {
        match self.src {
            Src::Comp(i) => Some((i, 0)),
            Src::Buf(_) | Src::Xmm => match self.addr.wrapping_sub(base) {
                o @ 0..160 => Some((0, o as u32)),
                o @ 160..416 => Some((1, o as u32 - 160)),
                _ => None,
            },
            Src::Init(_) => None,
        }
    }
}

/// A save's writes, collected before any is made. Pieces never overlap; the
/// state they name must not change before they are written.
#[derive(Debug, Default)]
pub struct Writes {
    pub(crate) pieces: Vec<Piece>,
    buf: Vec<u8>,
    /// The rule of the pieces put from now on ([`Writes::by`]).
    rule: Option<&'static Rule>,
}

impl Writes {
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.buf.clear();
        self.rule = None;
    }
    /// The pieces put from now on are written by `rule`.
    pub fn by(&mut self, rule: &'static Rule) -> &mut Self {
        self.rule = Some(rule);
        self
    }
    fn rule(&self) -> &'static Rule {
        self.rule.unwrap_or(&rules::SAVE_WRITES_ONLY_SAVED)
    }
    /// Room for a full save (every component a piece; the legacy region and
    /// the header copied) in one allocation each, instead of growing.
    pub fn reserve(&mut self) {
        self.pieces.reserve(32);
        self.buf.reserve(1024);
    }
    pub fn put(&mut self, addr: u64, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let rule = self.rule();
        self.pieces.push(Piece {
            addr,
            len: bytes.len(),
            src: Src::Buf(start),
            rule,
        });
    }
    /// [`Writes::put`] by `rule`, whatever [`Writes::by`] said.
    pub fn put_with(&mut self, rule: &'static Rule, addr: u64, bytes: &[u8]) {
        let r = self.rule.replace(rule);
        self.put(addr, bytes);
        self.rule = r;
    }
    /// `len` bytes for `addr..`, zero until `fill` writes them in place, of
    /// which the ranges `parts` are written (each a piece by `rule`).
    pub fn put_parts_with(
        &mut self,
        rule: &'static Rule,
        addr: u64,
        len: usize,
        parts: &[std::ops::Range<usize>],
        fill: impl FnOnce(&mut [u8]),
    ) {
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        fill(&mut self.buf[start..]);
        for r in parts {
            self.pieces.push(Piece {
                addr: addr.wrapping_add(r.start as u64),
                len: r.len(),
                src: Src::Buf(start + r.start),
                rule,
            });
        }
    }
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
    /// Component `i` of the state as it is when the writes are made.
    pub fn put_comp(&mut self, st: &XState, addr: u64, i: usize) {
        let rule = self.rule();
        self.pieces.push(Piece {
            addr,
            len: st.comp(i).len(),
            src: Src::Comp(i),
            rule,
        });
    }
    /// XMM0..XMM15 (64-bit mode) as they are when the writes are made.
    pub fn put_xmm(&mut self, addr: u64) {
        let rule = self.rule();
        self.pieces.push(Piece {
            addr,
            len: 256,
            src: Src::Xmm,
            rule,
        });
    }
    /// Component `i` in its initial configuration, `len` bytes.
    pub fn put_init(&mut self, addr: u64, i: usize, len: usize) {
        let rule = self.rule();
        self.pieces.push(Piece {
            addr,
            len,
            src: Src::Init(i),
            rule,
        });
    }

    /// The run of pieces from piece `k`: its length and the piece after it.
    /// Components that follow each other both in the area and in the state
    /// ([`XState::follows`]) are one run.
    fn run_at(&self, st: &XState, k: usize) -> (usize, usize) {
        let p = &self.pieces[k];
        let (mut len, mut next) = (p.len, k + 1);
        if let Src::Comp(mut last) = p.src {
            while let Some(&Piece {
                addr,
                len: n,
                src: Src::Comp(j),
                ..
            }) = self.pieces.get(next)
            {
                if addr != p.addr.wrapping_add(len as u64) || !st.follows(last, j) {
                    break;
                }
                (last, len, next) = (j, len + n, next + 1);
            }
        }
        (len, next)
    }

    /// The run of pieces from piece `k` ([`Writes::run_at`]) as it is to be
    /// written at address `dst` of the host: its length and the piece after
    /// it. A run of components of [`crate::state::ALIGN_FROM`] bytes or more
    /// moves the state's contents to `dst`'s offset within a cache line first
    /// ([`XState::align_with`]).
    #[inline(always)]
    fn run_to(&self, st: &mut XState, k: usize, dst: usize) -> (usize, usize) {
        let (len, next) = self.run_at(st, k);
        if let Src::Comp(i) = self.pieces[k].src {
            if len >= crate::state::ALIGN_FROM {
                st.align_with(i, dst);
            }
        }
        (len, next)
    }

    /// The bytes of the `len` bytes from piece `k` on (a piece, or a run of
    /// them from [`Writes::run_at`]).
    #[inline(always)]
    fn source<'a>(&'a self, st: &'a XState, k: usize, len: usize) -> Source<'a> {
        match self.pieces[k].src {
            Src::Buf(s) => Source::Bytes(&self.buf[s..s + len]),
            Src::Xmm => Source::Bytes(st.xmm.as_flattened()),
            Src::Comp(i) => Source::Bytes(st.run(i, len)),
            Src::Init(i) => Source::Init(i, len),
        }
    }

    /// Writes each piece into `out` (indexed by `addr - base`), a run at a
    /// time ([`Writes::run_at`]). Inlined into the write in place as it was
    /// before [`Writes::write_over`] called it too (out of line it measured
    /// 3.9% of the bench's round trip).
    #[inline(always)]
    fn write_to(&self, st: &mut XState, out: &mut [u8], base: u64) {
        let mut k = 0;
        while k < self.pieces.len() {
            let o = self.pieces[k].addr.wrapping_sub(base) as usize;
            let (len, next) = self.run_to(st, k, out.as_ptr() as usize + o);
            let dst = &mut out[o..o + len];
            match self.source(st, k, len) {
                Source::Bytes(b) => dst.copy_from_slice(b),
                Source::Init(i, _) => init_bytes(i, dst),
            }
            k = next;
        }
    }

    /// Sorts the pieces by address; whether none overlaps the next then.
    fn sort_disjoint(&mut self) -> bool {
        if !self.pieces.is_sorted_by_key(|p| p.addr) {
            self.pieces.sort_unstable_by_key(|p| p.addr);
        }
        self.pieces
            .windows(2)
            .all(|w| w[0].addr.wrapping_add(w[0].len as u64) <= w[1].addr)
    }

    /// [`Writes::write_to`] of shared `bytes`: into a copy that is built in
    /// address order and copies none of the bytes the pieces cover
    /// ([`ArenaBytes::written_over`]). Overlapping pieces (no save makes them
    /// on a model whose components do not overlap) are written over a whole
    /// copy, in address order.
    fn write_over(&mut self, st: &mut XState, bytes: &mut ArenaBytes, base: u64) {
        if !self.sort_disjoint() {
            return self.write_to(st, bytes, base);
        }
        *bytes = bytes.written_over(|copy| {
            let mut k = 0;
            while k < self.pieces.len() {
                let out = copy.at(self.pieces[k].addr.wrapping_sub(base) as usize);
                let (len, next) = self.run_to(st, k, out.as_ptr() as usize + out.len());
                match self.source(st, k, len) {
                    Source::Bytes(b) => out.extend_from_slice(b),
                    Source::Init(i, len) => {
                        let at = out.len();
                        out.resize(at + len, 0);
                        init_qword(i, &mut out[at..]);
                    }
                }
                k = next;
            }
        });
    }

    /// Calls `f` with each piece's address and bytes.
    pub fn for_each(&self, st: &XState, mut f: impl FnMut(u64, &[u8])) {
        let mut init = Vec::new();
        for (k, p) in self.pieces.iter().enumerate() {
            match self.source(st, k, p.len) {
                Source::Bytes(b) => f(p.addr, b),
                Source::Init(i, len) => {
                    init.resize(len, 0);
                    init_bytes(i, &mut init);
                    f(p.addr, &init)
                }
            }
        }
    }

    /// Writes the pieces into a zeroed buffer that stands for addresses 0..
    /// (the runner's capture area): an initial configuration, and a component
    /// the state holds in its initial configuration ([`XState::is_dirty`]),
    /// needs only its first qword there.
    pub fn store(&self, st: &XState, area: &mut [u8]) {
        for p in &self.pieces {
            let o = p.addr as usize;
            let dst = &mut area[o..o + p.len];
            match p.src {
                Src::Buf(s) => dst.copy_from_slice(&self.buf[s..s + p.len]),
                Src::Xmm => dst.copy_from_slice(st.xmm.as_flattened()),
                Src::Comp(i) if st.is_dirty(i) => dst.copy_from_slice(st.comp(i)),
                Src::Comp(i) | Src::Init(i) => init_qword(i, dst),
            }
        }
    }
}

/// Makes the writes, every piece already checked: in place, or into a copy
/// when the arena's bytes are shared.
pub(crate) fn write_checked(w: &mut Writes, st: &mut XState, mem: &mut Memory) {
    let base = mem.base;
    match mem.bytes.unshared_mut() {
        Some(out) => w.write_to(st, out, base),
        None => w.write_over(st, &mut mem.bytes, base),
    }
}

/// Component `i`'s initial configuration into `out`: zero but for its first
/// qword (`COMPONENTS[i].init_qword0`).
fn init_bytes(i: usize, out: &mut [u8]) {
    out.fill(0);
    init_qword(i, out);
}

/// The first qword of component `i`'s initial configuration into zeroed `out`.
pub(crate) fn init_qword(i: usize, out: &mut [u8]) {
    let q = crate::component::COMPONENTS
        .get(i)
        .map_or(0, |c| c.init_qword0);
    if q != 0 && out.len() >= 8 {
        out[..8].copy_from_slice(&q.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first write of shared bytes leaves them alone and gives what a write
    /// in place gives: pieces out of address order, adjacent ones, and
    /// overlapping ones (written over a whole copy).
    #[test]
    fn a_write_of_shared_bytes_gives_what_one_in_place_gives() {
        let model = crate::CpuModel::builtin("zen5").expect("built-in");
        let mut st = XState::reset(&model);
        let base = crate::case::ARENA_BASE;
        let cases: [&[(u64, &[u8])]; 2] = [
            &[(6, &[1, 2]), (0, &[3]), (1, &[4, 5]), (4090, &[6, 7, 8])],
            &[(0, &[1, 2, 3, 4]), (2, &[9, 9])],
        ];
        for pieces in cases {
            let writes = || {
                let mut w = Writes::default();
                for &(a, b) in pieces {
                    w.put(base + a, b);
                }
                w
            };
            let mut own = Memory::new(base, 1);
            own.bytes[3] = 0x33;
            let mut shared = Memory {
                bytes: own.bytes.to_vec().into(),
                ..own.clone()
            };
            let case = shared.bytes.clone();
            write_checked(&mut writes(), &mut st, &mut own);
            assert!(own.bytes.unshared_mut().is_some(), "written in place");
            write_checked(&mut writes(), &mut st, &mut shared);
            assert_eq!(shared.bytes, own.bytes, "{pieces:?}");
            assert!(!shared.bytes.shares(&case));
            assert!(case
                .iter()
                .enumerate()
                .all(|(k, &b)| b == (k == 3) as u8 * 0x33));
        }
    }
}
