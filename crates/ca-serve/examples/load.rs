//! A load figure for a running `serve` (the same as `cellseg bench load`;
//! flags in `ca_serve::load`).

fn main() -> std::process::ExitCode {
    ca_serve::load::main()
}
