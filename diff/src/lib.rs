//! xsave-diff: case files, backends, comparison, generation, minimization and
//! campaigns; the library behind the `xsdiff` command.

pub mod assemble;
pub mod backend;
pub mod campaign;
pub mod casefile;
pub mod compare;
pub mod encode;
pub mod fields;
pub mod finding;
pub mod fuzzcase;
pub mod generate;
pub mod interrupt;
pub mod known;
pub mod merge;
pub mod minimize;
pub mod models;
pub mod report;
pub mod repro;
pub mod rng;
pub mod shard;
pub mod signature;
