//! A campaign split over shard processes (`--shard auto` under a Slurm job
//! array's variables) and merged with `xsdiff merge` gives the signatures and
//! counts of one run of the same cases. Two emulator models as the backends
//! (unicorn-haswell as the reference, xeon-amx-vm judged against it), so the
//! test is quick, deterministic and the same on any host.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BACKENDS: &str = "emu:unicorn-haswell,emu:xeon-amx-vm";
const CASES: u64 = 3000;
const SHARDS: u64 = 4;

/// Every variable `--shard auto` reads, cleared so that a test run inside a
/// Kubernetes pod or a Slurm job sees only what the test sets.
const ENGINE_VARS: [&str; 7] = [
    "JOB_COMPLETION_INDEX",
    "XSDIFF_SHARDS",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
];

fn xsdiff(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xsdiff"));
    c.args(args);
    for v in ENGINE_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run_args<'a>(out: &'a str, shard: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--backends",
        BACKENDS,
        "--cases",
        "3000",
        "--seed",
        "7",
        "--jobs",
        "1",
        "--shard",
        shard,
        "--out",
        out,
        "--format",
        "json",
    ]
}

fn check(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn summary(dir: &Path) -> Value {
    let p = dir.join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// What must not depend on the split: per backend, the counts outside and
/// inside the envelope, every (rule, instruction) with its count and status,
/// the latitude and the unjudged counts.
fn signatures(s: &Value) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for r in s["report"].as_array().unwrap() {
        let b = r["backend"].as_str().unwrap();
        m.insert(format!("{b} outside"), r["outside"].clone());
        m.insert(format!("{b} inside"), r["inside"].clone());
        m.insert(format!("{b} unjudged"), r["unjudged"].clone());
        for row in r["rules"].as_array().unwrap() {
            for i in row["instructions"].as_array().unwrap() {
                m.insert(
                    format!("{b}: {} on {}", row["rule"], i["instruction"]),
                    serde_json::json!([i["count"], i["status"]]),
                );
            }
        }
        for l in r["latitude"].as_array().unwrap() {
            m.insert(
                format!("{b} latitude {}", l["latitude"]),
                l["count"].clone(),
            );
        }
    }
    m
}

fn case_file_of(example: &Value) -> PathBuf {
    PathBuf::from(example.as_str().unwrap())
}

#[test]
fn four_slurm_shards_merged_equal_one_run() {
    let dir = std::env::temp_dir().join(format!("xsdiff-split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = |s: &str| dir.join(s).display().to_string();

    // The shards as a job array `sbatch --array=0-3` runs them, at once; the
    // single run beside them.
    let single_out = d("single");
    let mut procs: Vec<_> = (0..SHARDS)
        .map(|k| {
            let env = [
                ("SLURM_ARRAY_TASK_ID", k.to_string()),
                ("SLURM_ARRAY_TASK_MIN", "0".to_string()),
                ("SLURM_ARRAY_TASK_MAX", (SHARDS - 1).to_string()),
                ("SLURM_ARRAY_TASK_COUNT", SHARDS.to_string()),
            ];
            let out = d(&format!("shard-{k}"));
            xsdiff(&run_args(&out, "auto"), &env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .unwrap();
    let single = xsdiff(&run_args(&single_out, "0/1"), &[]).output().unwrap();
    let mut procs: Vec<Output> = procs
        .drain(..)
        .map(|p| p.wait_with_output().unwrap())
        .collect();
    // Exit 1: mismatches were found (the two models differ).
    check(&single, 1);
    for (k, p) in procs.iter().enumerate() {
        check(p, 1);
        let s = summary(&dir.join(format!("shard-{k}")));
        assert_eq!(s["shard"], format!("{k}/{SHARDS}"));
        // 3000 cases: 750 per shard.
        assert_eq!(s["generated"], CASES / SHARDS);
        // The summary on stdout is the one written beside the findings.
        let stdout: Value = serde_json::from_slice(&p.stdout).unwrap();
        assert_eq!(stdout["report"], s["report"]);
        // `run --format json > FILE` is an input of merge too.
        std::fs::write(dir.join(format!("shard-{k}.json")), &p.stdout).unwrap();
    }
    procs.clear();

    let mut args = vec!["merge".to_string(), d("merged")];
    args.extend((0..SHARDS).map(|k| d(&format!("shard-{k}"))));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let merged = xsdiff(&args, &[]).output().unwrap();
    check(&merged, 1);

    let one = summary(Path::new(&single_out));
    let m = summary(&dir.join("merged"));
    assert_eq!(m["shard"], "0,1,2,3/4");
    assert_eq!(one["generated"], CASES);
    assert_eq!(m["generated"], CASES);
    for k in [
        "cases",
        "mismatches",
        "skipped",
        "backends",
        "model",
        "seed",
    ] {
        assert_eq!(m[k], one[k], "{k}");
    }
    let (sm, so) = (signatures(&m), signatures(&one));
    assert_eq!(sm, so);
    // Not an empty comparison: the models differ on several rules and
    // instructions, and every case is compared or skipped.
    let sigs = sm.keys().filter(|k| k.contains(" on ")).count();
    assert!(sigs >= 5, "{sm:#?}");
    assert!(one["mismatches"].as_u64().unwrap() > 100, "{one}");
    assert_eq!(
        one["cases"].as_u64().unwrap()
            + one["skipped"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>(),
        CASES
    );

    // Each new rule keeps one finding (a run writes one per rule, named after
    // it), copied into the merged folder: the smallest of the shards' (by
    // lines, then bytes of its case); the rule's signatures that had a file
    // name it, the others their `seed S case N`.
    let rules = m["report"][0]["rules"].as_array().unwrap();
    let mut kept = 0;
    for row in rules {
        let files: BTreeSet<PathBuf> = row["instructions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| case_file_of(&i["example"]))
            .filter(|p| p.extension().is_some_and(|x| x == "case"))
            .collect();
        assert_eq!(files.len(), 1, "{row}");
        let f = files.into_iter().next().unwrap();
        assert_eq!(f.parent().unwrap(), dir.join("merged"), "{f:?}");
        assert!(
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!("-{}.case", row["rule"].as_str().unwrap())),
            "{f:?}"
        );
        let size = xsave_diff::merge::case_size(&f).unwrap();
        let name = f.file_name().unwrap();
        let shard_sizes: Vec<_> = (0..SHARDS)
            .filter_map(|k| {
                xsave_diff::merge::case_size(&dir.join(format!("shard-{k}")).join(name))
            })
            .collect();
        assert!(!shard_sizes.is_empty(), "{f:?}");
        assert_eq!(size, *shard_sizes.iter().min().unwrap(), "{f:?}");
        kept += 1;
    }
    assert!(kept >= 2, "{rules:#?}");
    assert_eq!(m["findings"].as_array().unwrap().len(), kept);
    // The single run wrote one file per new rule too.
    assert_eq!(one["findings"].as_array().unwrap().len(), kept);

    let txt = std::fs::read_to_string(dir.join("merged/summary.txt")).unwrap();
    assert!(
        txt.starts_with("merged 4 outputs: shards 0,1,2,3/4; seconds are summed over the shards\n3000 cases in "),
        "{txt}"
    );
    assert_eq!(txt, String::from_utf8_lossy(&merged.stdout));
    let md = std::fs::read_to_string(dir.join("merged/summary.md")).unwrap();
    assert!(
        md.starts_with("# xsdiff run: emu:xeon-amx-vm against emu:unicorn-haswell (model unicorn-haswell), seed 7, shard 0,1,2,3/4 (merged from 4 outputs)\n\n## emu:xeon-amx-vm\n"),
        "{md}"
    );

    // The printed JSON summaries merge the same, their findings found where
    // the runs wrote them.
    let mut args = vec!["merge".to_string(), d("from-json")];
    args.extend((0..SHARDS).map(|k| d(&format!("shard-{k}.json"))));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    check(&xsdiff(&args, &[]).output().unwrap(), 1);
    let j = summary(&dir.join("from-json"));
    assert_eq!(signatures(&j), so);
    assert_eq!(j["findings"].as_array().unwrap().len(), kept);

    // A merged output merges again; missing shards are named.
    let again = xsdiff(&["merge", &d("again"), &d("merged")], &[])
        .output()
        .unwrap();
    check(&again, 1);
    assert_eq!(signatures(&summary(&dir.join("again"))), so);
    let part = xsdiff(&["merge", &d("part"), &d("shard-0"), &d("shard-2")], &[])
        .output()
        .unwrap();
    check(&part, 1);
    let txt = String::from_utf8_lossy(&part.stdout);
    assert!(
        txt.starts_with("merged 2 outputs: shards 0,2/4; seconds are summed over the shards\nmissing shards: 1, 3 of 4: the summary covers part of the campaign\n1500 cases in "),
        "{txt}"
    );

    // Not shards of one campaign: refused, nothing written.
    let bad = xsdiff(&["merge", &d("bad"), &d("shard-0"), &single_out], &[])
        .output()
        .unwrap();
    check(&bad, 2);
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        format!(
            "xsdiff: {} and {}: not shards of one campaign (shard count 4 vs 1)\n",
            d("shard-0"),
            single_out
        )
    );
    let twice = xsdiff(&["merge", &d("bad"), &d("shard-1"), &d("merged")], &[])
        .output()
        .unwrap();
    check(&twice, 2);
    assert_eq!(
        String::from_utf8_lossy(&twice.stderr),
        format!(
            "xsdiff: shard 1/4 is in both {} and {}\n",
            d("shard-1"),
            d("merged")
        )
    );
    assert!(!dir.join("bad").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shard_auto_without_an_engine_names_the_variables() {
    let o = xsdiff(
        &[
            "run",
            "--backends",
            BACKENDS,
            "--cases",
            "1",
            "--shard",
            "auto",
        ],
        &[],
    )
    .output()
    .unwrap();
    check(&o, 2);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "xsdiff: --shard auto: no batch engine in the environment; looked for \
         JOB_COMPLETION_INDEX (Kubernetes Indexed Job, with XSDIFF_SHARDS or --shard auto/N), \
         SLURM_ARRAY_TASK_ID (Slurm job array, with SLURM_ARRAY_TASK_MIN/SLURM_ARRAY_TASK_MAX \
         or SLURM_ARRAY_TASK_COUNT)\n"
    );
    // A Kubernetes Indexed Job's pod: K from the index, N from the option.
    let o = xsdiff(
        &[
            "run",
            "--backends",
            BACKENDS,
            "--cases",
            "10",
            "--shard",
            "auto/4",
            "--format",
            "json",
        ],
        &[("JOB_COMPLETION_INDEX", "1".to_string())],
    )
    .output()
    .unwrap();
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["shard"], "1/4");
    // Cases 1, 5, 9 of 10.
    assert_eq!(s["generated"], 3);
}
