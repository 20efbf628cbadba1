//! Trains a segmentation cellular automaton on the Oxford-IIIT Pet layout: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::train`; `--help` lists them).
//!
//! `cargo run --release --example train_pets -- --help`

fn main() {
    cellseg::cli::train::main();
}
