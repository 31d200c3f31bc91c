//! The control state that decides how the XSAVE family behaves (SDM1 §13.3,
//! SDM2 exception tables): XCR0, IA32_XSS, IA32_XFD, CPL, CR0/CR4 bits, EFLAGS.AC,
//! mode.

use crate::model::CpuModel;

/// Execution mode. Only 64-bit mode is run on hardware so far; the 32-bit
/// forms of the instructions are the encodings without REX.W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Long64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Control {
    pub xcr0: u64,
    pub xss: u64,
    /// IA32_XFD: component i is armed when XCR0[i] = IA32_XFD[i] = 1 (SDM1 §13.14).
    pub xfd: u64,
    pub cpl: u8,
    pub cr0_ts: bool,
    pub cr0_em: bool,
    pub cr0_am: bool,
    pub cr4_osxsave: bool,
    pub cr4_osfxsr: bool,
    pub eflags_ac: bool,
    pub vmx_nonroot: bool,
    pub mode: Mode,
}

impl Control {
    /// What a Linux user process runs with on this CPU model: the OS's XCR0,
    /// IA32_XSS and IA32_XFD, CPL 3, CR0.AM = 1 (Linux sets it), EFLAGS.AC = 0.
    pub fn user(model: &CpuModel) -> Control {
        Control::user_with(model.os_xcr0, model.os_xss, model.os_xfd)
    }

    /// A Linux user process's control state (as [`Control::user`]) with the
    /// given XCR0, IA32_XSS and IA32_XFD.
    pub fn user_with(xcr0: u64, xss: u64, xfd: u64) -> Control {
        Control {
            xcr0,
            xss,
            xfd,
            cpl: 3,
            cr0_ts: false,
            cr0_em: false,
            cr0_am: true,
            cr4_osxsave: true,
            cr4_osfxsr: true,
            eflags_ac: false,
            vmx_nonroot: false,
            mode: Mode::Long64,
        }
    }

    /// The same at CPL 0 (a kernel or a guest kernel).
    pub fn kernel(model: &CpuModel) -> Control {
        Control {
            cpl: 0,
            ..Control::user(model)
        }
    }

    /// Components armed for XFD.
    pub fn xfd_armed(&self) -> u64 {
        self.xcr0 & self.xfd
    }

    /// Alignment checking is on: CR0.AM = 1, CPL 3, EFLAGS.AC = 1.
    pub fn alignment_checking(&self) -> bool {
        self.cr0_am && self.cpl == 3 && self.eflags_ac
    }
}
