//! The libFuzzer form of a case: [`FuzzCase`] implements `arbitrary::Arbitrary`
//! over a simple byte layout, and [`FuzzCase::to_bytes`] writes that layout
//! back, so a fuzzer input converts to a case file and a case file to a fuzzer
//! input. The CPU model and control state come from the target that runs it.
//!
//! Layout (integers little-endian): `n_init:u8 n_arena:u8 pages:u8 code_len:u8
//! gpr_mask:u16`, then `pages` protection bytes (0 rw, 1 r, 2 none), `n_init`
//! writes `offset:u16 len:u8 bytes` into the initial image, `n_arena` writes
//! into the arena, `code_len` code bytes, and one `u64` per set bit of
//! `gpr_mask`. Missing input bytes read as zero.

use arbitrary::{Arbitrary, Unstructured};
use xsave_emu::case::{ARENA_BASE, MAX_ARENA_PAGES};
use xsave_emu::memory::PAGE;
use xsave_emu::{Case, Control, CpuModel, Memory, Prot};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FuzzCase {
    pub prots: Vec<u8>,
    pub init_writes: Vec<(u16, Vec<u8>)>,
    pub arena_writes: Vec<(u16, Vec<u8>)>,
    pub code: Vec<u8>,
    pub gprs: Vec<(u8, u64)>,
}

fn take<const N: usize>(u: &mut Unstructured) -> arbitrary::Result<[u8; N]> {
    let mut b = [0u8; N];
    u.fill_buffer(&mut b)?;
    Ok(b)
}

fn writes(u: &mut Unstructured, n: u8) -> arbitrary::Result<Vec<(u16, Vec<u8>)>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let off = u16::from_le_bytes(take::<2>(u)?);
        let len = take::<1>(u)?[0] as usize;
        let mut b = vec![0u8; len];
        u.fill_buffer(&mut b)?;
        v.push((off, b));
    }
    Ok(v)
}

impl<'a> Arbitrary<'a> for FuzzCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let [n_init, n_arena, pages, code_len] = take::<4>(u)?;
        let gpr_mask = u16::from_le_bytes(take::<2>(u)?);
        let pages = 1 + pages as usize % MAX_ARENA_PAGES;
        let mut prots = vec![0u8; pages];
        u.fill_buffer(&mut prots)?;
        prots.iter_mut().for_each(|p| *p %= 3);
        let init_writes = writes(u, n_init)?;
        let arena_writes = writes(u, n_arena)?;
        let mut code = vec![0u8; code_len as usize];
        u.fill_buffer(&mut code)?;
        let mut gprs = Vec::new();
        for r in 0..16u8 {
            if gpr_mask >> r & 1 == 1 {
                gprs.push((r, u64::from_le_bytes(take::<8>(u)?)));
            }
        }
        Ok(FuzzCase {
            prots,
            init_writes,
            arena_writes,
            code,
            gprs,
        })
    }
}

/// Runs of bytes where `a` differs from `b`, at most 255 bytes each.
fn runs(a: &[u8], b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < a.len() {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < a.len() && a[i] != b[i] && i - s < 255 {
            i += 1;
        }
        v.push((s as u16, a[s..i].to_vec()));
    }
    v
}

impl FuzzCase {
    /// Parses fuzzer bytes.
    pub fn from_bytes(data: &[u8]) -> FuzzCase {
        let mut u = Unstructured::new(data);
        FuzzCase::arbitrary(&mut u).expect("fill_buffer never fails")
    }

    /// The bytes that [`FuzzCase::from_bytes`] reads back as `self`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![
            self.init_writes.len() as u8,
            self.arena_writes.len() as u8,
            (self.prots.len().max(1) - 1) as u8,
            self.code.len() as u8,
        ];
        let mask = self.gprs.iter().fold(0u16, |m, (r, _)| m | 1 << r);
        b.extend_from_slice(&mask.to_le_bytes());
        b.extend_from_slice(&self.prots);
        for (o, w) in self.init_writes.iter().chain(&self.arena_writes) {
            b.extend_from_slice(&o.to_le_bytes());
            b.push(w.len() as u8);
            b.extend_from_slice(w);
        }
        b.extend_from_slice(&self.code);
        for (_, v) in &self.gprs {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// The case under `control` on `model`: writes that fall outside the image
    /// or the arena are cut.
    pub fn to_case(&self, model: &CpuModel, control: Control) -> Case {
        let mut c = Case::new(model, control);
        let pages = self.prots.len().clamp(1, MAX_ARENA_PAGES);
        c.memory = Memory::new(ARENA_BASE, pages);
        for (k, p) in self.prots.iter().take(pages).enumerate() {
            c.memory.prot[k] = match p % 3 {
                0 => Prot::ReadWrite,
                1 => Prot::Read,
                _ => Prot::None,
            };
        }
        let put = |dst: &mut [u8], o: u16, w: &[u8]| {
            let o = o as usize;
            if o < dst.len() {
                let n = w.len().min(dst.len() - o);
                dst[o..o + n].copy_from_slice(&w[..n]);
            }
        };
        for (o, w) in &self.init_writes {
            put(&mut c.init, *o, w);
        }
        for (o, w) in &self.arena_writes {
            put(&mut c.memory.bytes, *o, w);
        }
        c.code = self.code.clone();
        for &(r, v) in &self.gprs {
            c.gprs[r as usize & 15] = v;
        }
        c
    }

    /// The fuzzer form of `case` (whose image has the default size for its
    /// control). At most 255 writes of each kind and 255 code bytes are kept.
    pub fn from_case(model: &CpuModel, case: &Case) -> FuzzCase {
        let base = Case::new(model, case.control);
        let mut init = case.init.clone();
        init.resize(base.init.len(), 0);
        let zero = vec![0u8; case.memory.bytes.len()];
        let prots = case
            .memory
            .prot
            .iter()
            .map(|p| match p {
                Prot::ReadWrite => 0,
                Prot::Read => 1,
                Prot::None => 2,
            })
            .collect();
        let mut f = FuzzCase {
            prots,
            init_writes: runs(&init, &base.init),
            arena_writes: runs(&case.memory.bytes, &zero),
            code: case.code.iter().copied().take(255).collect(),
            gprs: (0..16u8)
                .filter(|&r| case.gprs[r as usize] != 0)
                .map(|r| (r, case.gprs[r as usize]))
                .collect(),
        };
        f.init_writes.truncate(255);
        f.arena_writes.truncate(255);
        let _ = PAGE;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cases_survive_the_fuzzer_form() {
        let m = CpuModel::builtin("zen5").unwrap();
        let t = crate::generate::Target {
            control: Control::user(&m),
            model: m.clone(),
        };
        for i in 0..200 {
            let c = crate::generate::generate(&t, 9, i);
            let f = FuzzCase::from_case(&m, &c);
            let back = FuzzCase::from_bytes(&f.to_bytes());
            assert_eq!(back, f, "case {i}");
            if f.init_writes.len() < 255 && f.arena_writes.len() < 255 {
                assert_eq!(back.to_case(&m, c.control), c, "case {i}");
            }
        }
    }
}
