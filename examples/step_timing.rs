//! CA step timing of both cells: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::bench_step`; `--help` lists them).
//!
//! `cargo run --release --example step_timing -- --help`

fn main() {
    cellseg::cli::bench_step::main();
}
