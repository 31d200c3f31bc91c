//! deploy/: the Kubernetes manifest parses and its two Jobs agree on N, the
//! volume and the shard folders; the Slurm script passes `bash -n` and, run as
//! the tasks of a job array would run it, writes shard folders that the merge
//! Job's own command merges.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest() -> Vec<Yaml> {
    let p = root().join("deploy/kubernetes/xsdiff.yaml");
    YamlLoader::load_from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn str_of(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

/// The one container of a Job's pod.
fn container(job: &Yaml) -> &Yaml {
    let c = job["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    assert_eq!(c.len(), 1);
    &c[0]
}

fn env_of<'a>(c: &'a Yaml, name: &str) -> Option<&'a str> {
    c["env"]
        .as_vec()?
        .iter()
        .find(|e| str_of(&e["name"]) == name)
        .map(|e| str_of(&e["value"]))
}

/// The container's `sh -c` script.
fn script(c: &Yaml) -> &str {
    let cmd: Vec<&str> = c["command"].as_vec().unwrap().iter().map(str_of).collect();
    assert_eq!(cmd, ["sh", "-c"]);
    let args = c["args"].as_vec().unwrap();
    assert_eq!(args.len(), 1);
    str_of(&args[0])
}

#[test]
fn the_indexed_job_and_the_merge_job_agree() {
    let docs = manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| str_of(&d["kind"])).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Job", "Job"]);
    let (pvc, job, merge) = (&docs[0], &docs[1], &docs[2]);
    assert_eq!(str_of(&job["metadata"]["name"]), "xsdiff");
    assert_eq!(str_of(&merge["metadata"]["name"]), "xsdiff-merge");
    assert_eq!(str_of(&job["spec"]["completionMode"]), "Indexed");
    let n = job["spec"]["completions"].as_i64().unwrap();
    assert_eq!(n, 8);
    assert_eq!(job["spec"]["parallelism"].as_i64(), Some(n));
    let (c, m) = (container(job), container(merge));
    // N reaches both pods, as the number `--shard auto` reads beside the index.
    assert_eq!(env_of(c, "XSDIFF_SHARDS"), Some("8"));
    assert_eq!(env_of(m, "XSDIFF_SHARDS"), Some("8"));
    let run = script(c);
    assert!(run.starts_with("xsdiff run --shard auto "), "{run}");
    assert!(
        run.ends_with(" --out /results/shard-$JOB_COMPLETION_INDEX || [ $? -eq 1 ]"),
        "{run}"
    );
    let merge_script = script(m);
    assert!(
        merge_script.ends_with("xsdiff merge /results/merged /results/shard-* || [ $? -eq 1 ]"),
        "{merge_script}"
    );
    // Both pods mount the claim at /results and never restart in place.
    let claim = str_of(&pvc["metadata"]["name"]);
    for (j, c) in [(job, c), (merge, m)] {
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(str_of(&spec["restartPolicy"]), "Never");
        let vol = &spec["volumes"][0];
        assert_eq!(str_of(&vol["persistentVolumeClaim"]["claimName"]), claim);
        let mount = &c["volumeMounts"][0];
        assert_eq!(str_of(&mount["name"]), str_of(&vol["name"]));
        assert_eq!(str_of(&mount["mountPath"]), "/results");
    }
    let modes: Vec<&str> = pvc["spec"]["accessModes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(modes, ["ReadWriteMany"]);
}

#[test]
fn the_slurm_array_writes_what_the_merge_job_merges() {
    let sbatch = root().join("deploy/slurm/xsdiff.sbatch");
    let o = Command::new("bash")
        .arg("-n")
        .arg(&sbatch)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&sbatch).unwrap();
    let array: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#SBATCH --array="))
        .collect();
    // One range from 0: the task ids are the shard numbers.
    assert_eq!(array, ["0-15"]);

    let dir = std::env::temp_dir().join(format!("xsdiff-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let xsdiff = env!("CARGO_BIN_EXE_xsdiff");
    let task = |vars: &[(&str, String)]| {
        let mut c = Command::new("bash");
        c.arg(&sbatch)
            .current_dir(&dir)
            .env("XSDIFF", xsdiff)
            .env("BACKENDS", "emu:unicorn-haswell,emu:xeon-amx-vm")
            .env("TIME", "0.3")
            .env("SLURM_ARRAY_JOB_ID", "4242")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for v in [
            "JOB_COMPLETION_INDEX",
            "XSDIFF_SHARDS",
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_MAX",
            "SLURM_ARRAY_TASK_STEP",
            "SLURM_ARRAY_TASK_COUNT",
            "RESULTS",
        ] {
            c.env_remove(v);
        }
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    };
    // Outside an array the script says so.
    let o = task(&[]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "SLURM_ARRAY_TASK_ID: run me as a job array: sbatch deploy/slurm/xsdiff.sbatch"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `sbatch --array=0-3`: four tasks at once. Their mismatches (exit 1) are
    // a result: each task ends with 0.
    let tasks: Vec<_> = (0..4)
        .map(|k| {
            task(&[
                ("SLURM_ARRAY_TASK_ID", k.to_string()),
                ("SLURM_ARRAY_TASK_MIN", "0".into()),
                ("SLURM_ARRAY_TASK_MAX", "3".into()),
                ("SLURM_ARRAY_TASK_COUNT", "4".into()),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    for (k, t) in tasks.into_iter().enumerate() {
        let o = t.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "task {k}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(&format!(", shard {k}/4\n")), "{out}");
        assert!(dir
            .join(format!("xsdiff-4242/shard-{k}/summary.json"))
            .is_file());
    }

    // The merge Job's script on these folders (the volume's /results here).
    let results = dir.join("xsdiff-4242");
    let merge_script =
        script(container(&manifest()[2])).replace("/results", results.to_str().unwrap());
    let bin = Path::new(xsdiff).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = Command::new("sh")
        .args(["-c", &merge_script])
        .env("PATH", path)
        .env("XSDIFF_SHARDS", "4")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("merged 4 outputs: shards 0,1,2,3/4; seconds are summed over the shards\n"),
        "{out}"
    );
    for f in ["summary.json", "summary.txt", "summary.md"] {
        assert!(results.join("merged").join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
