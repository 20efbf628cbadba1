//! Parameter counts of the paper's Table 1 variants: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::params`; `--help` lists them).
//!
//! `cargo run --release --example params -- --help`

fn main() {
    cellseg::cli::params::main();
}
