//! Model names on the command line and in case files: a built-in model, or
//! `host` (this CPU, read through CPUID by xsave-native).

use xsave_emu::CpuModel;

/// The model `name` stands for: `host`, or a built-in name.
pub fn resolve(name: &str) -> Result<CpuModel, String> {
    if name == "host" {
        return xsave_native::host::host_model();
    }
    CpuModel::builtin(name).ok_or_else(|| {
        format!(
            "unknown CPU model `{name}` (built-in: {}, or host)",
            CpuModel::builtin_names().join(", ")
        )
    })
}
