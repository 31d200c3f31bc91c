//! `xsdiff`: the differential tester's command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xsave_diff::campaign::{self, Config, Goal, Limit};
use xsave_diff::casefile::{self, CaseFile};
use xsave_diff::finding::{self, write_atomic, Finding};
use xsave_diff::fuzzcase::FuzzCase;
use xsave_diff::{merge, models, repro};
use xsave_emu::{layout, CpuModel, Xfeatures};

#[derive(Parser)]
#[command(
    name = "xsdiff",
    version,
    about = "Differential tester of the x86 XSAVE feature set"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate cases and compare backends (default: emu against this CPU for 10 s).
    Run {
        /// Comma-separated backends, the reference first: emu, emu:MODEL, native, exec:CMD ARGS, unicorn.
        #[arg(long, default_value = "emu,native", value_delimiter = ',')]
        backends: Vec<String>,
        /// The model the emulator judges with (a built-in name or host).
        #[arg(long)]
        cpu: Option<String>,
        /// Run for this many seconds (default 10).
        #[arg(long, conflicts_with = "cases")]
        time: Option<f64>,
        /// Run this many cases.
        #[arg(long)]
        cases: Option<u64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// K/N: run only case numbers n with n mod N = K (with --cases M, those
        /// below M). `auto` (or `auto/N`): K and N from a Kubernetes Indexed Job
        /// (JOB_COMPLETION_INDEX; N from auto/N or XSDIFF_SHARDS) or a Slurm job
        /// array (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _STEP, _COUNT).
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// Threads (default: the number of CPUs; 1 with `native`, whose runs are
        /// serialised in the process and whose page-protection changes cost
        /// cross-CPU TLB shootdowns when another thread runs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Folder for the findings: one minimized case per new rule a backend
        /// breaks (its other instructions listed in it); known ones are not written. The
        /// summary is written there too, as summary.json (for `xsdiff merge`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --out: also write one case per kind of latitude taken inside the envelope.
        #[arg(long, requires = "out")]
        out_inside: bool,
        /// Also write the report as Markdown to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The corpus whose regressions/, ring0/ and silicon/ hold the known
        /// findings (default: ./corpus, else the corpus of the source tree).
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Ask Linux for AMX permission first (arch_prctl ARCH_REQ_XCOMP_PERM):
        /// XFD is then disarmed and cases hold TILEDATA in their initial image.
        #[arg(long)]
        amx: bool,
    },
    /// Merge the outputs of a campaign's shards (run --out folders or JSON
    /// summaries) into OUT: summary.json, summary.txt, summary.md and the
    /// smallest finding of each new signature (exit 0: no mismatch, 1: mismatches, 2: error).
    Merge {
        out: PathBuf,
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The corpus whose known findings decide known or new (default: as for run).
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run case files and check their expect sections and records (exit 0 pass, 1 mismatch, 2 error, 3 not checked: no check ran).
    Repro {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_delimiter = ',')]
        backends: Option<Vec<String>>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Shrink a mismatching case file while its mismatch keeps its signature.
    Minimize {
        file: PathBuf,
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        #[arg(long, value_delimiter = ',')]
        backends: Option<Vec<String>>,
    },
    /// Print a case decoded and disassembled.
    Show { file: PathBuf },
    /// Standard and compacted offsets and sizes of a component mask.
    Layout {
        #[arg(long, default_value = "host")]
        cpu: String,
        /// Component mask (default: the model's XCR0 | IA32_XSS).
        #[arg(long)]
        mask: Option<String>,
    },
    /// Every field name a case file may use on a model: its place (image offset
    /// and size, MSR, supervisor state offset) and the sections it may appear in.
    Fields {
        #[arg(long, default_value = "host")]
        cpu: String,
        /// The Markdown of diff/CASE-FIELDS.md instead of text.
        #[arg(long)]
        markdown: bool,
    },
    /// The built-in CPU models; with --host, this CPU's model.
    Cpus {
        #[arg(long)]
        host: bool,
    },
    /// Convert a libFuzzer artifact into a case file.
    Import {
        artifact: PathBuf,
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// The model whose control state the case runs under.
        #[arg(long, default_value = "host")]
        cpu: String,
    },
    /// The SDM rules the envelope judges by, and the latitude it grants.
    Rules {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run case files on this CPU and add (or check) this CPU model's record.
    Record {
        files: Vec<PathBuf>,
        /// Also write an [expect] section from this CPU's outcome where the file has none.
        #[arg(long)]
        expect: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cmd = cli.cmd.unwrap_or(Cmd::Run {
        backends: vec!["emu".into(), "native".into()],
        cpu: None,
        time: None,
        cases: None,
        seed: 1,
        shard: "0/1".into(),
        jobs: None,
        out: None,
        out_inside: false,
        report: None,
        corpus: None,
        format: Format::Text,
        amx: false,
    });
    match dispatch(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xsdiff: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Run {
            backends,
            cpu,
            time,
            cases,
            seed,
            shard,
            jobs,
            out,
            out_inside,
            report,
            corpus,
            format,
            amx,
        } => {
            if amx {
                xsave_native::host::request_amx_permission()?;
            }
            let limit = match (time, cases) {
                (_, Some(n)) => Limit::Cases(n),
                (Some(t), None) => Limit::Time(Duration::from_secs_f64(t.max(0.0))),
                (None, None) => Limit::Time(Duration::from_secs(10)),
            };
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let cfg = Config {
                backends,
                cpu,
                limit,
                seed,
                shard: xsave_diff::shard::parse(&shard, |v| std::env::var(v).ok())?,
                jobs,
                out: out.clone(),
                out_inside,
                progress: true,
                minimize_budget: 400,
                corpus,
                stop: Some(xsave_diff::interrupt::flag()?),
            };
            let s = campaign::run(&cfg)?;
            // The report first (a file), then the summary: an interrupted run
            // still leaves both.
            if let Some(p) = &report {
                let md = xsave_diff::report::markdown(&s.title(), &s.report);
                write_atomic(p, &md).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            if let Some(d) = &out {
                let p = d.join(xsave_diff::merge::SUMMARY_FILE);
                let json = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
                write_atomic(&p, &format!("{json}\n"))
                    .map_err(|e| format!("{}: {e}", p.display()))?;
            }
            match format {
                Format::Text => print!("{}", s.text()),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
                ),
            }
            Ok(if s.mismatches == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Merge {
            out,
            inputs,
            corpus,
            format,
        } => {
            let inputs: Vec<merge::Input> = inputs
                .iter()
                .map(|p| merge::read_input(p))
                .collect::<Result<_, _>>()?;
            let mut known = match corpus.or_else(xsave_diff::known::default_corpus) {
                Some(c) => xsave_diff::known::Known::load(&c)?,
                None => xsave_diff::known::Known::default(),
            };
            merge::charge_known(&mut known);
            let m = merge::merge(&out, &inputs, &known)?;
            match format {
                Format::Text => print!("{}", merge::text(&m, inputs.len())),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&m).map_err(|e| e.to_string())?
                ),
            }
            Ok(if m.mismatches == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Repro {
            files,
            backends,
            format,
        } => {
            let reports: Vec<repro::FileReport> = files
                .iter()
                .map(|f| repro::repro_file(f, backends.as_deref()))
                .collect();
            let summary = repro::Summary::of(&reports);
            match format {
                Format::Text => {
                    reports.iter().for_each(|r| print!("{}", r.text()));
                    print!("{}", summary.text());
                }
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?
                ),
            }
            Ok(ExitCode::from(summary.exit_status()))
        }
        Cmd::Rules { format } => {
            print!("{}", rules_text(format)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Minimize {
            file,
            out,
            backends,
        } => minimize_cmd(&file, out.as_deref(), backends.as_deref()),
        Cmd::Show { file } => {
            let cf = CaseFile::load(&file).map_err(|e| e.to_string())?;
            let model = repro::file_model(&cf)?;
            let case = cf.build(&model).map_err(|e| e.to_string())?;
            println!("{}: model {} ({})", file.display(), cf.model, model.name);
            let x = case.init_xcomp_bv();
            // Every flag that differs from a Linux user process's (CR4.OSXSAVE = 0 included).
            let d = xsave_emu::Control::user(&model);
            let c = &case.control;
            let mut flags = String::new();
            for (k, a, b) in [
                ("CR0.TS", c.cr0_ts, d.cr0_ts),
                ("CR0.EM", c.cr0_em, d.cr0_em),
                ("CR0.AM", c.cr0_am, d.cr0_am),
                ("CR4.OSXSAVE", c.cr4_osxsave, d.cr4_osxsave),
                ("CR4.OSFXSR", c.cr4_osfxsr, d.cr4_osfxsr),
                ("EFLAGS.AC", c.eflags_ac, d.eflags_ac),
                ("VMX non-root", c.vmx_nonroot, d.vmx_nonroot),
            ] {
                if a != b {
                    flags.push_str(&format!(", {k} = {}", a as u8));
                }
            }
            println!(
                "control: XCR0 {:#x} ({}), IA32_XSS {:#x}, IA32_XFD {:#x}, CPL {}{flags}",
                c.xcr0,
                Xfeatures::from_bits_retain(c.xcr0).names(),
                c.xss,
                c.xfd,
                c.cpl
            );
            println!(
                "initial image: {} format, {} bytes, XSTATE_BV {:#x} ({}), XCOMP_BV {:#x}",
                if x >> 63 == 1 {
                    "compacted"
                } else {
                    "standard"
                },
                case.init.len(),
                case.init_xstate_bv(),
                Xfeatures::from_bits_retain(case.init_xstate_bv()).names(),
                x
            );
            println!(
                "arena: {} page(s) at {:#x}",
                case.memory.prot.len(),
                case.memory.base
            );
            println!("code:");
            let mut off = 0;
            for (b, s) in casefile::disassemble(&case.code) {
                let bytes: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
                println!("  code+{off:#04x}  {:<24} {s}", bytes.join(" "));
                off += b.len();
            }
            println!(
                "\nnormalized:\n{}",
                casefile::write_case_meta(&cf.comments, &cf.model, &cf.meta, &model, &case)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fields { cpu, markdown } => {
            let model = models::resolve(&cpu)?;
            if markdown {
                print!("{}", xsave_diff::fields::markdown(&model));
            } else {
                print!("{}", xsave_diff::fields::text(&model));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Layout { cpu, mask } => {
            let model = models::resolve(&cpu)?;
            let mask = match mask {
                Some(m) => {
                    xsave_emu::model::parse_u64(&m).ok_or_else(|| format!("bad --mask `{m}`"))?
                }
                None => model.os_xcr0 | model.os_xss,
            };
            print!("{}", layout_text(&model, mask));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cpus { host } => {
            if host {
                let h = models::resolve("host")?;
                println!("host: {} ({})", h.name, h.description);
                println!(
                    "  vendor {:?}, XCR0 {:#x}, IA32_XSS {:#x}, IA32_XFD {:#x}, standard size {}, MXCSR_MASK {:#x}",
                    h.vendor, h.os_xcr0, h.os_xss, h.os_xfd, h.std_size_max, h.mxcsr_mask
                );
                match CpuModel::builtin(&h.name) {
                    Some(b) => {
                        let d = h.differences(&b);
                        if d.is_empty() {
                            println!("  matches the built-in model {}", b.name);
                        } else {
                            println!(
                                "  differs from the built-in model {}: {}",
                                b.name,
                                d.join("; ")
                            );
                        }
                    }
                    None => println!("  no built-in model matches"),
                }
            } else {
                for m in CpuModel::builtin_all() {
                    println!(
                        "{:<18} XCR0 {:#8x}  XSS {:#6x}  {}",
                        m.name, m.os_xcr0, m.os_xss, m.description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import { artifact, out, cpu } => {
            let data =
                std::fs::read(&artifact).map_err(|e| format!("{}: {e}", artifact.display()))?;
            let model = models::resolve(&cpu)?;
            let f = FuzzCase::from_bytes(&data);
            let case = f.to_case(&model, xsave_emu::Control::user(&model));
            let name = if CpuModel::builtin(&model.name).is_some() && cpu != "host" {
                model.name.clone()
            } else {
                "host".into()
            };
            let text = casefile::write_case(
                &[format!(
                    "Imported from the libFuzzer artifact {}.",
                    artifact.display()
                )],
                &name,
                &model,
                &case,
            );
            write_atomic(&out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Record { files, expect } => record_cmd(&files, expect),
    }
}

fn layout_text(model: &CpuModel, mask: u64) -> String {
    let x = Xfeatures::from_bits_retain(mask);
    let mut s = format!("model {}, mask {mask:#x} ({})\n", model.name, x.names());
    let std = layout::standard(model, x);
    s.push_str("standard format (user components):\n");
    s.push_str("  component          offset   size\n");
    s.push_str("  0  x87+SSE legacy       0    512\n  header               512     64\n");
    for sl in &std.slots {
        let n = xsave_emu::component::component_name(sl.index).unwrap_or("?");
        s.push_str(&format!(
            "  {:<2} {:<16} {:>6} {:>6}\n",
            sl.index, n, sl.offset, sl.size
        ));
    }
    s.push_str(&format!("  standard size {}\n", std.size));
    let c = layout::compacted(model, x);
    s.push_str("compacted format:\n  component          offset   size\n");
    for sl in &c.slots {
        let n = xsave_emu::component::component_name(sl.index).unwrap_or("?");
        s.push_str(&format!(
            "  {:<2} {:<16} {:>6} {:>6}\n",
            sl.index, n, sl.offset, sl.size
        ));
    }
    s.push_str(&format!("  compacted size {}\n", c.size));
    s
}

fn minimize_cmd(
    file: &Path,
    out: Option<&Path>,
    specs: Option<&[String]>,
) -> Result<ExitCode, String> {
    let cf = CaseFile::load(file).map_err(|e| e.to_string())?;
    let model = repro::file_model(&cf)?;
    let case = cf.build(&model).map_err(|e| e.to_string())?;
    let specs: Vec<String> = match specs {
        Some(s) => s.to_vec(),
        None => vec![format!("emu:{}", model.name), "native".into()],
    };
    let mut rig = if cf.model == "host" {
        campaign::open_rig(&specs, Some("host"))?
    } else {
        campaign::open_rig(&specs, Some(&cf.model))?
    };
    let outs = campaign::run_all(&mut rig, &case)
        .map_err(|s| format!("{}: skipped: {s}", file.display()))?;
    let judge = rig.judge.clone();
    for bi in 1..outs.len() {
        let cmp = xsave_diff::compare::compare(&judge, &case, &outs[0], &outs[bi]);
        if cmp.is_match() {
            continue;
        }
        let name = rig.backends[bi].name();
        let j = xsave_diff::signature::judge(&judge, &case, &cmp, &outs[bi]);
        let insn = xsave_diff::signature::instruction(&case, &outs[0], &outs[bi]);
        let (goal, what) = match &j {
            xsave_diff::signature::Judgement::Breaks { .. } => {
                let sig = xsave_diff::signature::signatures(&name, &j, &case, &insn).remove(0);
                let what = format!("breaks {} on {}", sig.rule, sig.instruction);
                (Goal::Rule(sig), what)
            }
            xsave_diff::signature::Judgement::Latitude { taken } => (
                Goal::Latitude(taken[0].clone()),
                format!("takes the latitude `{}`", taken[0]),
            ),
            xsave_diff::signature::Judgement::Unjudged { reason } => {
                return Err(format!(
                    "{}: the envelope cannot judge it: {reason}",
                    file.display()
                ))
            }
        };
        let m = campaign::minimize_case(&mut rig, bi, &case, &goal, 2000, None);
        let min = m.current().clone();
        let outs = campaign::run_all(&mut rig, &min)
            .map_err(|s| format!("{}: the minimized case is skipped: {s}", file.display()))?;
        let target = xsave_diff::known::backend_target(&name);
        let backend_model = rig.backends[bi]
            .is_real()
            .then(|| rig.backends[bi].model().clone());
        let f = Finding {
            reference: &rig.backends[0].name(),
            backend: &name,
            backend_model: backend_model.as_ref(),
            target: target.as_ref(),
            header: vec![
                format!("Finding: {name} {what}."),
                format!(
                    "Minimized from {} ({} candidates in {} batches).",
                    file.display(),
                    m.tried,
                    m.rounds
                ),
            ],
        };
        let text = finding::text(&f, &judge, &min, &outs[0], &outs[bi]);
        match out {
            Some(p) => write_atomic(p, &text).map_err(|e| format!("{}: {e}", p.display()))?,
            None => print!("{text}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    Err(format!(
        "{}: no mismatch between {} to minimize",
        file.display(),
        specs.join(" and ")
    ))
}

fn record_cmd(files: &[PathBuf], with_expect: bool) -> Result<ExitCode, String> {
    let host = models::resolve("host")?;
    let mut runner = xsave_diff::backend::native::NativeBackend::new()?;
    let mut bad = false;
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let cf = CaseFile::parse(&text, &f.display().to_string()).map_err(|e| e.to_string())?;
        let model = if cf.model == "host" {
            host.clone()
        } else {
            repro::file_model(&cf)?
        };
        let case = cf.build(&model).map_err(|e| e.to_string())?;
        use xsave_diff::backend::Backend;
        let o = match runner.run(&case) {
            Ok(o) => o,
            Err(s) => {
                println!("SKIP {} ({s})", f.display());
                continue;
            }
        };
        let mut text = text;
        if with_expect && cf.expect.is_none() {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&casefile::write_outcome("expect", &model, &case, &o));
            write_atomic(f, &text).map_err(|e| format!("{}: {e}", f.display()))?;
            println!("EXPECT {} (from {})", f.display(), host.name);
        }
        if let Some((_, sec)) = cf.records.iter().find(|(n, _)| *n == host.name) {
            let exp = cf.expected(sec, &host, &case).map_err(|e| e.to_string())?;
            let e = exp.against(&o);
            let cmp = xsave_diff::compare::compare(&host, &case, &e, &o);
            if cmp.is_match() {
                println!("CHECKED {} (record {} holds)", f.display(), host.name);
            } else {
                bad = true;
                println!("DIFFERS {} (record {}):", f.display(), host.name);
                print!("{}", xsave_diff::compare::render(&cmp, "record", "now"));
            }
        } else {
            let mut t = text.clone();
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&casefile::write_outcome(
                &format!("record {}", host.name),
                &host,
                &case,
                &o,
            ));
            write_atomic(f, &t).map_err(|e| format!("{}: {e}", f.display()))?;
            println!("RECORDED {} ({})", f.display(), host.name);
        }
    }
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `xsdiff rules`: every rule (id, sentence, citation), then every latitude.
fn rules_text(format: Format) -> Result<String, String> {
    let rules = xsave_emu::RULES
        .iter()
        .map(|r| (r.id, r.sentence, r.citation));
    let lats = xsave_emu::LATITUDES
        .iter()
        .map(|l| (l.id, l.sentence, l.citation));
    match format {
        Format::Json => {
            let obj = |(id, sentence, citation): (&str, &str, &str)| serde_json::json!({ "id": id, "sentence": sentence, "citation": citation });
            let v = serde_json::json!({
                "rules": rules.map(obj).collect::<Vec<_>>(),
                "latitude": lats.map(obj).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string())
        }
        Format::Text => {
            let mut s = format!("Rules ({}):\n", xsave_emu::RULES.len());
            for (id, sentence, citation) in rules {
                s += &format!("{id}\n    {sentence}\n    [{citation}]\n");
            }
            s += &format!("\nLatitude ({}):\n", xsave_emu::LATITUDES.len());
            for (id, sentence, citation) in lats {
                s += &format!("{id}\n    {sentence}\n    [{citation}]\n");
            }
            Ok(s)
        }
    }
}
