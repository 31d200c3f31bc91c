//! corpus/ring0's bug table (README.md there) as a check: each case against
//! each Bochs build that is installed (2.7, 3.0, head), `xsdiff repro` with
//! `--backends emu,bochs:VERSION[:CPU]`. "has it": that build's outcome is
//! outside the envelope around the case's [expect] (the SDM's outcome);
//! "fixed": it is inside. A build that is
//! not installed is skipped with its reason.
use std::path::Path;
use xsave_native::ring0::bochs::Target;

/// (case, Bochs cpu model, has it on [2.7, 3.0, head]; None: that build cannot run
/// the case: no such cpu model (2.7), or the case's XCR0 is not one it supports).
const TABLE: &[(&str, &str, [Option<bool>; 3])] = &[
    (
        "bochs-xsaves-compacted-offset-160",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xsaves-cet-u-xinuse-inverted",
        "tigerlake",
        [Some(true), Some(false), Some(false)],
    ),
    (
        "bochs-xsaves-cet-s-xinuse-pl0-only",
        "tigerlake",
        [Some(true), Some(false), Some(false)],
    ),
    (
        "bochs-xrstors-sse-init-loads-mxcsr",
        "tigerlake",
        [Some(true), Some(false), Some(false)],
    ),
    (
        "bochs-xrstors-offsets-by-rfbm",
        "tigerlake",
        [Some(true), Some(false), Some(false)],
    ),
    (
        "bochs-xrstors-ssp-bit0-no-gp",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xsavec-tilecfg-rows-colsb-swapped",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xsavec-tiledata-xinuse-inverted",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-fxrstor-no-pf-on-reserved-bytes",
        "tigerlake",
        [Some(true), Some(true), Some(true)],
    ),
    (
        "bochs-xsavec-mxcsr-without-sse",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xrstors-sse-init-keeps-mxcsr",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-fxrstor-loads-before-pf",
        "tigerlake",
        [Some(true), Some(true), Some(true)],
    ),
    (
        "bochs-xrstor-loads-before-pf",
        "tigerlake",
        [Some(true), Some(true), Some(true)],
    ),
    (
        "bochs-xrstors-probe-past-area",
        "tigerlake",
        [Some(false), Some(false), Some(true)],
    ),
    (
        "bochs-xgetbv-tiledata-xinuse-inverted",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xsaves-tiledata-xinuse-inverted",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xsave-tiledata-xinuse-inverted",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xrstors-tiledata-xinuse-inverted",
        "sapphire_rapids",
        [None, Some(false), Some(true)],
    ),
    (
        "bochs-xsave-tiledata-rows-8-15",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xsaveopt-tiledata-rows-8-15",
        "sapphire_rapids",
        [None, Some(true), Some(true)],
    ),
    (
        "bochs-xrstor-avx-init-clears-zmm-hi256",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xsaves-mxcsr-without-sse-in-use",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xrstor-sse-init-loads-mxcsr-gp",
        "tigerlake",
        [Some(true), None, None],
    ),
    (
        "bochs-xsavec-mxcsr-sse-not-in-use",
        "tigerlake",
        [Some(true), None, None],
    ),
    (
        "bochs-xsavec-compacted-offset-160",
        "tigerlake",
        [Some(true), None, None],
    ),
    (
        "bochs-xsavec-mxcsr-sse-not-in-use-header",
        "tigerlake",
        [Some(true), None, None],
    ),
    (
        "bochs-xsavec-mxcsr-without-sse-reloaded",
        "tigerlake",
        [Some(true), Some(true), Some(false)],
    ),
    (
        "bochs-xsaveopt-pkru-offset-by-rfbm",
        "tigerlake",
        [Some(true), None, None],
    ),
];

#[test]
fn every_ring0_case_is_in_the_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/ring0");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".case")
                .map(str::to_string)
        })
        .collect();
    files.sort();
    let mut table: Vec<String> = TABLE.iter().map(|(f, _, _)| f.to_string()).collect();
    table.sort();
    assert_eq!(files, table);
}

#[test]
fn the_bug_table_holds_on_each_installed_bochs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/ring0");
    for (k, v) in ["2.7", "3.0", "head"].iter().enumerate() {
        for (file, cpu, has) in TABLE {
            let Some(has) = has[k] else { continue };
            let spec = format!("{v}:{cpu}");
            if let Some(why) = Target::parse(&spec).unwrap().missing() {
                println!("SKIP bochs:{spec}: {why}");
                continue;
            }
            let specs = vec!["emu".to_string(), format!("bochs:{spec}")];
            let r = xsave_diff::repro::repro_file(&dir.join(format!("{file}.case")), Some(&specs));
            let on_bochs: Vec<_> = r
                .checks
                .iter()
                .filter(|c| c.what == format!("expect vs bochs:{spec}"))
                .collect();
            assert_eq!(on_bochs.len(), 1, "{file} on bochs:{spec}: {}", r.text());
            // "has it": outside the envelope; a build inside it (off the model
            // or not) does not.
            let outside = on_bochs[0].result == "mismatch"
                && on_bochs[0].verdict.as_deref() == Some("outside the envelope");
            assert_eq!(outside, has, "{file} on bochs:{spec}: {}", r.text());
            println!(
                "{file} bochs:{spec}: {}",
                if has { "has it" } else { "fixed" }
            );
        }
    }
}
