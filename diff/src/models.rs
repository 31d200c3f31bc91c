//! Model names on the command line and in case files: a built-in model, or
//! `host` (this CPU, read through CPUID by xsave-native).

use xsave_emu::CpuModel;

/// The model `name` stands for: `host`, or a built-in name.
pub fn resolve(name: &str) -> Result<CpuModel, String> {
    if name == "host" {
        return Err(
            "the host model needs xsave-native's host module, which is not built yet".into(),
        );
    }
    CpuModel::builtin(name).ok_or_else(|| {
        format!(
            "unknown CPU model `{name}` (built-in: {}, or host)",
            CpuModel::builtin_names().join(", ")
        )
    })
}
