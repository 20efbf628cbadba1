//! Choosing a candle device from a command-line value.

use candle_core::Device;

/// Parses `cpu`, `cuda` or `cuda:N` into a device. CUDA needs a binary built
/// with `--features cuda` and a GPU; either missing is a clear error.
pub fn parse_device(value: &str) -> Result<Device, String> {
    let ordinal = match value {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        v => match v.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(format!(
                    "unknown device '{value}' (expected cpu, cuda or cuda:N)"
                ))
            }
        },
    };
    if !cfg!(feature = "cuda") {
        return Err(format!(
            "device '{value}': this binary was built without CUDA; rebuild with `--features cuda`"
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| format!("device '{value}': no usable GPU: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu")
            .unwrap_err()
            .contains("unknown device 'tpu'"));
        assert!(parse_device("cuda:x")
            .unwrap_err()
            .contains("unknown device"));
        if !cfg!(feature = "cuda") {
            assert!(parse_device("cuda:0").unwrap_err().contains("without CUDA"));
        }
    }
}
