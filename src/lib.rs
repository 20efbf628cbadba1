#![doc = include_str!("../README.md")]

pub use ca_core;
pub use ca_data;
pub use ca_sched;

pub mod device;
pub mod flags;
pub mod pets;
