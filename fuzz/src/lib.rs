//! Shared pieces of the fuzz targets: the built-in models (read once), the
//! host model (read once), and the case-file form of a failing input, so that
//! every crash message can be pasted into a `.case` file as it stands.
//!
//! Every target except `case_file` reads its input as a
//! [`xsave_diff::fuzzcase::FuzzCase`]: the same bytes that `xsdiff import`
//! turns into a case file.

use std::sync::OnceLock;
use xsave_diff::casefile;
use xsave_emu::{Case, CpuModel};

/// The built-in models, parsed once per process.
pub fn builtin_models() -> &'static [CpuModel] {
    static MODELS: OnceLock<Vec<CpuModel>> = OnceLock::new();
    MODELS.get_or_init(CpuModel::builtin_all)
}

/// This CPU's model (`host` in case files), read once per process.
pub fn host_model() -> Result<&'static CpuModel, &'static str> {
    static HOST: OnceLock<Result<CpuModel, String>> = OnceLock::new();
    HOST.get_or_init(xsave_native::host::host_model)
        .as_ref()
        .map_err(|e| e.as_str())
}

/// A model by case-file name: `host` or a built-in one.
pub fn model_named(name: &str) -> Option<&'static CpuModel> {
    if name == "host" {
        return host_model().ok();
    }
    builtin_models().iter().find(|m| m.name == name)
}

/// The case as a case file (model `model_name`), with `why` as its opening
/// comment lines: what a crash message ends with.
pub fn case_text(why: &[String], model_name: &str, model: &CpuModel, case: &Case) -> String {
    casefile::write_case(why, model_name, model, case)
}

/// The control state a target ran a case under, for crash messages.
pub fn control_line(case: &Case) -> String {
    let c = &case.control;
    format!(
        "XCR0 {:#x}, IA32_XSS {:#x}, IA32_XFD {:#x}, CPL {}, CR0.TS {}, CR0.AM {}, EFLAGS.AC {}",
        c.xcr0, c.xss, c.xfd, c.cpl, c.cr0_ts as u8, c.cr0_am as u8, c.eflags_ac as u8
    )
}
