//! xsave-harness: the ring-3 runner as a standalone program, for running cases
//! under user-mode emulators (`qemu-x86_64 -cpu max`, `valgrind --tool=none`).
//!
//! Reads a batch of cases (protocol `xsave-harness-cases 1`) on stdin and writes a
//! hello record (what this process sees: CPUID, XCR0, MXCSR_MASK, XFD) and one
//! outcome or refusal per case on stdout (`xsave-harness-outcomes 1`).
//!
//! Options:
//!   --amx-permission   ask Linux for AMX (TILEDATA) permission first
//!                      (arch_prctl ARCH_REQ_XCOMP_PERM; process-wide, irreversible)
//!   --hello            write only the hello record; do not read stdin
//!   --emulated         run under a user-mode emulator: a host context switch
//!                      does not touch the emulated FPU state, so a run the
//!                      kernel switched away from still counts

use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;
use xsave_native::protocol::{self, hello_here};
use xsave_native::runner::Runner;
use xsave_native::{host, Refusal};

fn main() -> ExitCode {
    let mut amx = false;
    let mut hello_only = false;
    let mut emulated = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--amx-permission" => amx = true,
            "--hello" => hello_only = true,
            "--emulated" => emulated = true,
            "-h" | "--help" => {
                println!(
                    "usage: xsave-harness [--amx-permission] [--hello] [--emulated] < cases > outcomes"
                );
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("xsave-harness: unknown argument `{a}` (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    if amx {
        if let Err(e) = host::request_amx_permission() {
            eprintln!("xsave-harness: {e}");
            return ExitCode::from(3);
        }
    }
    let cases = if hello_only {
        Vec::new()
    } else {
        match protocol::read_cases(BufReader::new(std::io::stdin().lock())) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("xsave-harness: stdin: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let runner = Runner::new();
    let hello = hello_here(runner.as_ref().map(|_| ()).map_err(|e| e.clone()));
    let outcomes: Vec<_> = match runner {
        Ok(mut r) => {
            r.switches_matter = !emulated;
            cases.iter().map(|c| r.run(c)).collect()
        }
        Err(e) => cases
            .iter()
            .map(|_| Err(Refusal::new(&format!("runner: {e}"))))
            .collect(),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if let Err(e) = protocol::write_outcomes(&mut out, &hello, &outcomes).and_then(|_| out.flush())
    {
        eprintln!("xsave-harness: stdout: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
