//! Seeds the fuzz targets' corpora from the case files under `corpus/` (and a
//! few generated cases): `case_file` gets each file's text, the other targets
//! get the file's case in the fuzzer form (`FuzzCase::from_case`), the bytes
//! `xsdiff import` reads back. Run from the repository root:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Writes `fuzz/corpus/<target>/<name>` (libFuzzer's default corpus folders
//! under cargo fuzz) and prints how many inputs each target got.

use std::path::{Path, PathBuf};
use xsave_diff::casefile::CaseFile;
use xsave_diff::fuzzcase::FuzzCase;
use xsave_diff::generate::{generate, Target};
use xsave_emu::{Control, CpuModel};

const CASE_TARGETS: [&str; 3] = ["emu_total", "diff_native", "roundtrip"];
/// Generated cases added per target, from the default campaign seed.
const GENERATED: u64 = 64;

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            case_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "case") {
            out.push(p);
        }
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let corpus = root.join("corpus");
    let out = root.join("fuzz").join("corpus");
    let mut files = Vec::new();
    case_files(&corpus, &mut files).map_err(|e| format!("{}: {e}", corpus.display()))?;
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "no .case files under {} (run from the repository root, or give it as the argument)",
            corpus.display()
        ));
    }
    for t in CASE_TARGETS.iter().chain(&["case_file"]) {
        let d = out.join(t);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let write = |target: &str, name: &str, bytes: &[u8]| -> Result<(), String> {
        let p = out.join(target).join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut counts = [0usize; 4];
    for f in &files {
        let name = f
            .strip_prefix(&corpus)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('/', "-");
        let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        write("case_file", &name, &text)?;
        counts[3] += 1;
        let cf = CaseFile::load(f).map_err(|e| e.to_string())?;
        let model = match xsave_diff::models::resolve(&cf.model) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skipped {}: {e}", f.display());
                continue;
            }
        };
        let case = cf.build(&model).map_err(|e| e.to_string())?;
        let bytes = FuzzCase::from_case(&model, &case).to_bytes();
        for (k, t) in CASE_TARGETS.iter().enumerate() {
            write(t, &name, &bytes)?;
            counts[k] += 1;
        }
    }
    // Generated cases for the models the targets run: zen5 and this CPU's.
    let mut models: Vec<CpuModel> = vec![CpuModel::builtin("zen5").expect("built-in")];
    if let Ok(h) = xsave_native::host::host_model() {
        models.push(h);
    }
    for m in &models {
        let t = Target {
            control: Control::user(m),
            model: m.clone(),
        };
        for i in 0..GENERATED {
            let case = generate(&t, 1, i);
            let bytes = FuzzCase::from_case(m, &case).to_bytes();
            let name = format!("generated-{}-{i}", m.name);
            for (k, tg) in CASE_TARGETS.iter().enumerate() {
                write(tg, &name, &bytes)?;
                counts[k] += 1;
            }
        }
    }
    for (k, t) in CASE_TARGETS.iter().chain(&["case_file"]).enumerate() {
        println!("{t}: {} inputs in {}", counts[k], out.join(t).display());
    }
    Ok(())
}
