//! Which shard of a campaign this process runs: `--shard K/N` as given, or
//! `--shard auto` (`auto/N`) read from the batch engine that started it.
//!
//! - Kubernetes Indexed Job: K = `JOB_COMPLETION_INDEX`; N from `auto/N` or
//!   from [`SHARDS_VAR`] (Kubernetes does not pass the Job's `completions` to
//!   its pods, so the manifest sets one of the two to the same number).
//! - Slurm job array: K = (`SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN`) /
//!   `SLURM_ARRAY_TASK_STEP`; N = `SLURM_ARRAY_TASK_COUNT`, or (MAX - MIN) /
//!   STEP + 1. An array that is not one range (`--array=1,4,9`) is refused:
//!   its task ids do not number the shards 0..N.
//!
//! A campaign of `--cases M` split into N shards runs case n < M in shard
//! n mod N ([`cases_in`]), so the shards together run exactly the cases of
//! one run of M.

/// The variable that gives N beside `JOB_COMPLETION_INDEX`.
pub const SHARDS_VAR: &str = "XSDIFF_SHARDS";

/// Every variable `auto` reads, for the error when none is set.
const LOOKED_FOR: &str = "JOB_COMPLETION_INDEX (Kubernetes Indexed Job, with XSDIFF_SHARDS or --shard auto/N), \
SLURM_ARRAY_TASK_ID (Slurm job array, with SLURM_ARRAY_TASK_MIN/SLURM_ARRAY_TASK_MAX or SLURM_ARRAY_TASK_COUNT)";

fn number(what: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("--shard auto: {what}=`{v}` is not a non-negative integer"))
}

/// The shard `spec` names (`K/N`, `auto`, `auto/N`), reading the environment
/// through `env` for `auto`. Returns (K, N) with K < N.
pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<(u64, u64), String> {
    let bad = || format!("bad --shard `{spec}`: expected K/N, auto or auto/N");
    let (k, n) = match spec.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (spec, None),
    };
    let n: Option<u64> = n.map(|n| n.parse().map_err(|_| bad())).transpose()?;
    let (k, n) = if k == "auto" {
        auto(n, &env)?
    } else {
        let k: u64 = k.parse().map_err(|_| bad())?;
        (k, n.ok_or_else(bad)?)
    };
    if n == 0 || k >= n {
        return Err(format!(
            "bad --shard `{spec}`: shard {k} of {n} (K must be below N)"
        ));
    }
    Ok((k, n))
}

fn auto(given_n: Option<u64>, env: &impl Fn(&str) -> Option<String>) -> Result<(u64, u64), String> {
    let kube = env("JOB_COMPLETION_INDEX");
    let slurm = env("SLURM_ARRAY_TASK_ID");
    let agree = |n: u64, source: &str| -> Result<u64, String> {
        match given_n {
            Some(g) if g != n => Err(format!(
                "--shard auto/{g}: {source} says there are {n} shards"
            )),
            _ => Ok(n),
        }
    };
    match (kube, slurm) {
        (Some(_), Some(_)) => Err(
            "--shard auto: both JOB_COMPLETION_INDEX (Kubernetes) and SLURM_ARRAY_TASK_ID (Slurm) are set; give --shard K/N"
                .into(),
        ),
        (Some(i), None) => {
            let k = number("JOB_COMPLETION_INDEX", &i)?;
            let from_var = env(SHARDS_VAR)
                .map(|v| number(SHARDS_VAR, &v))
                .transpose()?;
            let n = match (given_n, from_var) {
                (Some(g), Some(v)) if g != v => {
                    return Err(format!(
                        "--shard auto/{g}: {SHARDS_VAR}={v} says otherwise"
                    ))
                }
                (Some(g), _) => g,
                (None, Some(v)) => v,
                (None, None) => {
                    return Err(format!(
                        "--shard auto: JOB_COMPLETION_INDEX={k} (Kubernetes Indexed Job) gives K but not N: \
                         give --shard auto/N or set {SHARDS_VAR} to the Job's completions"
                    ))
                }
            };
            if k >= n {
                return Err(format!(
                    "--shard auto: JOB_COMPLETION_INDEX={k} is not below N={n}"
                ));
            }
            Ok((k, n))
        }
        (None, Some(id)) => {
            let id = number("SLURM_ARRAY_TASK_ID", &id)?;
            let var = |name: &str| env(name).map(|v| number(name, &v)).transpose();
            let min = var("SLURM_ARRAY_TASK_MIN")?;
            let max = var("SLURM_ARRAY_TASK_MAX")?;
            let count = var("SLURM_ARRAY_TASK_COUNT")?;
            let step = var("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
            if step == 0 {
                return Err("--shard auto: SLURM_ARRAY_TASK_STEP=0".into());
            }
            let from_range = match (min, max) {
                (Some(lo), Some(hi)) if hi >= lo => Some((hi - lo) / step + 1),
                (Some(lo), Some(hi)) => {
                    return Err(format!(
                        "--shard auto: SLURM_ARRAY_TASK_MAX={hi} is below SLURM_ARRAY_TASK_MIN={lo}"
                    ))
                }
                _ => None,
            };
            let n = match (count, from_range) {
                (Some(c), Some(r)) if c != r => {
                    return Err(format!(
                        "--shard auto: the Slurm array is not one range (SLURM_ARRAY_TASK_COUNT={c}, \
                         but MIN..MAX by STEP {step} holds {r} ids): its task ids do not number shards 0..N; \
                         use --array=0-{} or --shard K/N",
                        c - 1
                    ))
                }
                (Some(c), _) => c,
                (None, Some(r)) => r,
                (None, None) => {
                    return Err(
                        "--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT \
                         nor SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX"
                            .into(),
                    )
                }
            };
            let lo = min.unwrap_or(0);
            if id < lo || (id - lo) % step != 0 {
                return Err(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} is not MIN {lo} plus a multiple of STEP {step}"
                ));
            }
            let k = (id - lo) / step;
            if k >= n {
                return Err(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} is task {k}, not below the {n} of the array"
                ));
            }
            Ok((k, agree(n, "the Slurm array")?))
        }
        (None, None) => Err(format!(
            "--shard auto: no batch engine in the environment; looked for {LOOKED_FOR}"
        )),
    }
}

/// How many of the case numbers 0..total fall to shard (K, N): those with
/// n mod N = K.
pub fn cases_in(total: u64, (k, n): (u64, u64)) -> u64 {
    if total > k {
        (total - k).div_ceil(n)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn given_shards_are_checked() {
        assert_eq!(parse("3/8", with(&[])), Ok((3, 8)));
        assert_eq!(
            parse("8/8", with(&[])),
            Err("bad --shard `8/8`: shard 8 of 8 (K must be below N)".into())
        );
        assert_eq!(
            parse("3", with(&[])),
            Err("bad --shard `3`: expected K/N, auto or auto/N".into())
        );
        assert_eq!(
            parse("a/b", with(&[])),
            Err("bad --shard `a/b`: expected K/N, auto or auto/N".into())
        );
    }

    #[test]
    fn kubernetes_index_with_n_from_the_option_or_the_variable() {
        let env = [("JOB_COMPLETION_INDEX", "5")];
        assert_eq!(parse("auto/8", with(&env)), Ok((5, 8)));
        let env2 = [("JOB_COMPLETION_INDEX", "5"), ("XSDIFF_SHARDS", "6")];
        assert_eq!(parse("auto", with(&env2)), Ok((5, 6)));
        assert_eq!(parse("auto/6", with(&env2)), Ok((5, 6)));
        assert_eq!(
            parse("auto/8", with(&env2)),
            Err("--shard auto/8: XSDIFF_SHARDS=6 says otherwise".into())
        );
        assert_eq!(
            parse("auto", with(&env)),
            Err("--shard auto: JOB_COMPLETION_INDEX=5 (Kubernetes Indexed Job) gives K but not N: give --shard auto/N or set XSDIFF_SHARDS to the Job's completions".into())
        );
        assert_eq!(
            parse("auto/5", with(&env)),
            Err("--shard auto: JOB_COMPLETION_INDEX=5 is not below N=5".into())
        );
        assert_eq!(
            parse("auto/5", with(&[("JOB_COMPLETION_INDEX", "x")])),
            Err("--shard auto: JOB_COMPLETION_INDEX=`x` is not a non-negative integer".into())
        );
    }

    #[test]
    fn slurm_array_ranges_number_the_shards_from_zero() {
        // sbatch --array=0-3
        let a = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(parse("auto", with(&a)), Ok((2, 4)));
        assert_eq!(parse("auto/4", with(&a)), Ok((2, 4)));
        assert_eq!(
            parse("auto/5", with(&a)),
            Err("--shard auto/5: the Slurm array says there are 4 shards".into())
        );
        // sbatch --array=1-16:5 (ids 1, 6, 11, 16); MIN/MAX without COUNT.
        let b = [
            ("SLURM_ARRAY_TASK_ID", "11"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "16"),
            ("SLURM_ARRAY_TASK_STEP", "5"),
        ];
        assert_eq!(parse("auto", with(&b)), Ok((2, 4)));
        // COUNT alone: ids from 0.
        let c = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ];
        assert_eq!(parse("auto", with(&c)), Ok((7, 8)));
        // sbatch --array=1,4,9: not one range.
        let d = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(
            parse("auto", with(&d)),
            Err("--shard auto: the Slurm array is not one range (SLURM_ARRAY_TASK_COUNT=3, but MIN..MAX by STEP 1 holds 9 ids): its task ids do not number shards 0..N; use --array=0-2 or --shard K/N".into())
        );
        assert_eq!(
            parse("auto", with(&[("SLURM_ARRAY_TASK_ID", "1")])),
            Err("--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX".into())
        );
    }

    #[test]
    fn no_engine_names_the_variables_looked_for() {
        assert_eq!(
            parse("auto", with(&[])),
            Err("--shard auto: no batch engine in the environment; looked for JOB_COMPLETION_INDEX (Kubernetes Indexed Job, with XSDIFF_SHARDS or --shard auto/N), SLURM_ARRAY_TASK_ID (Slurm job array, with SLURM_ARRAY_TASK_MIN/SLURM_ARRAY_TASK_MAX or SLURM_ARRAY_TASK_COUNT)".into())
        );
        let both = [("JOB_COMPLETION_INDEX", "0"), ("SLURM_ARRAY_TASK_ID", "0")];
        assert_eq!(
            parse("auto/2", with(&both)),
            Err("--shard auto: both JOB_COMPLETION_INDEX (Kubernetes) and SLURM_ARRAY_TASK_ID (Slurm) are set; give --shard K/N".into())
        );
    }

    #[test]
    fn the_shards_of_m_cases_add_up_to_m() {
        assert_eq!(
            (0..4).map(|k| cases_in(10, (k, 4))).collect::<Vec<_>>(),
            [3, 3, 2, 2]
        );
        assert_eq!(cases_in(2, (3, 4)), 0);
        assert_eq!(cases_in(0, (0, 1)), 0);
        for m in [0u64, 1, 7, 1000, 1001] {
            for n in 1..9 {
                assert_eq!((0..n).map(|k| cases_in(m, (k, n))).sum::<u64>(), m);
            }
        }
    }
}
