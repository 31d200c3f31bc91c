//! The hardware agreement suite: each case (tests/cases/mod.rs) is a rule of the
//! SDM or a question about this silicon, run on this CPU and through xsave-emu
//! with the host model. They must agree exactly (a field-level diff is printed
//! otherwise), the envelope must admit the hardware's outcome, and each case's
//! own expected facts must hold. Sizes and offsets come from the host model
//! (CPUID), never from one CPU; cases of one vendor's features are skipped on
//! the other with a printed reason.

mod common;
#[macro_use]
mod cases;

macro_rules! agreement_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some((c, check)) = cases::$name() {
                    let o = common::agree(stringify!($name), &c);
                    check(&o);
                }
            }
        )*
        #[test]
        fn suite_has_at_least_sixty_cases() {
            let n = [$(stringify!($name)),*].len();
            assert!(n >= 60, "{n} cases");
        }
    };
}

all_case_names!(agreement_tests);
