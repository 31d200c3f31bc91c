//! The ring-3 runner: runs one [`Case`] on this CPU with the stub of
//! [`crate::stub`] and returns the same [`Outcome`] the emulator predicts.
//!
//! # Memory
//! Fixed mappings, made once per process with `MAP_FIXED_NOREPLACE` and reused.
//! The case's arena at `ARENA_BASE` and its initial image at `INIT_BASE` are views
//! of one memfd file, each with the protection the case sees: each arena page the
//! case's [`Prot`], the initial image readable for its length (absent after). The
//! runner writes and reads both through a second, read-write view of the same
//! file (the alias), so it never changes a protection to fill or read a page: a
//! run calls `mprotect` only for the arena pages whose protection differs from
//! the previous run's (none when two cases have the same pattern), and no case
//! can write its initial image. Each page of a view is a mapping of its own, of
//! a file page not adjacent to its neighbours' ([`file_page`]), so the kernel
//! never merges two of them into one mapping: an `mprotect` then changes the
//! pages' protection without splitting a mapping first and merging it back
//! after (about 0.6 us for one page instead of 1.6 us on the Intel host). What a run leaves behind is tracked
//! ([`Residue`]), so the next run zeroes only the bytes that may be nonzero (the
//! previous initial image's tail, the previous capture) instead of whole pages.
//! The code page at `CODE_BASE` is an ordinary private mapping, readable, writable
//! and executable, written (and zeroed whole) at its own address each run: a
//! user-mode emulator running the harness (qemu-user, valgrind) notices a store
//! to the code it translated only at that address, not through an alias. The
//! runner's private region (stub, data page, host and final XSAVE areas) is an
//! ordinary mapping too. Runs are serialised by a process-wide lock, so any
//! number of [`Runner`]s may exist.
//!
//! # Runs
//! A [`Batch`] holds the run lock and the thread's case signal setup (the
//! alternate signal stack, every signal but the case's faults blocked; see
//! [`CaseSignals`]) for any number of runs, so neither costs a system call per
//! case; [`Runner::run`] and [`Runner::run_expecting`] make a batch of one.
//!
//! # Confirmation
//! [`Batch::run`] (and [`Runner::run`]) is careful: a context switch during a run
//! (RUSAGE_THREAD nvcsw + nivcsw changed) makes it run the case again, up to
//! [`Runner::max_tries`] times; and an outcome counts only when the next clean
//! run gives the same one ([`Runner::confirm`]): rarely (about 2 in 10^4 runs on
//! the Intel host) XINUSE[1] turns from 0 to 1 during a run with no context
//! switch counted.
//!
//! [`Batch::run_expecting`] (and [`Batch::check_expecting`], which is given the
//! prediction itself and compares the observation with it where it lies,
//! without copying it out) is fast where an outcome was predicted: it runs the
//! case once, without counting context switches, and the outcome stands if the
//! caller's `accept` (its comparison with the prediction) takes it; otherwise it
//! runs the careful path from scratch and returns that confirmed outcome, so a
//! disagreement is always reported with a confirmed observation. Why one run
//! suffices when it agrees: the noise confirmation filters (a context switch, the
//! asynchronous save and restore of the thread's FPU state behind the XINUSE[1]
//! flips) moves an outcome away from what the CPU's XSAVE logic gives; a noisy
//! run is accepted only if it equals the prediction anyway. The residual risk:
//! a model wrong in exactly the direction of the noise (say it predicts
//! XINUSE[1] = 1 where the silicon gives 0) is missed on a case whose one run
//! was hit by the noise, about 2 in 10^4; every other case of that class still
//! shows the difference, confirmed.

use crate::host;
use crate::phase::{self, Phase};
use crate::signal::{self, CaseSignals, FaultRecord};
use crate::stub::{self, Stub, DATA_PAGE, PAGE, PRIV_BASE};
use crate::Refusal;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, OnceLock};
use xsave_emu::case::{ARENA_BASE, CODE_BASE, INIT_BASE, MAX_ARENA_PAGES, MAX_CODE};
use xsave_emu::{layout, Case, Control, CpuModel, Fault, FaultAt, Mode, Outcome, Prot, Xfeatures};

/// Offsets of the two case views in the alias.
const ARENA_OFF: usize = 0;
const INIT_OFF: usize = ARENA_OFF + MAX_ARENA_PAGES * PAGE as usize;

/// The memfd page behind page `k` of the alias (arena pages first, then
/// `init_pages` pages of the initial image), and so behind the same page of the
/// case's views: each part in reverse order, so that two neighbouring pages of
/// a view are never neighbours in the file. The kernel merges neighbouring
/// mappings of one file only where their file offsets follow on; these never
/// do, so each page stays a mapping of its own whatever the protections.
fn file_page(k: usize, init_pages: usize) -> usize {
    if k < MAX_ARENA_PAGES {
        MAX_ARENA_PAGES - 1 - k
    } else {
        MAX_ARENA_PAGES + init_pages - 1 - (k - MAX_ARENA_PAGES)
    }
}

/// The process-wide mappings and the assembled stub.
struct Region {
    stub: Stub,
    /// Pages at INIT_BASE.
    init_pages: usize,
    /// Bytes of the host and final areas an XSAVE may write.
    std_size: usize,
    /// The runner's read-write view of the arena and the initial image.
    alias: u64,
}

/// What earlier runs left in the mappings (guarded by [`RUN_LOCK`]).
struct Residue {
    /// The protection of each arena page in the case's view now.
    arena: [Prot; MAX_ARENA_PAGES],
    /// Readable pages at INIT_BASE in the case's view now (the rest absent).
    init_readable: usize,
    /// Bytes from the start of the initial image and of the final area that may
    /// be nonzero (everything after them is zero; the memfd and the private region
    /// start zeroed).
    init_dirty: usize,
    final_dirty: usize,
    /// Bytes from `CODE_BASE` that may be nonzero.
    code_dirty: usize,
}

static REGION: OnceLock<Result<Region, String>> = OnceLock::new();
static RUN_LOCK: Mutex<Residue> = Mutex::new(Residue {
    arena: [Prot::None; MAX_ARENA_PAGES],
    init_readable: 0,
    init_dirty: 0,
    final_dirty: 0,
    code_dirty: 0,
});

thread_local! {
    /// The thread's last trap may have been a #UD (trap_nr = 6): take a #BP first.
    static NEEDS_PRIME: Cell<bool> = const { Cell::new(true) };
    /// With AMX permission: this thread has not yet had its first TILEDATA use.
    static NEEDS_AMX_FIRST_USE: Cell<bool> = const { Cell::new(true) };
}

/// Maps `len` bytes at `addr` exactly: anonymous (`fd` None) or `fd` from `off`,
/// shared.
fn map_fixed(
    addr: u64,
    len: usize,
    prot: libc::c_int,
    fd: Option<(libc::c_int, usize)>,
) -> Result<(), String> {
    let (flags, fd, off) = match fd {
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
        Some((fd, off)) => (libc::MAP_SHARED, fd, off as libc::off_t),
    };
    // SAFETY: a mapping at an address nothing else uses (NOREPLACE refuses to
    // replace an existing mapping); no Rust object refers to it yet.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            prot,
            flags | libc::MAP_FIXED_NOREPLACE,
            fd,
            off,
        )
    };
    if p as u64 == addr {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if p != libc::MAP_FAILED {
        // A kernel (or emulator) that ignores MAP_FIXED_NOREPLACE took it as a hint.
        // SAFETY: unmaps the mapping just made, which nothing refers to.
        unsafe { libc::munmap(p, len) };
        return Err(format!(
            "mmap at {addr:#x}: placed at {:#x} instead",
            p as u64
        ));
    }
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Err(format!("mmap at {addr:#x}: address already mapped"));
    }
    // Without MAP_FIXED_NOREPLACE support: ask for the address as a hint.
    // SAFETY: as above, without the fixed flag the kernel never replaces a mapping.
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len, prot, flags, fd, off) };
    if p as u64 == addr {
        return Ok(());
    }
    if p != libc::MAP_FAILED {
        // SAFETY: unmaps the mapping just made.
        unsafe { libc::munmap(p, len) };
    }
    Err(format!("mmap at {addr:#x}: {err}"))
}

/// A memfd of `pages` pages and a read-write view of all of it where the kernel
/// chooses, page `k` of the view on file page [`file_page`]`(k, init_pages)`:
/// (fd, address of the view).
fn memfd_with_alias(pages: usize, init_pages: usize) -> Result<(libc::c_int, u64), String> {
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let len = pages * PAGE as usize;
    // SAFETY: the name is a NUL-terminated C string; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"xsave-runner".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os("memfd_create"));
    }
    // SAFETY: `fd` is the memfd just created.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(os("ftruncate of the runner's memfd"));
    }
    // The view's address range, reserved where the kernel picks.
    // SAFETY: a new anonymous mapping; nothing refers to it yet.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os("mmap of the runner's alias"));
    }
    for k in 0..pages {
        let at = base as u64 + (k * PAGE as usize) as u64;
        let off = (file_page(k, init_pages) * PAGE as usize) as libc::off_t;
        // SAFETY: replaces one page of the reservation just made (MAP_FIXED over
        // our own PROT_NONE mapping, which nothing refers to) with a page of the
        // memfd.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                off,
            )
        };
        if p as u64 != at {
            return Err(os("mmap of a page of the runner's alias"));
        }
    }
    Ok((fd, base as u64))
}

fn protect(addr: u64, len: usize, prot: libc::c_int) {
    // SAFETY: `addr..addr+len` lies inside one of the runner's own fixed mappings,
    // which no Rust reference points into.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    assert_eq!(
        r,
        0,
        "mprotect({addr:#x}, {len}): {}",
        std::io::Error::last_os_error()
    );
}

fn poke(addr: u64, bytes: &[u8]) {
    // SAFETY: callers write inside the runner's own writable mappings (the alias,
    // the private region); the ranges never overlap `bytes`, which is ordinary
    // heap memory.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
}

fn fill_zero(addr: u64, len: usize) {
    // SAFETY: as in `poke`.
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, len) }
}

/// A copy of `len` bytes at `addr` (one allocation).
fn peek(addr: u64, len: usize) -> Vec<u8> {
    // SAFETY: callers read inside the runner's own readable mappings (the alias,
    // the private region), which nothing writes while the run lock is held.
    unsafe { view(addr, len) }.to_vec()
}

/// The `len` bytes at `addr`, borrowed.
///
/// # Safety
/// `addr..addr + len` must be readable memory of the runner's own mappings that
/// nothing writes while the slice lives (callers hold the run lock and drop the
/// slice before the next run).
unsafe fn view<'a>(addr: u64, len: usize) -> &'a [u8] {
    // SAFETY: the caller's promise above.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}

fn put_u64(off: u64, v: u64) {
    // SAFETY: the data page is mapped read-write for the process's lifetime and
    // `off` is one of the `stub::data` offsets inside it.
    unsafe { std::ptr::write_volatile((DATA_PAGE + off) as *mut u64, v) }
}

/// `v` at `off` onwards in the data page, as one copy.
fn put_u64s(off: u64, v: &[u64]) {
    // SAFETY: as in `put_u64`, for the `stub::data` blocks of 16 qwords (the
    // GPRs in and out), which end inside the data page.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), (DATA_PAGE + off) as *mut u64, v.len()) }
}

fn get_u64(off: u64) -> u64 {
    // SAFETY: as in `put_u64`.
    unsafe { std::ptr::read_volatile((DATA_PAGE + off) as *const u64) }
}

fn round_pages(n: usize) -> usize {
    n.div_ceil(PAGE as usize) * PAGE as usize
}

fn region(model: &CpuModel) -> Result<&'static Region, String> {
    REGION
        .get_or_init(|| {
            let std_size = host_area_size(model);
            let area_bytes = round_pages(std_size);
            let init_pages = area_bytes / PAGE as usize + 1;
            let host_area = PRIV_BASE + 2 * PAGE;
            let final_area = host_area + area_bytes as u64;
            let stub = stub::assemble(
                host_area,
                final_area,
                stub::HostSave::best(model),
                model.xgetbv1,
            )?;
            if stub.bytes.len() > PAGE as usize {
                return Err(format!("stub of {} bytes", stub.bytes.len()));
            }
            let (fd, alias) = memfd_with_alias(MAX_ARENA_PAGES + init_pages, init_pages)?;
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            let views = (|| {
                for k in 0..MAX_ARENA_PAGES + init_pages {
                    let at = if k < MAX_ARENA_PAGES {
                        ARENA_BASE + k as u64 * PAGE
                    } else {
                        INIT_BASE + (k - MAX_ARENA_PAGES) as u64 * PAGE
                    };
                    let file = file_page(k, init_pages) * PAGE as usize;
                    map_fixed(at, PAGE as usize, rw, Some((fd, file)))?;
                }
                Ok::<(), String>(())
            })();
            // SAFETY: the mappings keep the file alive; the descriptor is ours.
            unsafe { libc::close(fd) };
            views?;
            // Each page of the case's views gets its page-table entry now, through
            // that view: a write to a page the case may only read must find a
            // present entry (#PF error code P = 1, as on the private pages the
            // runner used to fill through the case's own addresses), not a
            // shared-file page no access has mapped yet (P = 0). `mprotect`
            // keeps the entries.
            for base in [ARENA_BASE, INIT_BASE] {
                let pages = if base == ARENA_BASE {
                    MAX_ARENA_PAGES
                } else {
                    init_pages
                };
                for k in 0..pages as u64 {
                    // SAFETY: a page of the view just mapped read-write, which no
                    // Rust reference points into; it holds zeros either way.
                    unsafe { std::ptr::write_volatile((base + k * PAGE) as *mut u8, 0) };
                }
            }
            protect(ARENA_BASE, MAX_ARENA_PAGES * PAGE as usize, libc::PROT_NONE);
            protect(INIT_BASE, init_pages * PAGE as usize, libc::PROT_NONE);
            map_fixed(
                CODE_BASE,
                PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                None,
            )?;
            let priv_len = 2 * PAGE as usize + 2 * area_bytes;
            map_fixed(
                PRIV_BASE,
                priv_len,
                libc::PROT_READ | libc::PROT_WRITE,
                None,
            )?;
            poke(PRIV_BASE, &stub.bytes);
            poke(stub::RESET_IMAGE + 24, &0x1F80u32.to_le_bytes());
            protect(PRIV_BASE, PAGE as usize, libc::PROT_READ | libc::PROT_EXEC);
            signal::install(stub.init_xrstor, stub.recovery, stub.prime_resume)?;
            Ok(Region {
                stub,
                init_pages,
                std_size,
                alias,
            })
        })
        .as_ref()
        .map_err(|e| e.clone())
}

/// Outcomes are buffers of 10 to 30 KiB, made and dropped at a high rate (a
/// campaign keeps a batch of them, some MiB, then drops them all). With glibc's
/// default trim threshold (128 KiB) every dropped batch gives a thread arena's
/// top back to the kernel (madvise, with TLB shootdown IPIs to the other CPUs)
/// and the next batch faults it in again: a quarter of an `xsdiff run emu,native`
/// profile on the Intel host. Once per process, the threshold is raised to
/// 256 MiB (freed memory up to that stays with the process).
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes a glibc allocator parameter.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        });
    }
}

/// The XSAVE area size for the host's XCR0: CPUID.(0DH,0):EBX, and at least the
/// standard layout's size (what the capture reads back).
fn host_area_size(model: &CpuModel) -> usize {
    let ebx = raw_cpuid::native_cpuid::cpuid_count(0xd, 0).ebx as usize;
    let lay = layout::standard(model, Xfeatures::from_bits_retain(model.os_xcr0)).size as usize;
    ebx.max(lay).max(576)
}

/// Runs cases on this CPU in ring 3.
pub struct Runner {
    model: CpuModel,
    /// XFD is disarmed for this process (AMX permission granted).
    amx_permitted: bool,
    /// Bytes of the capture: the standard format's size for the host's XCR0 (the
    /// only XCR0 cases run with here).
    final_size: usize,
    /// Each XCR0 component's index and where its bytes end in the capture.
    final_ends: Vec<(usize, usize)>,
    /// [`supervisor_init`] for the host's IA32_XSS (the only IA32_XSS cases run
    /// with here): every outcome's supervisor state.
    supervisor: Vec<u8>,
    /// How many times a case is run when each run sees a context switch.
    pub max_tries: u32,
    /// A context switch makes a run unclean (default). Off in the harness
    /// under a user-mode emulator (`xsave-harness --emulated`): the FPU state
    /// the case sees is the emulator's, which the host kernel's switches do not
    /// touch, and under Valgrind on a loaded machine every run of a case was
    /// switched away from (`context switch on every try`).
    pub switches_matter: bool,
    /// Total reruns caused by context switches (for reporting).
    pub reruns: u64,
    /// Run each case until two consecutive clean runs give the same outcome
    /// (default on). Rarely (about 2 in 10^4 runs on the Intel host) XINUSE[1]
    /// turns from 0 to 1 during a run with no context switch counted: an
    /// asynchronous kernel or hypervisor save and restore of the thread's FPU
    /// state. Confirming makes such a run a rerun instead of an outcome.
    pub confirm: bool,
    /// Runs discarded because the next clean run disagreed with them.
    pub unsteady: u64,
    /// Runs of the stub (every try, fast or careful).
    pub runs: u64,
    /// Fast runs ([`Batch::run_expecting`]) not accepted, so run carefully.
    pub rejected: u64,
}

impl Runner {
    pub fn new() -> Result<Runner, String> {
        let model = host::host_model()?;
        if !model.xsave || !host::osxsave() {
            return Err("no XSAVE (CPUID.01H:ECX[26] or OSXSAVE is 0)".into());
        }
        region(&model)?;
        keep_freed_memory();
        let perm = host::xcomp_perm().unwrap_or(0);
        let amx_permitted = model.xfd && perm & (1 << host::XFEATURE_XTILEDATA) != 0;
        let final_layout = layout::standard(&model, Xfeatures::from_bits_retain(model.os_xcr0));
        let final_size = final_layout.size as usize;
        let final_ends = final_layout
            .slots
            .iter()
            .map(|s| (s.index, (s.offset + s.size) as usize))
            .collect();
        let supervisor = supervisor_init(&model, Control::user(&model).xss);
        Ok(Runner {
            model,
            amx_permitted,
            final_size,
            final_ends,
            supervisor,
            max_tries: 20,
            switches_matter: true,
            reruns: 0,
            confirm: true,
            unsteady: 0,
            runs: 0,
            rejected: 0,
        })
    }

    pub fn model(&self) -> &CpuModel {
        &self.model
    }

    /// The control state cases run with here: Linux user mode on this CPU.
    pub fn control(&self) -> Control {
        Control::user(&self.model)
    }

    fn refuse_control(&self, c: &Control) -> Result<(), Refusal> {
        let h = self.control();
        let r = |s: &str| Err(Refusal::new(s));
        if c.cpl == 0 {
            return r("needs CPL 0");
        }
        if c.cpl != h.cpl {
            return r("CPL differs from the host's");
        }
        if c.mode != Mode::Long64 {
            return r("mode differs from the host's");
        }
        if c.xcr0 != h.xcr0 {
            return r("XCR0 differs from the host's");
        }
        if c.xss != h.xss {
            return r("IA32_XSS differs from the host's");
        }
        if c.xfd != h.xfd {
            return r("IA32_XFD differs from the host's");
        }
        if c.cr0_ts != h.cr0_ts {
            return r("needs CR0.TS = 1");
        }
        if c.cr0_em != h.cr0_em {
            return r("needs CR0.EM = 1");
        }
        if c.cr0_am != h.cr0_am {
            return r("needs CR0.AM = 0");
        }
        if c.cr4_osxsave != h.cr4_osxsave {
            return r("needs CR4.OSXSAVE = 0");
        }
        if c.cr4_osfxsr != h.cr4_osfxsr {
            return r("needs CR4.OSFXSR = 0");
        }
        if c.vmx_nonroot != h.vmx_nonroot {
            return r("VMX mode differs from the host's");
        }
        Ok(())
    }

    /// Why this runner will not run `case`, if it will not.
    pub fn refusal(&self, case: &Case) -> Result<(), Refusal> {
        self.refuse_control(&case.control)?;
        let reg = region(&self.model).map_err(|e| Refusal::new(&format!("runner: {e}")))?;
        if case.code.len() > MAX_CODE {
            return Err(Refusal::new("code longer than MAX_CODE"));
        }
        if let Some(why) = code_refusal(&case.code, self.model.decoder_options()) {
            return Err(Refusal::new(&why));
        }
        if case.memory.base != ARENA_BASE {
            return Err(Refusal::new("arena not at ARENA_BASE"));
        }
        let pages = case.memory.prot.len();
        if pages > MAX_ARENA_PAGES || case.memory.bytes.len() != pages * PAGE as usize {
            return Err(Refusal::new("arena larger than MAX_ARENA_PAGES"));
        }
        if case.init.len() < 576 || case.init.len() > reg.init_pages * PAGE as usize {
            return Err(Refusal::new("initial image size out of range"));
        }
        let armed = case.control.xfd_armed();
        if case.init_xstate_bv() & armed != 0 {
            return Err(Refusal::new("needs AMX permission"));
        }
        Ok(())
    }

    /// [`Runner::refusal`], then refuses a case whose predicted first access
    /// outside its arena (given, or predicted here on the runner's model; a case
    /// the model declines is run) is a page this process maps (see
    /// [`crate::mapped`]): what every path asks before it runs a case.
    fn admit(&self, case: &Case, predicted: Option<&Outcome>) -> Result<(), Refusal> {
        self.refusal(case)?;
        let own;
        let p = match predicted {
            Some(p) => p,
            None => match xsave_emu::predict(&self.model, case) {
                Ok(p) => {
                    own = p;
                    &own
                }
                Err(_) => return Ok(()),
            },
        };
        match crate::mapped::predicted_access_mapped(case, p) {
            Some(a) => Err(Refusal::new(&format!(
                "the case's first access outside its arena ({a:#x}, a #PF in the prediction) is memory this process maps: silicon would read or write the runner's own memory"
            ))),
            None => Ok(()),
        }
    }

    /// Starts a batch of runs: takes the run lock and enters the case signal
    /// setup until the batch is dropped (see the module's documentation).
    /// Meanwhile other threads' runs wait, and this thread's asynchronous signals
    /// stay pending. The run lock is not reentrant: while a batch is alive, this
    /// thread must not start another one (with any runner).
    pub fn batch(&mut self) -> Result<Batch<'_>, Refusal> {
        let reg = region(&self.model).map_err(|e| Refusal::new(&format!("runner: {e}")))?;
        let res = RUN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let signals = CaseSignals::enter().map_err(|e| Refusal::new(&format!("runner: {e}")))?;
        let mut b = Batch {
            runner: self,
            reg,
            res,
            _signals: signals,
        };
        if b.runner.amx_permitted && NEEDS_AMX_FIRST_USE.with(|c| c.get()) {
            b.runner.amx_first_use(reg, &mut b.res)?;
        }
        Ok(b)
    }

    /// Runs `case` carefully (a batch of one, see [`Batch::run`]).
    pub fn run(&mut self, case: &Case) -> Result<Outcome, Refusal> {
        self.admit(case, None)?;
        self.batch()?.careful(case)
    }

    /// Runs `case` once and keeps the outcome if `accept` takes it, else
    /// carefully (a batch of one, see [`Batch::run_expecting`]).
    pub fn run_expecting(
        &mut self,
        case: &Case,
        accept: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Outcome, Refusal> {
        self.admit(case, None)?;
        self.batch()?.expecting(case, accept)
    }

    /// With AMX permission, the kernel disarms XFD for a thread at its first
    /// TILEDATA use (inside its #NM handler, which also saves and reloads the
    /// thread's state): make that happen here, not inside a case.
    fn amx_first_use(&self, reg: &Region, res: &mut Residue) -> Result<(), Refusal> {
        let mut c = Case::new(&self.model, self.control());
        c.set_init_xstate_bv(1 << host::XFEATURE_XTILEDATA);
        let (_, rec) = run_once(reg, res, &c, None, false, None)?;
        if let Some(r) = rec {
            return Err(Refusal::new(&format!(
                "runner: first AMX use faulted (signal {}, trapno {})",
                r.signo, r.trapno
            )));
        }
        NEEDS_AMX_FIRST_USE.with(|c| c.set(false));
        Ok(())
    }

    /// The bytes from the start of `case`'s initial image that its initial
    /// XRSTOR64 (RFBM = XCR0) loads: the legacy region and header (576 bytes;
    /// MXCSR is loaded whatever XSTATE_BV says), and each component of
    /// XSTATE_BV AND XCR0 (a component whose XSTATE_BV bit is 0 is put in its
    /// init configuration, not read), at its offset in the image's format
    /// (compacted when XCOMP_BV[63] = 1, laid out by XCOMP_BV): up to the end of
    /// the last such component. Which bytes it may probe for a #PF depends on
    /// the pages' protection only, which every run sets.
    fn init_loaded(&self, case: &Case) -> usize {
        let qword = |at: usize| {
            case.init
                .get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let loaded = Xfeatures::from_bits_retain(qword(512) & case.control.xcr0);
        let xcomp_bv = qword(520);
        let end = if xcomp_bv >> 63 == 1 {
            let format = Xfeatures::from_bits_retain(xcomp_bv & !(1 << 63));
            layout::compacted_end(&self.model, format, loaded)
        } else {
            layout::standard_end(&self.model, loaded)
        };
        end as usize
    }

    /// The fault and the GPRs the last run left (its fault record `rec`): the
    /// small fields of its outcome.
    fn observed_head(
        &self,
        reg: &Region,
        case: &Case,
        rec: Option<FaultRecord>,
    ) -> Result<(Option<FaultAt>, [u64; 16]), Refusal> {
        let mut gprs = [0u64; 16];
        for (k, g) in gprs.iter_mut().enumerate() {
            *g = get_u64(stub::data::GPRS_OUT + 8 * k as u64);
        }
        let fault = match rec {
            None => None,
            Some(r) => {
                let fault = decode_fault(&r, case.control.xfd_armed())?;
                if fault == Fault::Ud {
                    NEEDS_PRIME.with(|c| c.set(true));
                }
                let insn = if r.rip == reg.stub.init_xrstor {
                    gprs = case.gprs;
                    None
                } else {
                    let at = r.rip.wrapping_sub(CODE_BASE) as usize;
                    Some(
                        insn_index(&case.code, self.model.decoder_options(), at).ok_or_else(
                            || Refusal::new("fault at no instruction boundary of the case"),
                        )?,
                    )
                };
                Some(FaultAt { fault, insn })
            }
        };
        Ok((fault, gprs))
    }

    /// Where the bytes that may be nonzero end in a capture equal to
    /// `final_image`: the legacy region and header (576 bytes), then each
    /// component whose XSTATE_BV bit is 1. A component whose bit is 0 was in
    /// its init configuration, all zeros for every component from 2 on (SDM
    /// Vol. 1 13.6), and XSAVE over the zeroed area either left its bytes or
    /// wrote those zeros; the bytes between components are never written.
    /// (Only an emulator writing the very bytes a CPU wrote where both should
    /// have written zeros would leave other bytes after an equal run.)
    fn final_extent(&self, final_image: &[u8]) -> usize {
        final_extent(&self.final_ends, self.final_size, final_image)
    }

    /// XGETBV(1) as the last run left it.
    fn observed_xinuse(&self) -> Option<u64> {
        self.model.xgetbv1.then(|| get_u64(stub::data::XINUSE))
    }

    /// The outcome the last run left (its fault record `rec`).
    fn outcome(
        &self,
        reg: &Region,
        case: &Case,
        rec: Option<FaultRecord>,
    ) -> Result<Outcome, Refusal> {
        let (fault, gprs) = self.observed_head(reg, case, rec)?;
        Ok(Outcome {
            fault,
            final_image: peek(reg.stub.final_area, self.final_size),
            xinuse: self.observed_xinuse(),
            gprs,
            // Only read-write pages can have changed; the alias holds every
            // page's bytes as the run left them.
            memory: peek(reg.alias + ARENA_OFF as u64, case.memory.bytes.len()).into(),
            supervisor: self.supervisor.clone(),
        })
    }

    /// Whether the outcome the last run left (its fault record `rec`) equals
    /// `expected` in every field, judged where the observation lies (the data
    /// page, the final area, the arena through the alias) without copying it:
    /// exactly `self.outcome(reg, case, rec) == Ok(expected)`.
    fn observed_equals(
        &self,
        reg: &Region,
        case: &Case,
        rec: Option<FaultRecord>,
        expected: &Outcome,
    ) -> bool {
        let Ok((fault, gprs)) = self.observed_head(reg, case, rec) else {
            return false;
        };
        fault == expected.fault
            && gprs == expected.gprs
            && self.observed_xinuse() == expected.xinuse
            && expected.supervisor == self.supervisor
            // SAFETY (both views): the final area and the alias are the runner's
            // own mappings, readable for these lengths (the final area is
            // `final_size` <= `std_size` bytes, the arena view holds the case's
            // pages, checked in `refusal`); nothing writes them while the run
            // lock is held and the slices live only for this comparison.
            && expected.final_image.as_slice()
                == unsafe { view(reg.stub.final_area, self.final_size) }
            && expected.memory.as_slice()
                == unsafe { view(reg.alias + ARENA_OFF as u64, case.memory.bytes.len()) }
    }
}

/// Runs holding the run lock and the case signal setup (from [`Runner::batch`]).
pub struct Batch<'r> {
    runner: &'r mut Runner,
    reg: &'static Region,
    res: MutexGuard<'static, Residue>,
    _signals: CaseSignals,
}

impl Batch<'_> {
    /// The runner the batch runs with (its counters and settings).
    pub fn runner(&self) -> &Runner {
        self.runner
    }

    /// An order in which to run `cases` (indices into it) that changes few page
    /// protections: cases with the same [`protection_key`] together, first those
    /// whose key the mappings have now (no mprotect before the first), last the
    /// key most of them have (the one the next batch most likely starts with),
    /// the others in between in key order. Each change of key costs an
    /// mprotect per run of pages that changes (about 2 us each in this guest,
    /// the kernel's TLB flush included). Outcomes do not depend on the order.
    pub fn protection_order(&self, cases: &[&Case]) -> Vec<usize> {
        let now = key_of(self.res.init_readable, &self.res.arena);
        let keys: Vec<_> = cases.iter().map(|c| protection_key(c)).collect();
        order_from(&now, &keys)
    }

    /// Runs `case` (again while each run sees a context switch) until two
    /// consecutive clean runs agree ([`Runner::confirm`]) and returns that
    /// outcome, or why it was not run.
    pub fn run(&mut self, case: &Case) -> Result<Outcome, Refusal> {
        self.runner.admit(case, None)?;
        self.careful(case)
    }

    fn careful(&mut self, case: &Case) -> Result<Outcome, Refusal> {
        let mut last: Option<Outcome> = None;
        let mut clean_runs = 0;
        for _ in 0..self.runner.max_tries {
            self.runner.runs += 1;
            let (clean, rec) = run_once(self.reg, &mut self.res, case, None, true, None)?;
            if !clean && self.runner.switches_matter {
                self.runner.reruns += 1;
                continue;
            }
            clean_runs += 1;
            let o = self.runner.outcome(self.reg, case, rec)?;
            if !self.runner.confirm || last.as_ref() == Some(&o) {
                return Ok(o);
            }
            if last.is_some() {
                self.runner.unsteady += 1;
            }
            last = Some(o);
        }
        Err(Refusal::new(if clean_runs == 0 {
            "context switch on every try"
        } else {
            "no two runs agree"
        }))
    }

    /// Runs `case` once; if `accept` takes the outcome (the caller compares it
    /// with its prediction), that is the outcome. Otherwise (or if the run gives
    /// no outcome) the careful path of [`Batch::run`] runs the case from scratch
    /// and its confirmed outcome is returned, whatever `accept` says of it. See
    /// the module's documentation for why one agreeing run suffices.
    pub fn run_expecting(
        &mut self,
        case: &Case,
        accept: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Outcome, Refusal> {
        self.runner.admit(case, None)?;
        self.expecting(case, accept)
    }

    fn expecting(
        &mut self,
        case: &Case,
        accept: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Outcome, Refusal> {
        self.runner.runs += 1;
        let (_, rec) = run_once(self.reg, &mut self.res, case, None, false, None)?;
        if let Ok(o) = self.runner.outcome(self.reg, case, rec) {
            if accept(&o) {
                return Ok(o);
            }
        }
        self.runner.rejected += 1;
        self.careful(case)
    }

    /// [`Batch::run_expecting`] against a prediction given as an outcome: runs
    /// `case` once and first compares the observation with `predicted` where it
    /// lies, field by field, copying nothing; equal in every field is
    /// [`Check::Same`]. Otherwise the outcome is built and `accept` (the caller's
    /// comparison, which may allow noise) decides as in `run_expecting`:
    /// [`Check::Accepted`] with that one run's outcome, or [`Check::Confirmed`]
    /// with the careful path's. So the answer is always what `run_expecting(case,
    /// |o| o == predicted || accept(o))` gives, without building the outcome
    /// when it equals the prediction.
    pub fn check_expecting(
        &mut self,
        case: &Case,
        predicted: &Outcome,
        accept: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Check, Refusal> {
        let mut clock = phase::Clock::start();
        self.runner.admit(case, Some(predicted))?;
        clock.lap(Phase::Admit);
        self.runner.runs += 1;
        // A predicted #UD or XFD #NM (a SIGILL) while the thread's trap number
        // may be 6: the prime now (a #BP) costs less than the second run of the
        // case run_once would make after an ambiguous SIGILL (a #UD costs some
        // 10 us here: the hypervisor intercepts it). Outcome-neutral: the prime
        // only sets the thread's trap number.
        if NEEDS_PRIME.with(|c| c.get())
            && case.control.xfd_armed() != 0
            && matches!(
                predicted.fault,
                Some(FaultAt {
                    fault: Fault::Ud | Fault::Nm,
                    ..
                })
            )
        {
            prime(self.reg);
        }
        let fast = Fast {
            init: self.runner.init_loaded(case),
        };
        let (_, rec) = run_once(self.reg, &mut self.res, case, None, false, Some(fast))?;
        let mut clock = phase::Clock::start();
        let same = self.runner.observed_equals(self.reg, case, rec, predicted);
        clock.lap(Phase::Compare);
        if same {
            // The case wrote nothing outside its arena that the prediction
            // does not show: its code page holds its code and the jump back;
            // the final area holds the predicted image.
            self.res.code_dirty = case.code.len() + stub::JMP_BACK_LEN;
            self.res.final_dirty = self.runner.final_extent(&predicted.final_image);
            return Ok(Check::Same);
        }
        if let Ok(o) = self.runner.outcome(self.reg, case, rec) {
            if accept(&o) {
                return Ok(Check::Accepted(o));
            }
        }
        self.runner.rejected += 1;
        self.careful(case).map(Check::Confirmed)
    }
}

/// What [`Batch::check_expecting`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The one run's outcome equals the prediction in every field (not copied:
    /// the prediction is the outcome).
    Same,
    /// The one run's outcome differs from the prediction and the caller's
    /// comparison accepted it (noise its model allows).
    Accepted(Outcome),
    /// The one run's outcome was not accepted: the careful path's confirmed
    /// outcome (whatever the comparison says of it).
    Confirmed(Outcome),
}

impl Check {
    /// The outcome observed, given the prediction it was checked against.
    pub fn outcome(self, predicted: &Outcome) -> Outcome {
        match self {
            Check::Same => predicted.clone(),
            Check::Accepted(o) | Check::Confirmed(o) => o,
        }
    }
}

/// A check of the stub's promise to give the host its state back: an XSAVE64
/// of the host state right before and right after the stub, with a chosen host
/// state loaded first, all in one asm block (no compiler code in between).
pub struct HostRoundtrip {
    /// The host state to load before the stub (standard format, XCR0's size).
    pub pattern: AlignedArea,
    pub before: AlignedArea,
    pub after: AlignedArea,
    original: AlignedArea,
}

/// A 64-byte aligned, zeroed XSAVE area.
pub struct AlignedArea {
    buf: Vec<u8>,
    off: usize,
    pub len: usize,
}

impl AlignedArea {
    pub fn new(len: usize) -> AlignedArea {
        let buf = vec![0u8; len + 64];
        let off = buf.as_ptr().align_offset(64);
        AlignedArea { buf, off, len }
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
    fn ptr(&mut self) -> *mut u8 {
        self.bytes_mut().as_mut_ptr()
    }
}

impl HostRoundtrip {
    /// `pattern`: a standard-format image of the host's XSAVE size (its header
    /// must be valid for XRSTOR).
    pub fn new(pattern: &[u8]) -> HostRoundtrip {
        let len = pattern.len();
        let mut p = AlignedArea::new(len);
        p.bytes_mut().copy_from_slice(pattern);
        HostRoundtrip {
            pattern: p,
            before: AlignedArea::new(len),
            after: AlignedArea::new(len),
            original: AlignedArea::new(len),
        }
    }

    fn call(&mut self, entry: u64) {
        let (o, p, b, a) = (
            self.original.ptr(),
            self.pattern.ptr(),
            self.before.ptr(),
            self.after.ptr(),
        );
        // The areas sit in callee-saved registers (the stub keeps them), never in
        // RAX/RDX, which the block overwrites with the instruction mask.
        // SAFETY: the four areas are 64-byte aligned and of the host's XSAVE size;
        // the pattern's header is valid (its XRSTOR cannot fault); the stub is a
        // sysv64 function without arguments (clobber_abi covers what it may
        // change); the original state is restored before the block ends.
        unsafe {
            core::arch::asm!(
                "mov eax, -1", "mov edx, -1", "xsave64 [r12]",
                "xrstor64 [r13]",
                "xsave64 [r14]",
                "call rsi",
                "mov eax, -1", "mov edx, -1", "xsave64 [r15]",
                "xrstor64 [r12]",
                in("r12") o, in("r13") p, in("r14") b, in("r15") a,
                in("rsi") entry,
                clobber_abi("sysv64"),
            );
        }
    }
}

impl Runner {
    /// Runs `case` once inside [`HostRoundtrip`]'s asm block (see there).
    pub fn run_host_roundtrip(
        &mut self,
        case: &Case,
        rt: &mut HostRoundtrip,
    ) -> Result<Option<Fault>, Refusal> {
        self.refusal(case)?;
        let reg = region(&self.model).map_err(|e| Refusal::new(&format!("runner: {e}")))?;
        let mut res = RUN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _signals = CaseSignals::enter().map_err(|e| Refusal::new(&format!("runner: {e}")))?;
        let (_, rec) = run_once(reg, &mut res, case, Some(rt), false, None)?;
        let f = rec
            .map(|r| decode_fault(&r, case.control.xfd_armed()))
            .transpose()?;
        if f == Some(Fault::Ud) {
            NEEDS_PRIME.with(|c| c.set(true));
        }
        Ok(f)
    }

    /// The XSAVE area size of this host (for [`HostRoundtrip`] patterns).
    pub fn host_area_size(&self) -> usize {
        host_area_size(&self.model)
    }
}

/// [`Outcome::supervisor`] in ring 3: the supervisor components (IA32_XSS) cannot
/// be read at CPL 3, and nothing a ring-3 case runs (XRSTOR and XSAVE* touch only
/// user components; XRSTORS is #GP) can change them, so the runner reports the
/// state the emulator starts from: each enabled supervisor component in its init
/// configuration, ascending, concatenated.
pub fn supervisor_init(model: &CpuModel, xss: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for i in Xfeatures::from_bits_retain(xss).indices() {
        if let Some(c) = model.component(i).filter(|c| c.supervisor) {
            let mut b = vec![0u8; c.size as usize];
            let q = xsave_emu::component::COMPONENTS[i]
                .init_qword0
                .to_le_bytes();
            if b.len() >= 8 {
                b[..8].copy_from_slice(&q);
            }
            v.extend_from_slice(&b);
        }
    }
    v
}

/// Why the runner will not run the code, if it will not (one decoding pass, as
/// every case is asked): the last instruction is cut short (hardware would
/// fetch past it: [`insn_offsets`] is `None`), or the code may leave its own
/// instruction sequence: a branch, call, return, XBEGIN or SYSENTER (whose
/// return goes to the vDSO). The stub
/// runs the case's bytes in this process and takes back only faults of the
/// case's own instructions; a jump past them runs whatever follows on the code
/// page, with the runner's state at the case's mercy (diff_native: `jrcxz`
/// after an FLDCW that read the code page killed the fuzzer with SIGSEGV).
/// INT3, INT1 and INT n fault inside the case; SYSCALL and INT 80H return to
/// the next instruction (a case may call the kernel on purpose: the runner's
/// context-switch test sleeps).
fn code_refusal(code: &[u8], options: u32) -> Option<String> {
    use iced_x86::{Code, FlowControl};
    let mut d = iced_x86::Decoder::with_ip(64, code, CODE_BASE, options);
    let mut ins = iced_x86::Instruction::default();
    while d.can_decode() {
        d.decode_out(&mut ins);
        if d.last_error() == iced_x86::DecoderError::NoMoreBytes {
            return Some("code does not decode into whole instructions".into());
        }
        let ok = match ins.flow_control() {
            FlowControl::Next | FlowControl::Exception => true,
            // iced files SYSCALL under calls.
            _ => matches!(
                ins.code(),
                Code::Int3 | Code::Int1 | Code::Int_imm8 | Code::Syscall
            ),
        };
        if !ok {
            // The mnemonic only: a campaign's summary groups skips by reason.
            return Some(
                format!(
                    "code transfers control ({:?}): the runner runs straight-line code only",
                    ins.mnemonic()
                )
                .to_lowercase(),
            );
        }
    }
    None
}

/// The start offsets of the case's instructions; `None` when the bytes do not
/// decode into whole instructions (the last one is cut short). An invalid
/// encoding (LOCK on XSAVE, say) is a whole instruction: the CPU raises #UD there,
/// as the emulator does.
/// `options`: the CPU's decoder ([`xsave_emu::CpuModel::decoder_options`]).
pub fn insn_offsets(code: &[u8], options: u32) -> Option<Vec<usize>> {
    let mut d = iced_x86::Decoder::with_ip(64, code, CODE_BASE, options);
    let mut v = Vec::new();
    while d.can_decode() {
        let pos = d.position();
        let _ = d.decode();
        if d.last_error() == iced_x86::DecoderError::NoMoreBytes {
            return None;
        }
        v.push(pos);
    }
    Some(v)
}

/// The index of the case's instruction that starts at offset `at` of its code,
/// if one does: the position of `at` in [`insn_offsets`], found without
/// collecting them (every faulting run asks).
pub fn insn_index(code: &[u8], options: u32, at: usize) -> Option<usize> {
    let mut d = iced_x86::Decoder::with_ip(64, code, CODE_BASE, options);
    let mut ins = iced_x86::Instruction::default();
    let mut k = 0;
    while d.can_decode() && d.position() <= at {
        if d.position() == at {
            return Some(k);
        }
        d.decode_out(&mut ins);
        if d.last_error() == iced_x86::DecoderError::NoMoreBytes {
            return None;
        }
        k += 1;
    }
    None
}

/// The fault a signal record stands for. On Linux the ucontext's trapno and err
/// say it (except for XFD's #NM, see [`crate::signal`]). User-mode emulators
/// (qemu-user, valgrind) leave trapno unset (-1 or 0), so then the signal and its
/// si_code say it, as Linux itself assigns them: SIGSEGV/SI_KERNEL is #GP(0),
/// SIGSEGV/SEGV_MAPERR or SEGV_ACCERR is #PF, SIGBUS/BUS_ADRALN is #AC,
/// SIGBUS/SI_KERNEL is #SS. Where nothing is XFD-armed, SIGILL is always #UD.
pub fn decode_fault(r: &FaultRecord, xfd_armed: u64) -> Result<Fault, Refusal> {
    let other = || {
        Err(Refusal::new(&format!(
            "fault outside the model (signal {}, si_code {:#x}, trapno {}, err {:#x}, addr {:#x})",
            r.signo, r.si_code, r.trapno as i64, r.err, r.addr
        )))
    };
    const SEGV_MAPERR: i32 = 1;
    const SEGV_ACCERR: i32 = 2;
    const BUS_ADRALN: i32 = 1;
    let pf = || {
        // The error code as the kernel reports it; an emulator may leave it 0, then
        // P comes from si_code, U is 1 (CPL 3) and W is not known (0).
        let err = if r.err & 4 != 0 {
            r.err as u32
        } else {
            (r.si_code == SEGV_ACCERR) as u32 | 4
        };
        Ok(Fault::Pf { err, addr: r.addr })
    };
    match r.signo {
        libc::SIGSEGV => match (r.trapno, r.si_code) {
            (14, _) => pf(),
            (13, _) => Ok(Fault::Gp(r.err as u32)),
            (12, _) => Ok(Fault::Ss),
            (_, libc::SI_KERNEL) => Ok(Fault::Gp(0)),
            (_, SEGV_MAPERR | SEGV_ACCERR) => pf(),
            _ => other(),
        },
        libc::SIGBUS => match (r.trapno, r.si_code) {
            (17, _) => Ok(Fault::Ac),
            (12, _) => Ok(Fault::Ss),
            (_, BUS_ADRALN) => Ok(Fault::Ac),
            (_, libc::SI_KERNEL) => Ok(Fault::Ss),
            _ => other(),
        },
        // trap_nr is 6 only after a real #UD: the runner never starts a case with 6.
        libc::SIGILL => Ok(if xfd_armed == 0 || r.trapno == 6 {
            Fault::Ud
        } else {
            Fault::Nm
        }),
        _ => other(),
    }
}

fn prot_bits(p: Prot) -> libc::c_int {
    match p {
        Prot::None => libc::PROT_NONE,
        Prot::Read => libc::PROT_READ,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    }
}

fn switches() -> i64 {
    // SAFETY: a zeroed rusage is a valid out-parameter for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to write.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw + ru.ru_nivcsw
}

/// Takes a #BP so that the thread's trap_nr is 3, not 6 (inside the case
/// signal setup, like every run).
fn prime(reg: &Region) {
    signal::PRIMING.store(true, Ordering::SeqCst);
    // SAFETY: `prime` is the stub's `int3; ret`, a complete function in an executable
    // page; its SIGTRAP is returned from by the handler (PRIMING is set).
    let f: extern "sysv64" fn() = unsafe { std::mem::transmute(reg.stub.prime as usize) };
    f();
    signal::PRIMING.store(false, Ordering::SeqCst);
    NEEDS_PRIME.with(|c| c.set(false));
}

/// A key that orders cases so that a batch changes few protections: the pages
/// of the initial image, then each arena page's protection (absent pages as
/// `Prot::None`, which is how the runner maps them). Consecutive cases with the
/// same key need no `mprotect` at all; each change costs one (about 1.6 us on
/// the Intel host, a TLB flush included).
pub fn protection_key(case: &Case) -> [u8; MAX_ARENA_PAGES + 1] {
    key_of(
        round_pages(case.init.len()) / PAGE as usize,
        &case.memory.prot,
    )
}

/// The [`protection_key`] of `init_pages` readable pages of initial image and
/// arena pages with `arena` (absent after them).
fn key_of(init_pages: usize, arena: &[Prot]) -> [u8; MAX_ARENA_PAGES + 1] {
    let mut key = [0u8; MAX_ARENA_PAGES + 1];
    key[0] = init_pages.min(u8::MAX as usize) as u8;
    for (k, p) in arena.iter().take(MAX_ARENA_PAGES).enumerate() {
        key[1 + k] = prot_rank(*p);
    }
    key
}

/// [`Runner::final_extent`] for a capture of `size` bytes whose components end
/// at `ends` (index, end).
fn final_extent(ends: &[(usize, usize)], size: usize, final_image: &[u8]) -> usize {
    let bv = final_image.get(512..520).map_or(u64::MAX, |b| {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    });
    ends.iter()
        .filter(|&&(i, _)| bv >> i & 1 == 1)
        .map(|&(_, end)| end)
        .fold(576, usize::max)
        .min(size)
}

/// [`Batch::protection_order`] of cases with `keys` when the mappings have
/// `now`.
fn order_from<K: Ord + Copy>(now: &K, keys: &[K]) -> Vec<usize> {
    let mut by_key: Vec<usize> = (0..keys.len()).collect();
    by_key.sort_by_key(|&k| keys[k]);
    // The most common key (the first of equals in key order).
    let mut common = None;
    let mut best = 0;
    for run in by_key.chunk_by(|&a, &b| keys[a] == keys[b]) {
        if run.len() > best {
            best = run.len();
            common = Some(keys[run[0]]);
        }
    }
    let place = |k: usize| match keys[k] {
        key if key == *now => 0,
        key if Some(key) == common => 2,
        _ => 1,
    };
    by_key.sort_by_key(|&k| place(k));
    by_key
}

/// A page's protection in a [`protection_key`].
fn prot_rank(p: Prot) -> u8 {
    match p {
        Prot::None => 0,
        Prot::Read => 1,
        Prot::ReadWrite => 2,
    }
}

/// Gives the arena pages `first..first + n` the protection `p` in the case's view.
fn protect_arena(res: &mut Residue, first: usize, n: usize, p: Prot) {
    if n == 0 {
        return;
    }
    protect(
        ARENA_BASE + first as u64 * PAGE,
        n * PAGE as usize,
        prot_bits(p),
    );
    res.arena[first..first + n].fill(p);
}

/// Makes the case's view of the arena have `want` (absent after it), with one
/// mprotect per run of consecutive pages whose protection must change to the
/// same value, and none where it is already right.
fn set_arena_prot(res: &mut Residue, want: &[Prot]) {
    let target = |k: usize| want.get(k).copied().unwrap_or(Prot::None);
    let mut k = 0;
    while k < MAX_ARENA_PAGES {
        let p = target(k);
        if res.arena[k] == p {
            k += 1;
            continue;
        }
        let mut n = 1;
        while k + n < MAX_ARENA_PAGES && target(k + n) == p && res.arena[k + n] != p {
            n += 1;
        }
        protect_arena(res, k, n, p);
        k += n;
    }
}

/// One run, inside the case signal setup ([`CaseSignals`]) with the run lock
/// held: prepares every mapping from the case, runs the stub, and says whether
/// no context switch happened (always true unless `count_switches`); the fault
/// record if it faulted.
///
/// A SIGILL with trapno 6 while the thread's last trap may have been a #UD
/// (the case may then be a real #UD or XFD's #NM with a stale trap number, see
/// [`crate::signal`]) makes it take a #BP (the prime) and run the case again;
/// so the prime is paid only by such cases, not by every case after a #UD.
fn run_once(
    reg: &Region,
    res: &mut Residue,
    case: &Case,
    mut roundtrip: Option<&mut HostRoundtrip>,
    count_switches: bool,
    fast: Option<Fast>,
) -> Result<(bool, Option<FaultRecord>), Refusal> {
    let stale_possible = NEEDS_PRIME.with(|c| c.get());
    let first = run_prepared(
        reg,
        res,
        case,
        roundtrip.as_deref_mut(),
        count_switches,
        fast,
    )?;
    match first.1 {
        Some(r)
            if stale_possible
                && r.signo == libc::SIGILL
                && r.trapno == 6
                && case.control.xfd_armed() != 0 =>
        {
            prime(reg);
            run_prepared(reg, res, case, roundtrip, count_switches, fast)
        }
        _ => Ok(first),
    }
}

/// What a fast run ([`Batch::check_expecting`]) may leave as an earlier run
/// left it. Its case was admitted with its prediction ([`Runner::admit`]): the
/// model maps neither the code page nor the initial image, so a predicted
/// access to either is a #PF there, which `admit` refuses (the pages are
/// mapped in this process). So a case whose prediction is right reads neither
/// (its code is fetched, not read); one whose prediction is wrong may, and its
/// disagreement is confirmed by the careful path, whose runs write every byte
/// (`None`).
#[derive(Debug, Clone, Copy)]
struct Fast {
    /// Bytes from the start of the initial image the initial XRSTOR loads
    /// ([`Runner::init_loaded`]): the image there, zeros past its end; bytes
    /// after it may be an earlier image's.
    init: usize,
}

/// [`run_once`] without the prime.
fn run_prepared(
    reg: &Region,
    res: &mut Residue,
    case: &Case,
    roundtrip: Option<&mut HostRoundtrip>,
    count_switches: bool,
    fast: Option<Fast>,
) -> Result<(bool, Option<FaultRecord>), Refusal> {
    // Code, then `jmp after_code`, on a zeroed page: zeroed whole (the case may
    // have written its code page), or in a fast run where the last case's
    // code was (`Residue::code_dirty`) past the bytes written here (a store to
    // a line of code just run costs the CPU a self-modifying-code clear: each
    // byte is written once).
    let mut clock = phase::Clock::start();
    let jmp = stub::jmp_back(case.code.len(), reg.stub.after_code)
        .map_err(|e| Refusal::new(&format!("runner: {e}")))?;
    let code_len = case.code.len() + jmp.len();
    if fast.is_none() {
        fill_zero(CODE_BASE, PAGE as usize);
        res.code_dirty = 0;
    }
    // The code, the jump and zeros up to where the last code ended, as one
    // write (MAX_CODE bounds the code; `refusal` checked it).
    let mut page_start = [0u8; MAX_CODE + stub::JMP_BACK_LEN];
    let n = code_len.max(res.code_dirty.min(page_start.len()));
    page_start[..case.code.len()].copy_from_slice(&case.code);
    page_start[case.code.len()..code_len].copy_from_slice(&jmp);
    if res.code_dirty > page_start.len() {
        fill_zero(
            CODE_BASE + page_start.len() as u64,
            res.code_dirty - page_start.len(),
        );
    }
    poke(CODE_BASE, &page_start[..n]);
    // Until a check finds the run equal to its prediction.
    res.code_dirty = PAGE as usize;
    // Relaxed: the signal handler that reads CODE_END and ACTIVE runs on this
    // thread (the case's synchronous faults), after these stores in program
    // order; the stub is called through an opaque pointer, so the compiler
    // keeps them before it.
    signal::CODE_END.store(CODE_BASE + code_len as u64, Ordering::Relaxed);
    clock.lap(Phase::Code);
    // Initial image: readable for its pages, absent after; zeros after its end
    // (in a fast run: up to where the initial XRSTOR loads).
    let init_at = reg.alias + INIT_OFF as u64;
    let len = case.init.len();
    let exact = fast.map_or(usize::MAX, |f| f.init);
    poke(init_at, &case.init[..len.min(exact)]);
    let zero_end = res.init_dirty.min(exact);
    if zero_end > len {
        fill_zero(init_at + len as u64, zero_end - len);
    }
    res.init_dirty = if exact >= res.init_dirty.max(len) {
        len
    } else {
        res.init_dirty.max(len.min(exact))
    };
    let init_pages = round_pages(case.init.len()) / PAGE as usize;
    if res.init_readable != init_pages {
        let (lo, hi) = if res.init_readable < init_pages {
            (res.init_readable, init_pages)
        } else {
            (init_pages, res.init_readable)
        };
        protect(
            INIT_BASE + lo as u64 * PAGE,
            (hi - lo) * PAGE as usize,
            if res.init_readable < init_pages {
                libc::PROT_READ
            } else {
                libc::PROT_NONE
            },
        );
        res.init_readable = init_pages;
    }
    clock.lap(Phase::Init);
    // Arena: the bytes through the alias, then the protections that differ.
    poke(reg.alias + ARENA_OFF as u64, &case.memory.bytes);
    clock.lap(Phase::ArenaBytes);
    set_arena_prot(res, &case.memory.prot);
    clock.lap(Phase::ArenaProt);
    // Data page and areas: the final area zeroed where the last capture wrote;
    // the host area's XSAVE header zeroed (the stub's save of the host writes
    // XSTATE_BV there, XSAVEC also XCOMP_BV, and XRSTOR wants the other bytes
    // zero); its other bytes are whatever that save writes.
    fill_zero(reg.stub.final_area, res.final_dirty);
    fill_zero(reg.stub.host_area + 512, 64);
    // The reset image (legacy region and header: everything in init, MXCSR
    // 1F80H) is written anew every run: a case can address the data page (a
    // fuzzer learns its address from the runner's comparisons), and a reset
    // image it overwrote would make the next run's first XRSTOR fault inside the
    // stub, where no handler expects it (diff_native: a deadly signal on an
    // empty input after 4.7M runs).
    fill_zero(stub::RESET_IMAGE, 576);
    poke(stub::RESET_IMAGE + 24, &0x1F80u32.to_le_bytes());
    put_u64s(stub::data::GPRS_IN, &case.gprs);
    put_u64s(stub::data::GPRS_OUT, &[0; 16]);
    put_u64(
        stub::data::FLAGS_OR,
        if case.control.eflags_ac {
            stub::EFLAGS_AC
        } else {
            0
        },
    );
    put_u64(stub::data::XINUSE, 0);
    signal::clear_record();
    if phase::ENABLED {
        put_u64s(stub::data::PROBES, &[0; 7]);
    }
    clock.lap(Phase::Areas);
    // SAFETY: the stub is a complete sysv64 function without arguments in an
    // executable page; it preserves the callee-saved registers, RSP, RFLAGS and the
    // whole XSAVE-managed state, and returns even when the case faults (the signal
    // handler resumes it at its recovery path).
    let f: extern "sysv64" fn() = unsafe { std::mem::transmute(reg.stub.entry as usize) };
    let before = if count_switches { switches() } else { 0 };
    signal::ACTIVE.store(true, Ordering::Relaxed);
    match roundtrip {
        None => f(),
        Some(rt) => rt.call(reg.stub.entry),
    }
    signal::ACTIVE.store(false, Ordering::Relaxed);
    clock.lap(Phase::StubEntry);
    if phase::ENABLED {
        phase::stub_probes(std::array::from_fn(|k| {
            get_u64(stub::data::PROBES + 8 * k as u64)
        }));
    }
    let after = if count_switches { switches() } else { 0 };
    res.final_dirty = reg.std_size;
    let rec = signal::take_record();
    match rec {
        // Every signal reports the thread's trap number as it is now (trapno):
        // the fault's vector, which the kernel sets for every trap it turns
        // into a signal, or, for XFD's #NM, the one an earlier trap left.
        // Other than 6, a later SIGILL's trapno 6 is a #UD's again. (0, #DE,
        // is also what user-mode emulators report for an unknown vector: not
        // counted.)
        Some(r) if (1..32).contains(&r.trapno) && r.trapno != 6 => {
            NEEDS_PRIME.with(|c| c.set(false))
        }
        // Possibly a #UD: the thread's trap number may be 6 from now on.
        Some(r) if r.signo == libc::SIGILL || r.trapno == 6 => NEEDS_PRIME.with(|c| c.set(true)),
        _ => {}
    }
    Ok((before == after, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch's order: the key the mappings have now first (no mprotect
    /// before the first case), the most common key last (where the next batch
    /// most likely starts), the others between in key order, each key's cases
    /// in their own order; with the current key also the most common, it comes
    /// first.
    #[test]
    fn protection_order_starts_where_the_mappings_are_and_ends_on_the_common_key() {
        let keys = [5, 9, 1, 9, 5, 3, 9, 1];
        assert_eq!(order_from(&3, &keys), vec![5, 2, 7, 0, 4, 1, 3, 6]);
        assert_eq!(order_from(&9, &keys), vec![1, 3, 6, 2, 7, 5, 0, 4]);
        assert_eq!(order_from(&7, &keys), vec![2, 7, 5, 0, 4, 1, 3, 6]);
        assert_eq!(order_from(&7, &[] as &[u8]), Vec::<usize>::new());
    }

    /// The bytes a capture may hold past the legacy region and header end with
    /// its last component whose XSTATE_BV bit is 1 (standard format of XCR0
    /// 0x600e7: AVX ends at 832, Hi16_ZMM at 2688, TILEDATA at 11008); x87 and
    /// SSE lie in the first 576 bytes; an image too short for a header counts
    /// as all of it.
    #[test]
    fn final_extent_ends_with_the_last_component_in_use() {
        let ends = [
            (2, 832),
            (5, 1152),
            (6, 1664),
            (7, 2688),
            (17, 2816),
            (18, 11008),
        ];
        let image = |bv: u64| {
            let mut v = vec![0u8; 11008];
            v[512..520].copy_from_slice(&bv.to_le_bytes());
            v
        };
        assert_eq!(final_extent(&ends, 11008, &image(0)), 576);
        assert_eq!(final_extent(&ends, 11008, &image(0b11)), 576);
        assert_eq!(final_extent(&ends, 11008, &image(0b111)), 832);
        assert_eq!(final_extent(&ends, 11008, &image(1 << 7 | 1 << 2)), 2688);
        assert_eq!(final_extent(&ends, 11008, &image(1 << 17)), 2816);
        assert_eq!(final_extent(&ends, 11008, &image(1 << 18 | 0b111)), 11008);
        assert_eq!(final_extent(&ends, 11008, &[0u8; 300]), 11008);
    }

    /// `insn_index` is the position of the offset among `insn_offsets`, at
    /// every offset of code with instructions of 1 to 6 bytes (and none past
    /// its end): nop; xsave64 [rdi]; mov rax, [rip+0]; ud2.
    #[test]
    fn insn_index_is_the_position_among_the_offsets() {
        let code = [
            0x90, 0x48, 0x0F, 0xAE, 0x27, 0x48, 0x8B, 0x05, 0, 0, 0, 0, 0x0F, 0x0B,
        ];
        let opts = iced_x86::DecoderOptions::NONE;
        let offs = insn_offsets(&code, opts).unwrap();
        assert_eq!(offs, vec![0, 1, 5, 12]);
        for at in 0..=code.len() + 1 {
            assert_eq!(
                insn_index(&code, opts, at),
                offs.iter().position(|&o| o == at),
                "offset {at}"
            );
        }
    }
}
