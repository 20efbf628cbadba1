//! Segments one photo with a trained model: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::segment`; `--help` lists them).
//!
//! `cargo run --release --example segment -- --help`

fn main() {
    cellseg::cli::segment::main();
}
