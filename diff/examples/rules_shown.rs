//! Prints, for each case file, the rules it shows ([`xsave_diff::known::rules_shown`]:
//! what the envelope names when its instructions are undone), judged on the
//! file's model (`host` files on xeon-amx-vm, the silicon the generated cases
//! were first recorded on): `FILE: rule, rule`, or why the emulator cannot
//! judge it.
//!
//!     cargo run --release -p xsave-diff --example rules_shown -- FILES...
use xsave_diff::casefile::CaseFile;

fn main() -> Result<(), String> {
    for f in std::env::args().skip(1) {
        let cf = CaseFile::load(std::path::Path::new(&f)).map_err(|e| e.to_string())?;
        let name = if cf.model == "host" {
            "xeon-amx-vm"
        } else {
            cf.model.as_str()
        };
        let model = xsave_diff::models::resolve(name)?;
        let case = cf.build(&model).map_err(|e| e.to_string())?;
        match xsave_diff::known::rules_shown(&model, &case) {
            Ok(rules) => println!("{f}: {}", rules.join(", ")),
            Err(e) => println!("{f}: (not judged: {e})"),
        }
    }
    Ok(())
}
