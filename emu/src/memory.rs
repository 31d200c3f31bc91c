//! The case's memory: an arena of 4 KiB pages at a fixed linear address, each
//! absent, read-only or read-write, so that a fault on a partly mapped area is an
//! ordinary case. Accesses outside the arena fault as absent pages (P = 0; whether
//! the OS maps such a page is not the model's to know, see `foreign_page.rs`).

use crate::arena_bytes::ArenaBytes;
use crate::fault::Fault;

pub const PAGE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prot {
    None,
    Read,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    pub base: u64,
    /// Shared with the case (and the outcome) until written.
    pub bytes: ArenaBytes,
    pub prot: Vec<Prot>,
}

impl Memory {
    /// `pages` read-write zero pages at `base`.
    pub fn new(base: u64, pages: usize) -> Memory {
        Memory {
            base,
            bytes: vec![0; pages * PAGE as usize].into(),
            prot: vec![Prot::ReadWrite; pages],
        }
    }

    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.bytes.len() as u64)
    }

    /// The protection of the page holding `addr` (absent outside the arena).
    pub fn prot_at(&self, addr: u64) -> Prot {
        self.page_prot(addr)
    }

    fn page_prot(&self, addr: u64) -> Prot {
        if addr < self.base || addr >= self.end() {
            return Prot::None;
        }
        let page = ((addr - self.base) / PAGE) as usize;
        // A page counts only when it is wholly backed by `bytes`.
        if (page + 1) * PAGE as usize > self.bytes.len() {
            return Prot::None;
        }
        self.prot.get(page).copied().unwrap_or(Prot::None)
    }

    /// The #PF an access of `len` bytes at `addr` raises at privilege `cpl`, if
    /// any: the first byte (in address order, wrapping at 2^64) on a page that does
    /// not allow it. Error code: P = page present, W = write, U = CPL 3 (SDM Vol.3
    /// §4.7).
    pub fn check(&self, addr: u64, len: u64, write: bool, cpl: u8) -> Result<(), Fault> {
        let mut a = addr;
        let mut remaining = len;
        while remaining > 0 {
            let p = self.page_prot(a);
            let ok = match p {
                Prot::None => false,
                Prot::Read => !write,
                Prot::ReadWrite => true,
            };
            if !ok {
                let err = (p != Prot::None) as u32 | (write as u32) << 1 | ((cpl == 3) as u32) << 2;
                return Err(Fault::Pf { err, addr: a });
            }
            let to_page_end = PAGE - (a % PAGE);
            if remaining <= to_page_end {
                break;
            }
            remaining -= to_page_end;
            a = a.wrapping_add(to_page_end);
        }
        Ok(())
    }

    pub fn read(&self, addr: u64, out: &mut [u8], cpl: u8) -> Result<(), Fault> {
        self.check(addr, out.len() as u64, false, cpl)?;
        let o = (addr - self.base) as usize;
        out.copy_from_slice(&self.bytes[o..o + out.len()]);
        Ok(())
    }

    pub fn write(&mut self, addr: u64, data: &[u8], cpl: u8) -> Result<(), Fault> {
        self.check(addr, data.len() as u64, true, cpl)?;
        let o = (addr - self.base) as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Reads bytes already checked by [`Memory::check`].
    pub fn slice(&self, addr: u64, len: usize) -> &[u8] {
        let o = (addr - self.base) as usize;
        &self.bytes[o..o + len]
    }

    /// Writes bytes already checked by [`Memory::check`].
    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let o = (addr - self.base) as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
    }
}
