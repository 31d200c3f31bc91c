//! Ring 0: XSAVES/XRSTORS and CET supervisor state in a bootable case image,
//! run on KVM, Bochs and QEMU system emulation.

pub mod image;
pub mod layout;
