#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use ca_core;
pub use ca_data;
pub use ca_eval;
pub use ca_hires;
pub use ca_model;
pub use ca_sched;
#[cfg(feature = "cli")]
pub use ca_serve;
pub use ca_unet;
pub use ca_viz;

#[cfg(feature = "cli")]
pub mod cli;
pub mod device;
pub mod error;
pub mod flags;
pub mod report;
#[cfg(feature = "cli")]
pub mod train_cli;
