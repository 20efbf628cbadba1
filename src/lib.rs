#![doc = include_str!("../README.md")]

pub use ca_core;
