//! The live web demo: `cargo run --release -p ca-serve --example serve --
//! [--port 8080] [--model models/pets48.safetensors]`, then open
//! the URL it prints (the same as `cellseg serve`; flags in `ca_serve::cli`).

fn main() -> std::process::ExitCode {
    ca_serve::cli::main()
}
