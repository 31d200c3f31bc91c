//! Memory accesses of an XSAVE area: a save collects its writes and commits them
//! only after every byte is known to be writable, so a #PF leaves the area as it
//! was (the prediction); the envelope admits any subset of the writes on the
//! pages that allow them (SDM silent on partial saves, reference §5.2 item 9).

use crate::exec::{Machine, Policy};
use crate::fault::Fault;

#[derive(Debug, Default)]
pub struct Writes {
    pub pieces: Vec<(u64, Vec<u8>)>,
}

impl Writes {
    pub fn put(&mut self, addr: u64, bytes: &[u8]) {
        self.pieces.push((addr, bytes.to_vec()));
    }
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }

    /// Checks every piece in address order, then writes them all.
    pub fn commit(self, m: &mut Machine) -> Result<(), Fault> {
        self.commit_area(m, None)
    }

    /// [`Writes::commit`] for a save to the area at `base`. Under the
    /// `pf-last-byte` quirk (Intel) the pieces are checked in the order the silicon
    /// faults in: byte 0 if RFBM[0] = 1 and byte 24 (MXCSR) if RFBM[1] = 1, written
    /// or not; the x87 part and MXCSR (bytes 0..159); the header; the rest in
    /// address order (Intel host, `xsdiff run --amx`: x87 and header on a
    /// read-only page fault at base + 0, also for an XSAVEOPT that does not write
    /// x87 (init optimization), at base + 24 for an XSAVEC with RFBM = SSE|TILEDATA
    /// and SSE in init, at base + 512 for an XSAVEC with RFBM = TILEDATA; x87 on a
    /// writable page and the header on a read-only one fault at base + 512
    /// although XMM bytes 256..415 are on the read-only page as well).
    pub fn commit_save(self, m: &mut Machine, base: u64, rfbm: u64) -> Result<(), Fault> {
        let order = m.quirks().pf_last_byte.then_some((base, rfbm));
        self.commit_area(m, order)
    }

    fn commit_area(mut self, m: &mut Machine, intel: Option<(u64, u64)>) -> Result<(), Fault> {
        let intel_base = intel.map(|(b, _)| b);
        let probes: Vec<u64> = intel.map_or(Vec::new(), |(b, rfbm)| {
            [(0u64, 0), (24, 1)]
                .iter()
                .filter(|(_, bit)| rfbm >> bit & 1 != 0)
                .map(|(off, _)| b.wrapping_add(*off))
                .collect()
        });
        self.pieces.sort_by_key(|p| {
            let rank = intel_base.map_or(0, |b| match p.0.wrapping_sub(b) {
                0..160 => 0,
                512..576 => 1,
                _ => 2,
            });
            (rank, p.0)
        });
        let cpl = m.ctl.cpl;
        let first = probes
            .iter()
            .find_map(|&a| m.mem.check(a, 1, true, cpl).err());
        let fault = first.or_else(|| {
            self.pieces
                .iter()
                .find_map(|(a, b)| m.mem.check(*a, b.len() as u64, true, cpl).err())
        });
        if let Some(f) = fault {
            if m.policy == Policy::Architectural {
                for (a, b) in &self.pieces {
                    for (k, &v) in b.iter().enumerate() {
                        let addr = a.wrapping_add(k as u64);
                        if m.mem.check(addr, 1, true, cpl).is_ok() {
                            m.lat.alt(addr, &[v]);
                        }
                    }
                }
            }
            return Err(f);
        }
        for (a, b) in &self.pieces {
            m.mem.put(*a, b);
        }
        Ok(())
    }
}

/// Reads `len` bytes at `addr` (a #PF if any byte is not readable).
pub fn read(m: &Machine, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
    m.mem.check(addr, len as u64, false, m.ctl.cpl)?;
    Ok(m.mem.slice(addr, len).to_vec())
}

/// The XSAVE header at `base + 512`: XSTATE_BV, XCOMP_BV and bytes 16..63.
pub struct Header {
    pub xstate_bv: u64,
    pub xcomp_bv: u64,
    pub bytes: Vec<u8>,
}

/// Reads the header. With the `xrstor-header-xcomp-first` quirk the first access
/// is XCOMP_BV (bytes 8..15): with the header's page unreadable, Intel silicon
/// (xeon-amx-vm) reports CR2 = base + 520, not base + 512 (native agreement case
/// `xrstor_header_page_absent_pf_at_xcomp_bv`). The header is 64-byte aligned, so
/// it never straddles a page and the rest follows.
pub fn read_header(m: &Machine, base: u64) -> Result<Header, Fault> {
    if m.quirks().xrstor_header_xcomp_first {
        read(m, base.wrapping_add(520), 8)?;
    }
    let b = read(m, base.wrapping_add(512), 64)?;
    Ok(Header {
        xstate_bv: u64::from_le_bytes(b[0..8].try_into().unwrap()),
        xcomp_bv: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        bytes: b,
    })
}

/// XSTATE_BV of the area at `base` for a save's read-modify-write: 0 when the
/// header cannot be read, in which case the save's commit faults on it (a page
/// that cannot be read cannot be written).
pub fn read_header_qword(m: &Machine, base: u64) -> u64 {
    read(m, base.wrapping_add(512), 8)
        .ok()
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
