//! Every instruction of every corpus file, disassembled as xsdiff writes it
//! (iced's Intel formatter), assembles back to an instruction that formats the
//! same: the `[code]` assembler reads what xsdiff writes.
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use std::path::{Path, PathBuf};
use xsave_diff::assemble::assemble;
use xsave_diff::casefile::{disassemble, CaseFile};
use xsave_emu::case::CODE_BASE;

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            case_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "case") {
            out.push(p);
        }
    }
}

fn format_at(bytes: &[u8], ip: u64) -> String {
    let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let ins = d.decode();
    let mut s = String::new();
    IntelFormatter::new().format(&ins, &mut s);
    s
}

#[test]
fn corpus_disassembly_assembles_back() {
    let mut files = Vec::new();
    case_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"),
        &mut files,
    );
    let (mut ok, mut bad) = (0, Vec::new());
    for f in &files {
        let cf = CaseFile::load(f).unwrap();
        let code: Vec<u8> = cf.code.iter().flat_map(|c| c.1.clone()).collect();
        let mut ip = CODE_BASE;
        for (bytes, text) in disassemble(&code) {
            if text != "(invalid)" {
                match assemble(&text, ip) {
                    Ok(b) if format_at(&b, ip) == text => ok += 1,
                    Ok(b) => bad.push(format!(
                        "{}: `{text}` -> {b:02x?} `{}`",
                        f.display(),
                        format_at(&b, ip)
                    )),
                    Err(e) => bad.push(format!("{}: `{text}`: {e}", f.display())),
                }
            }
            ip += bytes.len() as u64;
        }
    }
    println!("{ok} instructions assemble back");
    assert!(ok >= 100, "{ok}");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
