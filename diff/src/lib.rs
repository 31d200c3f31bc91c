//! xsave-diff: case files, backends, comparison, generation, minimization and
//! campaigns; the library behind the `xsdiff` command.

pub mod casefile;
pub mod fields;
pub mod compare;
pub mod backend;
pub mod models;
