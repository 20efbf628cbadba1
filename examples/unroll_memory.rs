//! One unroll and its backward, for a memory measurement: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::unroll_memory`; `--help` lists them).
//!
//! `cargo run --release --example unroll_memory -- --help`

fn main() {
    cellseg::cli::unroll_memory::main();
}
