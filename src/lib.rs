pub use ca_core;
