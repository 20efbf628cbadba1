//! The evaluation protocols: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::evaluate`; `--help` lists them).
//!
//! `cargo run --release --example evaluate -- --help`

fn main() {
    cellseg::cli::evaluate::main();
}
