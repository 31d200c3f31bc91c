//! The `kvm` host: the image in a KVM micro-VM (kvm-ioctls), started directly
//! at its 64-bit entry with long mode set up through KVM_SET_SREGS. Results are
//! read from guest memory at each doorbell (an OUT to port 0x500).
//!
//! Before anything runs it reports the module and the capability values
//! (KVM_GET_SUPPORTED_CPUID leaf 0DH subleaf 1: XSAVES and the IA32_XSS bits).
//! It first boots the image without any XSAVE-family instruction (the "probe"
//! boot: XSETBV and WRMSR IA32_XSS for every case, the faults logged), then
//! with them; where that second boot cannot complete, every XSAVE-family case
//! is returned as the refusal "cannot run here: <reason>", never as a result.

use super::batch::{self, Info, Loaded};
use super::image;
use super::layout::*;
use super::Ring0Run;
use crate::Refusal;
use kvm_bindings::{kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit};
use xsave_emu::Case;

/// Guest RAM: the image lives below LOAD_END.
const RAM: usize = 1 << 20;

/// What this host's KVM is and offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Loaded KVM modules (from /sys/module): kvm_intel, kvm_amd, kvm_pvm.
    pub modules: Vec<String>,
    pub api_version: i32,
    /// KVM_GET_SUPPORTED_CPUID (0DH,1): EAX, ECX, EDX.
    pub d1: [u32; 3],
    /// KVM_GET_SUPPORTED_CPUID (0DH,0): EAX (XCR0 bits offered, low half).
    pub xcr0_low: u32,
}

impl Capability {
    pub fn xsaves(&self) -> bool {
        self.d1[0] & 8 != 0
    }
    pub fn xss_bits(&self) -> u64 {
        self.d1[1] as u64 | (self.d1[2] as u64) << 32
    }
    pub fn summary(&self) -> String {
        format!(
            "module {}, KVM API {}, KVM_GET_SUPPORTED_CPUID (0DH,0) EAX={:#x}, (0DH,1) EAX={:#x} (XSAVES {}) ECX={:#x} EDX={:#x} (IA32_XSS bits {:#x})",
            if self.modules.is_empty() { "none found".into() } else { self.modules.join("+") },
            self.api_version,
            self.xcr0_low,
            self.d1[0],
            if self.xsaves() { "offered" } else { "not offered" },
            self.d1[1],
            self.d1[2],
            self.xss_bits()
        )
    }
}

/// Detects /dev/kvm, the module and the capability values.
pub fn capability() -> Result<(Kvm, Capability), String> {
    let modules: Vec<String> = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .iter()
        .filter(|m| std::path::Path::new("/sys/module").join(m).exists())
        .map(|m| m.to_string())
        .collect();
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let api_version = kvm.get_api_version();
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
    let mut d1 = [0; 3];
    let mut xcr0_low = 0;
    for e in cpuid.as_slice() {
        if e.function == 0xD && e.index == 1 {
            d1 = [e.eax, e.ecx, e.edx];
        }
        if e.function == 0xD && e.index == 0 {
            xcr0_low = e.eax;
        }
    }
    Ok((
        kvm,
        Capability {
            modules,
            api_version,
            d1,
            xcr0_low,
        },
    ))
}

pub fn probe() -> Result<String, String> {
    let (_, cap) = capability()?;
    let summary = cap.summary();
    if !cap.xsaves() || cap.xss_bits() == 0 {
        return Err(format!(
            "{summary}: no XSAVES/IA32_XSS for guests, ring-0 XSAVES cases cannot run on silicon here"
        ));
    }
    Ok(summary)
}

/// How a boot ended.
#[derive(Debug)]
enum End {
    /// The guest reached its end (OUT to the exit port).
    Done,
    /// KVM_RUN stopped with something else: the reason.
    Stopped(String),
}

struct Boot {
    info: Option<Info>,
    records: Vec<batch::Record>,
    end: End,
}

/// Guest memory, page-aligned, owned.
struct GuestMem {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl GuestMem {
    fn new(size: usize) -> GuestMem {
        let layout = std::alloc::Layout::from_size_align(size, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory for guest RAM");
        GuestMem { ptr, layout }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of layout.size() bytes; the vCPU is
        // not running while the host reads (only between KVM_RUN calls).
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access on the host side.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout; the VM that mapped it
        // is dropped before (field order in `boot`).
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn seg(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl: 0,
        db: if code { 0 } else { 1 },
        s: 1,
        l: if code { 1 } else { 0 },
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn boot(kvm: &Kvm, img: &Loaded, cases: &[&Case]) -> Result<Boot, String> {
    let mut mem = GuestMem::new(RAM);
    let o = LOAD as usize;
    mem.bytes_mut()[o..o + img.mem.len()].copy_from_slice(&img.mem);
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: RAM as u64,
        userspace_addr: mem.ptr as u64,
    };
    // SAFETY: the region is a live allocation of RAM bytes that outlives the VM
    // (`mem` is declared before `vm`, so it is dropped after it).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs = seg(SEL_KCODE, true);
    for s in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.ss,
        &mut sregs.fs,
        &mut sregs.gs,
    ] {
        *s = seg(SEL_KDATA, false);
    }
    sregs.gdt.base = GDT;
    sregs.gdt.limit = GDT_LIMIT;
    sregs.cr0 = 0x8001_0033;
    sregs.cr3 = PML4;
    sregs.cr4 = (1 << 5) | (1 << 9) | (1 << 10);
    sregs.efer = 0x500;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = ENTRY64;
    regs.rsp = KSTACK_TOP;
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let mut out = Boot {
        info: None,
        records: Vec::new(),
        end: End::Done,
    };
    for _ in 0..(cases.len() * 4 + 16) {
        let exit = vcpu.run();
        let what = match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                let (port, v) = (port, data.first().copied().unwrap_or(0));
                if port == DOORBELL_PORT && v == 1 {
                    let b = mem.bytes();
                    let i = var(V_INFO) as usize;
                    out.info = Some(Info::parse(&b[i..i + INFO_BYTES as usize])?);
                    continue;
                }
                if port == DOORBELL_PORT && v == 2 {
                    let k = out.records.len();
                    let case = cases.get(k).ok_or("more records than cases")?;
                    let b = mem.bytes();
                    let r = var(V_RES) as usize;
                    let res = &b[r..r + RES_BYTES as usize];
                    let std_max = u64::from_le_bytes(
                        b[var(V_STD_MAX) as usize..var(V_STD_MAX) as usize + 8]
                            .try_into()
                            .unwrap(),
                    ) as usize;
                    let q =
                        |n: usize| u64::from_le_bytes(res[8 * n..8 * n + 8].try_into().unwrap());
                    let sup = q(R_SUP_LEN) as usize;
                    let x = XSAVE_AREA as usize;
                    let xs = XSAVES_AREA as usize;
                    let a = ARENA_PHYS as usize;
                    let pages = case.memory.prot.len();
                    out.records.push(batch::Record::from_parts(
                        res,
                        b[x..x + std_max.min(AREA_BYTES as usize)].to_vec(),
                        b[xs..xs + sup.min(AREA_BYTES as usize)].to_vec(),
                        b[a..a + pages * 4096].to_vec(),
                    ));
                    continue;
                }
                if port == EXIT_PORT {
                    break;
                }
                if port == E9 || port == BOCHS_SHUTDOWN_PORT {
                    continue;
                }
                format!("unexpected OUT to port {port:#x}")
            }
            Ok(VcpuExit::InternalError) => {
                let run = vcpu.get_kvm_run();
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the
                // `internal` member of the union is the one KVM filled in.
                let sub = unsafe { run.__bindgen_anon_1.internal.suberror };
                let b = mem.bytes();
                let step = u64::from_le_bytes(
                    b[var(V_KSTEP) as usize..var(V_KSTEP) as usize + 8]
                        .try_into()
                        .unwrap(),
                );
                let phase = u64::from_le_bytes(
                    b[var(V_PHASE) as usize..var(V_PHASE) as usize + 8]
                        .try_into()
                        .unwrap(),
                );
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                format!(
                    "KVM_RUN ended with KVM_EXIT_INTERNAL_ERROR suberror {sub} at guest RIP {rip:#x} ({})",
                    describe_place(phase, step)
                )
            }
            Ok(VcpuExit::Shutdown) => "the guest shut down (triple fault)".into(),
            Ok(VcpuExit::Hlt) => "the guest halted before its end".into(),
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                format!("KVM_EXIT_FAIL_ENTRY: hardware reason {reason:#x} on vCPU {cpu}")
            }
            Ok(other) => format!("unexpected exit {other:?}"),
            Err(e) => format!("KVM_RUN failed: {e}"),
        };
        out.end = End::Stopped(what);
        return Ok(out);
    }
    Ok(out)
}

fn describe_place(phase: u64, step: u64) -> String {
    match phase {
        PH_BOOT => "at boot".into(),
        PH_SETUP | PH_CAPTURE => format!("at the kernel step: {}", Step::describe(step)),
        PH_INIT => "at the initial XRSTOR(S) of a case".into(),
        PH_CODE => "in a case's code".into(),
        _ => format!("phase {phase}"),
    }
}

/// Runs `cases` in a micro-VM (see the module comment).
pub fn run(cases: &[Case]) -> Result<super::Ring0Runs, String> {
    let (kvm, cap) = capability()?;
    let img = image::build().map_err(|e| format!("assembling the image: {e}"))?;
    let mut out: Vec<Option<Result<Ring0Run, Refusal>>> = vec![None; cases.len()];
    let mut runnable = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        match batch::refuse(c) {
            Some(r) => out[k] = Some(Err(r)),
            None => runnable.push(k),
        }
    }
    let refs: Vec<&Case> = runnable.iter().map(|&k| &cases[k]).collect();
    let mut info = None;
    for group in batch::pack(&refs, super::MAX_PER_BOOT) {
        let cs: Vec<&Case> = group.iter().map(|&i| refs[i]).collect();
        // The probe boot: control state only, no XSAVE-family instruction.
        let probe = boot(&kvm, &batch::load(&img, &cs, 1, true)?, &cs)?;
        let mut facts: Vec<String> = Vec::new();
        if let End::Stopped(why) = &probe.end {
            facts.push(format!("probe boot: {why}"));
        }
        for rec in &probe.records {
            for f in rec.kernel_faults() {
                let s = f.to_string();
                if !facts.contains(&s) {
                    facts.push(s);
                }
            }
        }
        // The real boot.
        let full = boot(&kvm, &batch::load(&img, &cs, 1, false)?, &cs)?;
        match &full.end {
            End::Done if full.records.len() == cs.len() => {
                let inf = full.info.clone().ok_or("no information record")?;
                let model = inf.model("kvm");
                for (&i, rec) in group.iter().zip(&full.records) {
                    let k = runnable[i];
                    out[k] = Some(batch::to_run(&model, &cases[k], rec)?);
                }
                info = Some(inf);
            }
            end => {
                let why = match end {
                    End::Stopped(w) => w.clone(),
                    End::Done => format!("{} records for {} cases", full.records.len(), cs.len()),
                };
                facts.insert(0, why);
                let reason = format!("cannot run here: {}; {}", cap.summary(), facts.join("; "));
                for &i in &group {
                    out[runnable[i]] = Some(Err(Refusal {
                        reason: reason.clone(),
                    }));
                }
                info = full.info.or(probe.info);
            }
        }
    }
    Ok((
        info,
        out.into_iter().map(|o| o.expect("every case")).collect(),
    ))
}
