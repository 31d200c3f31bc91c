//! Whether a linear address is mapped in this process. A ring-3 case runs inside
//! the runner's process: outside the case's arena and code page the model sees
//! absent pages (a #PF), but the process maps more (the runner's initial image at
//! `INIT_BASE`, its stub, data page and XSAVE areas, the heap, stacks, libraries).
//! A case whose access reaches one of those is not comparable: silicon reads or
//! writes the runner's own memory. The probe costs a system call, so it is made
//! only for a predicted #PF outside the arena (before the run,
//! [`predicted_access_mapped`]) and after a disagreement.

/// Whether the page holding `addr` is mapped in this process, by any mapping.
/// `madvise(MADV_NORMAL)` fails with ENOMEM exactly when part of the range is
/// not mapped; any other answer means a mapping is there.
pub fn is_mapped(addr: u64) -> bool {
    let page = addr & !0xFFF;
    if page >= 1 << 47 {
        // The kernel half (and non-canonical addresses) is never mapped for
        // ring 3 by a user mapping; madvise would report EINVAL or ENOMEM.
        return false;
    }
    // SAFETY: MADV_NORMAL only resets the advice of whatever mapping is there; it
    // neither changes nor frees memory, and an unmapped range is an error, not UB.
    let r = unsafe { libc::madvise(page as *mut libc::c_void, 4096, libc::MADV_NORMAL) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOMEM)
}

/// The address of the predicted outcome's #PF when it lies on a page this
/// process maps outside the runner's arena reservation (whose pages past the
/// case's arena the runner keeps PROT_NONE, absent as in the model): the model,
/// which maps only the arena, stops there; silicon would go on with the
/// runner's own memory.
pub fn predicted_access_mapped(
    case: &xsave_emu::Case,
    predicted: &xsave_emu::Outcome,
) -> Option<u64> {
    use xsave_emu::case::{ARENA_BASE, MAX_ARENA_PAGES};
    let reserved = ARENA_BASE..ARENA_BASE + MAX_ARENA_PAGES as u64 * crate::stub::PAGE;
    match predicted.fault {
        Some(xsave_emu::FaultAt {
            fault: xsave_emu::Fault::Pf { addr, .. },
            ..
        }) if case.memory.base == ARENA_BASE && !reserved.contains(&addr) && is_mapped(addr) => {
            Some(addr)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_and_heap_are_mapped_and_a_far_page_is_not() {
        let local = 0u64;
        let heap = Box::new(0u64);
        assert!(is_mapped(&local as *const u64 as u64));
        assert!(is_mapped(&*heap as *const u64 as u64));
        // 0x7000_0000_0000 - 4 KiB: far from where Linux puts anything by default.
        assert!(!is_mapped(0x6fff_ffff_f000));
        assert!(!is_mapped(0xffff_ffff_0000_0000));
    }
}
