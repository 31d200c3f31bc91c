//! SIGINT and SIGTERM end a campaign cleanly: the summary so far (JSON here),
//! the Markdown report, every finding intact, the exit status of a run that
//! ended (0 or 1, never a signal's).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn interrupted_run(signal: &str) {
    let dir = std::env::temp_dir().join(format!("xsdiff-int-{signal}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("findings");
    let md = dir.join("report.md");
    std::fs::create_dir_all(&dir).unwrap();
    // Two models disagree on many cases: findings are written while it runs.
    let child = Command::new(env!("CARGO_BIN_EXE_xsdiff"))
        .args([
            "run",
            "--backends",
            "emu:zen5,emu:xeon-amx-vm",
            "--time",
            "60",
            "--jobs",
            "2",
        ])
        .args(["--format", "json", "--out"])
        .arg(&out)
        .arg("--report")
        .arg(&md)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let st = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{:?} {stderr}",
        o.status
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["interrupted"], true);
    assert!(v["generated"].as_u64().unwrap() > 0);
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(
        report.starts_with("# xsdiff run: emu:xeon-amx-vm against emu:zen5"),
        "{report}"
    );
    // The summary beside the findings (for `xsdiff merge`) is the one printed.
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(written, v);
    // Every other file written parses, none is a leftover temporary.
    let findings = v["findings"].as_array().unwrap();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n == "summary.json") {
            continue;
        }
        assert_eq!(
            p.extension().and_then(|x| x.to_str()),
            Some("case"),
            "{}",
            p.display()
        );
        xsave_diff::casefile::CaseFile::load(Path::new(&p)).unwrap_or_else(|e| panic!("{e}"));
        assert!(findings
            .iter()
            .any(|f| f.as_str() == Some(&p.display().to_string())));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_ends_a_campaign_with_its_summary() {
    interrupted_run("INT");
}

#[test]
fn sigterm_ends_a_campaign_with_its_summary() {
    interrupted_run("TERM");
}
