//! Fuzzes the checkpoint loader on arbitrary bytes: never a panic; a
//! success is a rule whose config validates.
#![no_main]

use std::path::Path;

use ca_core::CellRule;
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rule) =
        CellRule::from_safetensors_bytes(data, Path::new("fuzz.safetensors"), &Device::Cpu)
    {
        assert!(rule.config().validate().is_ok());
    }
});
