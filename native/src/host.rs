//! The CPU this process runs on, as an xsave-emu [`CpuModel`]: CPUID (through
//! raw-cpuid), XGETBV(0), MXCSR_MASK measured with FXSAVE, and the control state
//! the OS runs user code with.
//!
//! What ring 3 cannot read is taken as follows:
//! - IA32_XSS: not readable at CPL 3. `os_xss` is taken from the built-in model whose
//!   CPUID facts match this host (so `zen5` gives 0x1800, `xeon-amx-vm` gives 0); with no
//!   matching built-in model it is 0 (and [`host_model`] says so in the description).
//! - IA32_XFD: Linux arms XFD for every XFD-capable user component the process has no
//!   permission for (`arch_prctl(ARCH_GET_XCOMP_PERM)`); once permitted, the kernel's
//!   #NM handler disarms XFD for the thread on first use, which ring 3 never sees.
//! - Paging mode (CR4.LA57): [`paging_57`] asks the kernel for a mapping at 2^52,
//!   which exists only with 5-level paging; the runner test
//!   `mov_from_address_canonical_only_with_la57` confirms it by touching 2^47 (#GP
//!   with 4-level paging, #PF with 5-level).

use raw_cpuid::native_cpuid::cpuid_count;
use xsave_emu::model::CpuidDump;
use xsave_emu::CpuModel;

/// `arch_prctl` codes (Linux `asm/prctl.h`).
pub const ARCH_GET_XCOMP_PERM: libc::c_int = 0x1022;
pub const ARCH_REQ_XCOMP_PERM: libc::c_int = 0x1023;
/// AMX TILEDATA, the component Linux guards with XFD.
pub const XFEATURE_XTILEDATA: u64 = 18;

/// The raw CPUID leaves a [`CpuModel`] is built from: 0, 1, (7,0), (0DH, 0..=19)
/// 80000001H and 80000008H (when the extended range reaches them).
pub fn cpuid_dump() -> CpuidDump {
    let mut d = CpuidDump::new();
    let mut put = |l: u32, s: u32| {
        let r = cpuid_count(l, s);
        d.insert((l, s), [r.eax, r.ebx, r.ecx, r.edx]);
    };
    let max = cpuid_count(0, 0).eax;
    put(0, 0);
    if max >= 1 {
        put(1, 0);
    }
    if max >= 7 {
        put(7, 0);
    }
    if max >= 0xd {
        for s in 0..=19 {
            put(0xd, s);
        }
    }
    let ext_max = cpuid_count(0x8000_0000, 0).eax;
    if ext_max >= 0x8000_0001 {
        put(0x8000_0001, 0);
    }
    if ext_max >= 0x8000_0008 {
        put(0x8000_0008, 0);
    }
    d
}

/// CPUID.01H:ECX[27]: the OS has set CR4.OSXSAVE, so XGETBV is usable.
pub fn osxsave() -> bool {
    cpuid_count(1, 0).ecx & (1 << 27) != 0
}

/// XGETBV(ECX = `index`); `None` when CR4.OSXSAVE = 0 (XGETBV would be #UD).
/// The caller must know that `index` is valid (0 always, 1 with XGETBV1).
pub fn xgetbv(index: u32) -> Option<u64> {
    if !osxsave() {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CPUID.01H:ECX[27] says CR4.OSXSAVE = 1, so XGETBV is not #UD; it reads
    // only XCR0 or XINUSE into EAX/EDX and touches no memory.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") index, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    Some((hi as u64) << 32 | lo as u64)
}

/// MXCSR_MASK as FXSAVE writes it (bytes 28..31); 0 there means 0000FFBFH (SDM1
/// §11.6.6).
pub fn mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Fx([u8; 512]);
    let mut fx = Fx([0; 512]);
    // SAFETY: FXSAVE64 writes exactly the 512 bytes of `fx`, which is 16-byte aligned
    // as FXSAVE requires; x86-64 always has FXSR.
    unsafe {
        core::arch::asm!("fxsave64 [{}]", in(reg) fx.0.as_mut_ptr(), options(nostack, preserves_flags));
    }
    let m = u32::from_le_bytes(fx.0[28..32].try_into().unwrap());
    if m == 0 {
        0xFFBF
    } else {
        m
    }
}

/// The user components Linux has given this process permission for
/// (`ARCH_GET_XCOMP_PERM`); `None` where the kernel (or an emulator) lacks the call.
pub fn xcomp_perm() -> Option<u64> {
    let mut perm: u64 = 0;
    // SAFETY: ARCH_GET_XCOMP_PERM writes one u64 through the pointer, which points
    // at `perm`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut perm as *mut u64,
        )
    };
    (r == 0).then_some(perm)
}

/// Asks Linux for AMX (TILEDATA) permission for the whole process. Irreversible.
pub fn request_amx_permission() -> Result<(), String> {
    // SAFETY: ARCH_REQ_XCOMP_PERM takes a component number by value; no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA as libc::c_ulong,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "arch_prctl(ARCH_REQ_XCOMP_PERM, 18): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// The components XFD keeps armed for this thread as Linux runs it: the
/// XFD-capable components enabled in XCR0 that the process has no permission for.
pub fn linux_xfd(model: &CpuModel, xcr0: u64) -> u64 {
    if !model.xfd {
        return 0;
    }
    let capable = (0..=xsave_emu::component::MAX_COMPONENT)
        .filter(|&i| model.component(i).is_some_and(|c| c.xfd))
        .fold(0u64, |m, i| m | 1 << i)
        & xcr0;
    let perm = xcomp_perm().unwrap_or(0);
    capable & !perm
}

/// Whether the kernel runs 5-level paging (CR4.LA57): a fixed mapping at 2^52
/// (canonical only with 57-bit addresses) can be made only then.
pub fn paging_57() -> bool {
    let addr = 1u64 << 52;
    // SAFETY: an anonymous PROT_NONE mapping at an address nothing else uses
    // (MAP_FIXED_NOREPLACE never replaces a mapping); unmapped right away.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: unmaps the page just mapped, which nothing refers to.
    unsafe { libc::munmap(p, 4096) };
    p as u64 == addr
}

/// Builds the host model. Its name is the matching built-in model's when
/// `differences()` with it is empty, `host` otherwise.
pub fn host_model() -> Result<CpuModel, String> {
    let dump = cpuid_dump();
    let mut m = CpuModel::from_cpuid("host", &dump);
    if !m.fxsr {
        return Err("CPUID.01H:EDX[24] (FXSR) is 0".into());
    }
    m.mxcsr_mask = mxcsr_mask();
    m.os_xcr0 = if m.xsave { xgetbv(0).unwrap_or(0) } else { 0 };
    m.os_xfd = linux_xfd(&m, m.os_xcr0);
    m.os_la57 = m.la57 && paging_57();
    // IA32_XSS cannot be read at CPL 3: take it from the matching built-in model.
    m.os_xss = 0;
    let matching = CpuModel::builtin_all().into_iter().find(|b| {
        let mut probe = m.clone();
        probe.os_xss = b.os_xss;
        probe.differences(b).is_empty()
    });
    match matching {
        Some(b) => {
            m.os_xss = b.os_xss;
            m.name = b.name.clone();
            m.description = format!(
                "{} (read from CPUID on this host; IA32_XSS {:#x} taken from the built-in model)",
                b.description, b.os_xss
            );
            m.quirks = b.quirks;
        }
        None => {
            m.description =
                "read from CPUID on this host; no built-in model matches; IA32_XSS unknown in ring 3, taken as 0"
                    .into();
        }
    }
    Ok(m)
}
