//! `exec:CMD ARGS...`: the `xsave-harness` binary run under a command prefix
//! (`qemu-x86_64 -cpu max`, `valgrind --tool=none`), cases batched per
//! process over xsave-native's protocol. The harness is found through the
//! environment variable `XSAVE_HARNESS`, else next to the running executable
//! (or one folder up, for test binaries in `deps/`).
//!
//! The model is what the harness reports from its own CPUID under the prefix
//! (the hello record), named after the built-in model it matches, if any.

use super::{Backend, Skip};
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use xsave_emu::{Case, Control, CpuModel, Outcome};
use xsave_native::protocol;

pub struct ExecBackend {
    prefix: Vec<String>,
    harness: PathBuf,
    model: CpuModel,
}

/// Where the harness binary is.
pub fn harness_path() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("XSAVE_HARNESS") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    let mut dir = exe.parent().map(PathBuf::from);
    for _ in 0..2 {
        if let Some(d) = &dir {
            let p = d.join("xsave-harness");
            if p.exists() {
                return Ok(p);
            }
            dir = d.parent().map(PathBuf::from);
        }
    }
    Err("xsave-harness not found next to this executable (build it: cargo build -p xsave-native, or set XSAVE_HARNESS)".into())
}

impl ExecBackend {
    pub fn new(cmd: &str) -> Result<ExecBackend, String> {
        let prefix: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        let harness = harness_path()?;
        let mut b = ExecBackend {
            prefix,
            harness,
            model: CpuModel::builtin("zen5").expect("built-in"),
        };
        let out = b
            .command()
            .arg("--hello")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("exec:{cmd}: cannot start: {e}"))?;
        let (hello, _) = protocol::read_outcomes(BufReader::new(&out.stdout[..])).map_err(|e| {
            format!(
                "exec:{cmd}: no hello from the harness ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            )
        })?;
        let mut m = hello.model(&format!("exec:{cmd}"));
        if let Some(b) = CpuModel::builtin_all()
            .into_iter()
            .find(|b| m.differences(b).is_empty())
        {
            m.name = b.name.clone();
            m.quirks = b.quirks;
            m.description = b.description.clone();
        }
        b.model = m;
        Ok(b)
    }

    fn command(&self) -> Command {
        let mut c = match self.prefix.first() {
            Some(p) => {
                let mut c = Command::new(p);
                c.args(&self.prefix[1..]);
                c.arg(&self.harness);
                c
            }
            None => Command::new(&self.harness),
        };
        c.stdout(Stdio::piped());
        c
    }
}

impl Backend for ExecBackend {
    fn name(&self) -> String {
        if self.prefix.is_empty() {
            "exec".into()
        } else {
            format!("exec:{}", self.prefix.join(" "))
        }
    }
    fn model(&self) -> &CpuModel {
        &self.model
    }
    fn control(&self) -> Control {
        Control::user(&self.model)
    }
    fn run(&mut self, case: &Case) -> Result<Outcome, Skip> {
        self.run_batch(std::slice::from_ref(case))
            .pop()
            .unwrap_or_else(|| Err(Skip("exec: no outcome".into())))
    }
    fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Outcome, Skip>> {
        let fail = |why: String| cases.iter().map(|_| Err(Skip(why.clone()))).collect();
        let mut child = match self
            .command()
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return fail(format!("exec: cannot start ({})", e.kind())),
        };
        let mut stdin = child.stdin.take().expect("piped");
        let mut input = Vec::new();
        if protocol::write_cases(&mut input, cases).is_err() {
            return fail("exec: cannot encode cases".into());
        }
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output();
        let _ = writer.join();
        let out = match out {
            Ok(o) => o,
            Err(e) => return fail(format!("exec: harness lost ({})", e.kind())),
        };
        match protocol::read_outcomes(BufReader::new(&out.stdout[..])) {
            Ok((_, outs)) if outs.len() == cases.len() => outs
                .into_iter()
                .map(|r| r.map_err(|f| Skip(format!("exec: {}", f.reason))))
                .collect(),
            Ok(_) => fail("exec: harness answered a different number of cases".into()),
            Err(_) => fail(match out.status.code() {
                Some(c) => format!("exec: harness exited with status {c}"),
                None => "exec: harness killed by a signal".into(),
            }),
        }
    }
}
