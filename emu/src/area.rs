//! Memory accesses of an XSAVE area: a save's [`Writes`] are made only after
//! every byte is known to be writable, so a #PF leaves the area as it was (the
//! prediction); the envelope admits any subset of the writes on the pages that
//! allow them (SDM silent on partial saves, reference §5.2 item 9). Reads of an
//! area, and of its header.

use crate::fault::Fault;
use crate::latitude::StateByte;
use crate::machine::{Machine, Policy};
use crate::provenance::{Source, Written};
pub use crate::writes::Writes;
use crate::writes::{write_checked, Src};

impl Writes {
    /// Checks every piece in address order, then writes them all.
    pub fn commit(&mut self, m: &mut Machine) -> Result<(), Fault> {
        self.commit_area(m, None, None)
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
    ///
    /// `rewrites`: the XSTATE_BV bits the save writes (XSAVE, XSAVEOPT: RFBM;
    /// XSAVEC, XSAVES: all; FXSAVE: none), for the latitude of earlier saves.
    pub fn commit_save(
        &mut self,
        m: &mut Machine,
        base: u64,
        rfbm: u64,
        rewrites: u64,
    ) -> Result<(), Fault> {
        let order = m.quirks().pf_last_byte.then_some((base, rfbm));
        let arch = m.policy == Policy::Architectural;
        let pieces: Vec<(u64, u64, Option<StateByte>)> = if arch {
            self.pieces
                .iter()
                .map(|p| (p.addr, p.len as u64, p.state_byte(base)))
                .collect()
        } else {
            Vec::new()
        };
        let r = self.commit_area(m, order, Some(base));
        if arch {
            match r {
                Ok(()) => {
                    let header = base.wrapping_add(512);
                    for &(a, n, _) in &pieces {
                        m.lat.bytes_written(a, n, Some(header));
                    }
                    // A state byte with alternatives, saved: the arena byte
                    // may hold them too.
                    for (a, n, src) in pieces {
                        if let Some((i, j)) = src {
                            m.lat.state_saved(i, j, a, n as u32, |_| true);
                        }
                    }
                    if rewrites != 0 {
                        m.lat.header_rewritten(base.wrapping_add(512), rewrites);
                    }
                    m.lat.commit_pending();
                }
                Err(_) => {
                    let header = base.wrapping_add(512);
                    for &(a, n, _) in &pieces {
                        m.lat.bytes_maybe_written(a, n, Some(header));
                    }
                    let (mem, cpl) = (&m.mem, m.ctl.cpl);
                    let writable = |a: u64| mem.check(a, 1, true, cpl).is_ok();
                    let mut lat = std::mem::take(&mut m.lat);
                    lat.fault_pending(writable);
                    for (a, n, src) in pieces {
                        if let Some((i, j)) = src {
                            lat.state_saved(i, j, a, n as u32, writable);
                        }
                    }
                    m.lat = lat;
                }
            }
        }
        r
    }

    /// Under the architectural policy, notes each piece's range, rule and
    /// source (written, or allowed to be:
    /// [`crate::provenance::Provenance::written`]); `base`: the save area's,
    /// whose legacy-region pieces copy the state at their offsets.
    pub fn note_provenance(&self, m: &mut Machine, base: Option<u64>) {
        if m.policy != Policy::Architectural {
            return;
        }
        for p in &self.pieces {
            if p.len > 0 {
                let source = match (p.src, base) {
                    (Src::Comp(i), _) => Some(Source::Comp(i)),
                    (Src::Buf(_) | Src::Xmm, Some(b))
                        if p.addr.wrapping_sub(b) < 416
                            || (512..520).contains(&p.addr.wrapping_sub(b)) =>
                    {
                        Some(Source::Legacy(p.addr.wrapping_sub(b)))
                    }
                    _ => None,
                };
                m.prov.written.push(Written {
                    first: p.addr,
                    last: p.addr.wrapping_add(p.len as u64 - 1),
                    rule: p.rule,
                    site: m.site,
                    source,
                });
            }
        }
    }

    fn commit_area(
        &mut self,
        m: &mut Machine,
        intel: Option<(u64, u64)>,
        base: Option<u64>,
    ) -> Result<(), Fault> {
        let cpl = m.ctl.cpl;
        self.note_provenance(m, base);
        let mut fault = None;
        // When every byte from the lowest piece's first to the highest one's
        // last can be written, no piece faults, nor a probe in that range.
        let hull = self
            .hull()
            .filter(|&(lo, hi)| m.mem.check(lo, hi - lo, true, cpl).is_ok());
        if let Some((b, rfbm)) = intel {
            fault = [(0u64, 0), (24, 1)]
                .iter()
                .filter(|(_, bit)| rfbm >> bit & 1 != 0)
                .map(|(off, _)| b.wrapping_add(*off))
                .filter(|a| hull.is_none_or(|(lo, hi)| !(lo..hi).contains(a)))
                .find_map(|a| m.mem.check(a, 1, true, cpl).err());
        }
        // The first faulting piece's key, when a piece (not a probe) faults.
        let mut first_key = None;
        if fault.is_none() && hull.is_none() {
            // The first faulting piece in the order (rank, address): the same as
            // sorting the pieces and checking them in turn.
            let rank = |a: u64| {
                intel.map_or(0, |(b, _)| match a.wrapping_sub(b) {
                    0..160 => 0,
                    512..576 => 1,
                    _ => 2,
                })
            };
            let mut first: Option<((u8, u64), Fault)> = None;
            for p in &self.pieces {
                if let Err(f) = m.mem.check(p.addr, p.len as u64, true, cpl) {
                    let key = (rank(p.addr), p.addr);
                    if first.is_none_or(|(k, _)| key < k) {
                        first = Some((key, f));
                    }
                }
            }
            fault = first.map(|(_, f)| f);
            first_key = first.map(|(k, _)| k);
        }
        if let (Some(f), Some(key @ (2, _)), Some((b, _)), Policy::Predict) =
            (fault, first_key, intel, m.policy)
        {
            // Intel (`pf-last-byte`): the probes, the x87 part and the header are
            // checked before anything is written (a fault there writes nothing:
            // native agreement case xsave64_straddles_into_read_only_page); then
            // the writes go out in address order and stop at the faulting byte:
            // every piece before the faulting one is written, and that one up to
            // the fault; the header (XSTATE_BV) only by a save that completes. Intel
            // host: XSAVE64 at arena+80H with page 1 absent and XFD-armed
            // TILEDATA written as init across it: #PF at arena+1000H with MXCSR,
            // AVX, ZMM_Hi256, Hi16_ZMM and TILEDATA's bytes up to FFFH written,
            // the header not (corpus/silicon/xsave-pf-mid-area-writes-before.case). The SDM is
            // silent on partial saves; the envelope admits any subset.
            let rank = |a: u64| match a.wrapping_sub(b) {
                0..160 => 0u8,
                512..576 => 1,
                _ => 2,
            };
            let stop = match f {
                Fault::Pf { addr, .. } => addr,
                _ => key.1,
            };
            let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
            self.for_each(&m.st, |a, bytes| {
                let k = (rank(a), a);
                if k.0 == 1 {
                    // The header is written last: not at all before a fault.
                } else if k < key {
                    out.push((a, bytes.to_vec()));
                } else if k == key {
                    let n = (stop.wrapping_sub(a) as usize).min(bytes.len());
                    out.push((a, bytes[..n].to_vec()));
                }
            });
            for (a, bytes) in out {
                m.mem.put(a, &bytes);
            }
            return Err(f);
        }
        if let Some(f) = fault {
            if m.policy == Policy::Architectural {
                let Machine { st, mem, lat, .. } = m;
                self.for_each(st, |a, b| {
                    for (k, &v) in b.iter().enumerate() {
                        let addr = a.wrapping_add(k as u64);
                        if mem.check(addr, 1, true, cpl).is_ok() {
                            lat.alt(addr, &[v], &crate::latitude::PARTIAL_SAVE);
                        }
                    }
                });
            }
            return Err(f);
        }
        let Machine { st, mem, .. } = &mut *m;
        write_checked(self, st, mem);
        Ok(())
    }
}

impl Writes {
    /// The bytes from the lowest piece's first to the highest piece's last
    /// (checked writable once instead of piece by piece); none when a piece
    /// wraps the address space or there is none.
    fn hull(&self) -> Option<(u64, u64)> {
        let mut lo = u64::MAX;
        let mut hi = 0u64;
        for p in &self.pieces {
            let end = p.addr.checked_add(p.len as u64)?;
            lo = lo.min(p.addr);
            hi = hi.max(end);
        }
        (lo < hi).then_some((lo, hi))
    }
}

/// #PF if any of the `len` bytes at `addr` is not readable.
pub fn check_read(m: &Machine, addr: u64, len: usize) -> Result<(), Fault> {
    m.read_check(addr, len as u64)
}

/// #PF at the first byte that cannot be read of the slots `slots()` of the
/// area at `base`, taken in the order given (a restore's components, ascending): the
/// same fault as [`check_read`] on each slot in turn. When the bytes from the
/// first slot's start to the last one's end can all be read, no slot faults:
/// that hull is checked first, one page walk instead of one per component.
pub fn check_read_slots<I: Iterator<Item = crate::layout::Slot>>(
    m: &Machine,
    base: u64,
    slots: impl Fn() -> I,
) -> Result<(), Fault> {
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    let mut hull = true;
    for s in slots() {
        let a = base.wrapping_add(s.offset as u64);
        match a.checked_add(s.size as u64) {
            Some(end) => {
                lo = lo.min(a);
                hi = hi.max(end);
            }
            None => hull = false,
        }
    }
    if hull && (lo >= hi || m.read_check(lo, hi - lo).is_ok()) {
        return Ok(());
    }
    for s in slots() {
        check_read(m, base.wrapping_add(s.offset as u64), s.size as usize)?;
    }
    Ok(())
}

/// Reads `N` bytes at `addr` into an array (a #PF if any is not readable).
pub fn read_array<const N: usize>(m: &Machine, addr: u64) -> Result<[u8; N], Fault> {
    check_read(m, addr, N)?;
    let mut b = [0u8; N];
    b.copy_from_slice(&m.read_slice(addr, N));
    Ok(b)
}

/// The little-endian dword at `addr`, already checked readable.
pub fn read_u32(m: &Machine, addr: u64) -> u32 {
    let b = m.read_slice(addr, 4);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads `len` bytes at `addr` (a #PF if any byte is not readable).
pub fn read(m: &Machine, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
    m.read_check(addr, len as u64)?;
    Ok(m.read_slice(addr, len).into_owned())
}

/// The XSAVE header at `base + 512`: XSTATE_BV, XCOMP_BV and bytes 16..63.
pub struct Header {
    pub xstate_bv: u64,
    pub xcomp_bv: u64,
    /// Bytes 16..63, as six little-endian qwords.
    pub rest: [u64; 6],
}

/// Reads the header. With the `xrstor-header-xcomp-first` quirk the first access
/// is XCOMP_BV (bytes 8..15): with the header's page unreadable, Intel silicon
/// (xeon-amx-vm) reports CR2 = base + 520, not base + 512 (native agreement case
/// `xrstor_header_page_absent_pf_at_xcomp_bv`). The header is 64-byte aligned, so
/// it never straddles a page and the rest follows. Inlined: a header returned
/// through memory is read back wider than it was written (a store-forwarding
/// stall).
#[inline(always)]
pub fn read_header(m: &Machine, base: u64) -> Result<Header, Fault> {
    if m.quirks().xrstor_header_xcomp_first {
        check_read(m, base.wrapping_add(520), 8)?;
    }
    let at = base.wrapping_add(512);
    check_read(m, at, 64)?;
    let b = m.read_slice(at, 64);
    let q = |k: usize| u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().unwrap());
    Ok(Header {
        xstate_bv: q(0),
        xcomp_bv: q(1),
        rest: [q(2), q(3), q(4), q(5), q(6), q(7)],
    })
}

/// XSTATE_BV of the area at `base` for a save's read-modify-write: 0 when the
/// header cannot be read, in which case the save's commit faults on it (a page
/// that cannot be read cannot be written).
pub fn read_header_qword(m: &Machine, base: u64) -> u64 {
    read_array(m, base.wrapping_add(512)).map_or(0, u64::from_le_bytes)
}
