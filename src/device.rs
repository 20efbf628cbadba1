//! Choosing a candle device from a command-line value.
//!
//! A `--features cuda` binary is linked against the NVIDIA driver's
//! `libcuda.so.1` and the CUDA runtime libraries (cudart, cuBLAS, cuRAND,
//! NVRTC): on a machine without them it does not start, and the dynamic
//! loader's message names the missing library. Where they load,
//! [`parse_device`] turns "no GPU" into an error naming the device.

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

    /// With CUDA compiled in, an ordinal that no machine has is a clear
    /// error naming the device, not a panic (on a machine whose driver sees
    /// no GPU, so is `cuda:0`). A `--features cuda` binary needs the NVIDIA
    /// driver's libcuda.so.1 to start at all, so this runs on GPU machines.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_ordinal_without_gpu() {
        let err = parse_device("cuda:4096").unwrap_err();
        assert!(err.contains("device 'cuda:4096': no usable GPU"), "{err}");
    }
}
