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
                // Under a prefix (an emulator) host context switches do not
                // touch the FPU state the case sees.
                c.arg(&self.harness).arg("--emulated");
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
        let r = self.run_once(cases);
        match r {
            // A harness killed by a signal loses its whole batch: the halves
            // run again, so that only the cases that kill it are skipped.
            Err(Killed { .. }) if cases.len() > 1 => {
                let (a, b) = cases.split_at(cases.len() / 2);
                let mut v = self.run_batch(a);
                v.extend(self.run_batch(b));
                v
            }
            Err(k) => vec![Err(Skip(k.reason(&self.model, &cases[0])))],
            Ok(v) => v,
        }
    }
}

impl ExecBackend {
    fn run_once(&mut self, cases: &[Case]) -> Result<Vec<Result<Outcome, Skip>>, Killed> {
        let fail = |why: String| Ok(cases.iter().map(|_| Err(Skip(why.clone()))).collect());
        let mut child = match self
            .command()
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
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
            Ok((_, outs)) if outs.len() == cases.len() => Ok(outs
                .into_iter()
                .map(|r| r.map_err(|f| Skip(format!("exec: {}", f.reason))))
                .collect()),
            Ok(_) => fail("exec: harness answered a different number of cases".into()),
            Err(_) => match out.status.code() {
                Some(c) => fail(format!("exec: harness exited with status {c}")),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    Err(Killed {
                        sig: out.status.signal().unwrap_or(0),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    })
                }
            },
        }
    }
}

/// A harness process that a signal ended, and what the program under the
/// prefix said on stderr.
struct Killed {
    sig: i32,
    stderr: String,
}

impl Killed {
    /// The skip reason for `case`: the signal and what the prefix said of it
    /// (valgrind: the kind of access, without its address). Where the
    /// address is the one of the #PF the model predicts at an instruction of
    /// the case, that instruction is named: valgrind runs the XSAVE family
    /// in helpers of its own, and a page fault inside one kills the process
    /// instead of reaching the harness's SIGSEGV handler (its `at 0x...` is
    /// then not the faulting instruction).
    fn reason(&self, model: &CpuModel, case: &Case) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(|l| l.trim_start_matches(|c: char| c == '=' || c.is_ascii_digit()))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let said = lines.iter().find(|l| {
            !l.starts_with("Process terminating")
                && !l.starts_with("at 0x")
                && !l.starts_with("by 0x")
        });
        let what = said.map(|l| l.split(" at address ").next().unwrap_or(l).to_string());
        let addr = said
            .and_then(|l| l.split(" at address 0x").nth(1))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
        let predicted = xsave_emu::predict(model, case).ok().and_then(|o| o.fault);
        let insn = match (predicted, addr) {
            (
                Some(xsave_emu::FaultAt {
                    fault: xsave_emu::Fault::Pf { addr: a, .. },
                    insn: Some(k),
                }),
                Some(b),
            ) if a == b => Some(crate::signature::at_site(
                case,
                xsave_emu::provenance::Site::Insn(k),
            )),
            _ => None,
        };
        let mut s = format!(
            "exec: harness killed by signal {} ({})",
            self.sig,
            signal_name(self.sig)
        );
        if let Some(w) = what {
            s.push_str(&format!(": {w}"));
        }
        if let Some(i) = insn {
            s.push_str(&format!(", the #PF the model predicts at {i}"));
        }
        s
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsave_emu::case::ARENA_BASE;
    use xsave_emu::{Memory, Prot};

    #[test]
    fn a_harness_killed_in_a_save_names_the_signal_and_the_predicted_fault() {
        // XSAVE64 [rbx] onto a read-only arena page: the model predicts #PF
        // (W/R = 1) at the area's first byte; valgrind 3.19 kills the
        // harness there with these lines (exec:valgrind --tool=none -q).
        let m = CpuModel::builtin("valgrind-3.19").unwrap();
        let mut c = Case::new(&m, Control::user(&m));
        c.memory = Memory::new(ARENA_BASE, 1);
        c.memory.prot[0] = Prot::Read;
        c.gprs[0] = 3;
        c.gprs[3] = ARENA_BASE;
        c.code = vec![0x48, 0x0f, 0xae, 0x23];
        let k = Killed {
            sig: 11,
            stderr: format!(
                "==7== \n==7== Process terminating with default action of signal 11 (SIGSEGV)\n\
                 ==7==  Bad permissions for mapped region at address 0x{ARENA_BASE:X}\n\
                 ==7==    at 0x10100000A6: ???\n"
            ),
        };
        assert_eq!(
            k.reason(&m, &c),
            "exec: harness killed by signal 11 (SIGSEGV): Bad permissions for mapped region, \
             the #PF the model predicts at xsave"
        );
        // Another address: no instruction named.
        let k = Killed {
            sig: 11,
            stderr: "==7==  Bad permissions for mapped region at address 0x1234\n".into(),
        };
        assert_eq!(
            k.reason(&m, &c),
            "exec: harness killed by signal 11 (SIGSEGV): Bad permissions for mapped region"
        );
    }
}
