#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use ca_core;
pub use ca_data;
pub use ca_hires;
pub use ca_sched;

pub mod adversarial;
pub mod curves;
pub mod device;
pub mod error;
pub mod flags;
pub mod pets;
pub mod plot;
pub mod protocols;
pub mod render;
pub mod segment;
pub mod sweep;
pub mod train_cli;
