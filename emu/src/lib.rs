//! xsave-emu: an instruction-level model of the x86 XSAVE feature set.
//!
//! A [`Case`] (initial image, arena, code, GPRs, control state) runs on a
//! [`CpuModel`]; [`predict`] gives what that model's silicon does, [`envelope`]
//! and [`check`] what the SDM allows. Pure and deterministic: no I/O.
#![forbid(unsafe_code)]

pub mod amx;
pub mod area;
pub mod arena_bytes;
pub mod case;
pub mod component;
pub mod control;
pub mod decode;
pub mod envelope;
pub mod exec;
pub mod fault;
pub mod foreign_page;
pub mod fxrstor;
pub mod fxsave;
pub mod helpers;
pub mod latitude;
pub mod layout;
pub mod legacy;
pub mod machine;
pub mod memory;
pub mod model;
pub mod non_canonical;
pub mod operand;
pub mod outcome;
pub mod provenance;
pub mod restore;
pub mod reuse;
pub mod rules;
pub mod save;
pub mod state;
pub mod supervisor;
pub mod tile_config;
pub mod writes;
pub mod xgetbv;
pub mod xrstor;
pub mod xrstor_compacted;
pub mod xrstors;
pub mod xsave;
pub mod xsavec;
pub mod xsaveopt;
pub mod xsaves;
pub mod xsetbv;

pub use case::Case;
pub use component::Xfeatures;
pub use control::{Control, Mode};
pub use envelope::{check, envelope, predict, Broken, Field, Judgement};
pub use exec::run;
pub use fault::{Fault, FaultAt};
pub use latitude::{Freedoms, Latitude, LATITUDES};
pub use machine::{Policy, Unsupported};
pub use memory::{Memory, Prot};
pub use model::CpuModel;
pub use outcome::Outcome;
pub use rules::{Rule, RULES};
pub use state::XState;
