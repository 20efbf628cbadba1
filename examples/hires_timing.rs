//! Training step timing of the high-resolution models: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::bench_hires`; `--help` lists them).
//!
//! `cargo run --release --example hires_timing -- --help`

fn main() {
    cellseg::cli::bench_hires::main();
}
