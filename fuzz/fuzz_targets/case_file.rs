//! `case_file`: any bytes through the case-file parser. The parser and the
//! builder answer with an error (naming file, line and field) or a case; a case
//! written back (`write_case`) parses and builds to the same case, and writing
//! that again gives the same text (the written form is a fixed point). Expect
//! and record sections are built too. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsave_diff::casefile::{write_case, CaseFile};
use xsave_fuzz::model_named;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(cf) = CaseFile::parse(&text, "input") else {
        return;
    };
    let Some(model) = model_named(&cf.model) else {
        return;
    };
    let Ok(case) = cf.build(model) else {
        return;
    };
    if let Some(sec) = &cf.expect {
        let _ = cf.expected(sec, model, &case);
    }
    for (_, sec) in &cf.records {
        let _ = cf.expected(sec, model, &case);
    }
    let written = write_case(&cf.comments, &cf.model, model, &case);
    let again = CaseFile::parse(&written, "written")
        .unwrap_or_else(|e| panic!("the written case does not parse: {e}\n{written}"));
    let case2 = again
        .build(model)
        .unwrap_or_else(|e| panic!("the written case does not build: {e}\n{written}"));
    assert!(
        case2 == case,
        "the written case builds to another case:\n{written}\nfirst: {case:?}\nagain: {case2:?}"
    );
    let rewritten = write_case(&again.comments, &again.model, model, &case2);
    assert!(
        rewritten == written,
        "writing the case twice gives two texts:\n--- first\n{written}\n--- second\n{rewritten}"
    );
});
