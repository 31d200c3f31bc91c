//! Repeatability (issue 3 item 5): every agreement case, run many times on this
//! CPU, gives one outcome. Where the model declares XINUSE noise (`xinuse-noise`,
//! AMD), XINUSE and XSTATE_BV bits of components in init configuration may differ
//! between runs as long as the envelope admits each run; every other field must
//! be identical. Runs per case: XSAVE_REPEAT (default 1000). Each run is the
//! runner's confirmed outcome (two consecutive clean runs agree); the count of
//! unconfirmed runs is printed.

mod common;
#[macro_use]
mod cases;

use common::*;
use std::time::Instant;

fn runs() -> usize {
    std::env::var("XSAVE_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

macro_rules! repeat_all {
    ($($name:ident),* $(,)?) => {
        #[test]
        fn every_agreement_case_gives_one_outcome() {
            let n = runs();
            let start = Instant::now();
            let m = model();
            let mut total = 0usize;
            $(
                if let Some((c, _)) = cases::$name() {
                    let first = runner()
                        .run(&c)
                        .unwrap_or_else(|r| panic!("{}: refused: {r}", stringify!($name)));
                    for k in 1..n {
                        let o = runner().run(&c).unwrap_or_else(|r| {
                            panic!("{}: run {k} refused: {r}", stringify!($name))
                        });
                        let d = real_differences(&m, &c, &first, &o);
                        assert!(
                            d.is_empty(),
                            "{}: run {k} differs from run 0:\n  {}",
                            stringify!($name),
                            d.join("\n  ")
                        );
                    }
                    total += n;
                }
            )*
            let (reruns, unsteady) = {
                let r = runner();
                (r.reruns, r.unsteady)
            };
            println!(
                "{total} confirmed runs in {:.1} s; {reruns} reruns after a context switch, {unsteady} unconfirmed runs",
                start.elapsed().as_secs_f64()
            );
        }
    };
}

all_case_names!(repeat_all);
