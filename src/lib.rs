#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use ca_core;
pub use ca_data;
pub use ca_eval;
pub use ca_hires;
pub use ca_model;
pub use ca_sched;
pub use ca_viz;

pub mod device;
pub mod error;
pub mod flags;
pub mod report;
#[cfg(feature = "cli")]
pub mod train_cli;
