//! Writes generated cases that this CPU runs (not refused) as case files for
//! `corpus/silicon/`, named `gen-SEED-INDEX.case`; `xsdiff record --expect`
//! then adds this silicon's record. The generator is biased to where vendors
//! may differ: x87 pointers and FSW, MXCSR and XINUSE, the init and modified
//! optimizations, faults on partly mapped areas. Only cases that both silicons
//! (zen5, xeon-amx-vm) can build are kept, so either can record the other half.
//!
//!     cargo run --release -p xsave-diff --example silicon_corpus -- OUT_DIR COUNT SEED
use std::path::PathBuf;
use xsave_diff::casefile::{write_case, CaseFile};
use xsave_diff::generate::{generate, Target};
use xsave_emu::CpuModel;
use xsave_native::runner::Runner;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: silicon_corpus OUT_DIR COUNT SEED".into());
    }
    let out = PathBuf::from(&args[1]);
    let count: u64 = args[2].parse().map_err(|e| format!("COUNT: {e}"))?;
    let seed: u64 = args[3].parse().map_err(|e| format!("SEED: {e}"))?;
    let mut runner = Runner::new()?;
    let model = runner.model().clone();
    let target = Target {
        model: model.clone(),
        control: runner.control(),
    };
    // Keep only cases both silicons can build (no AMX state on AMD, no CET on Intel).
    let silicons: Vec<CpuModel> = ["zen5", "xeon-amx-vm"]
        .iter()
        .filter_map(|n| CpuModel::builtin(n))
        .collect();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (mut written, mut index) = (0, 0);
    while written < count {
        let case = generate(&target, seed, index);
        index += 1;
        if runner.run(&case).is_err() {
            continue;
        }
        let comments = vec![
            format!(
                "Generated case {} of campaign seed {seed} (xsdiff's edge-biased generator),",
                index - 1
            ),
            format!(
                "kept because {} runs it; recorded per silicon with `xsdiff record`.",
                model.name
            ),
        ];
        let text = write_case(&comments, "host", &model, &case);
        let file = CaseFile::parse(&text, "generated").map_err(|e| e.to_string())?;
        if silicons.iter().any(|m| file.build(m).is_err()) {
            continue;
        }
        let path = out.join(format!("gen-{seed}-{:05}.case", index - 1));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written += 1;
    }
    println!(
        "{written} cases written to {} ({index} generated)",
        out.display()
    );
    Ok(())
}
