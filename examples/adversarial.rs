//! The adversarial-region procedure on a trained model: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::adversarial`; `--help` lists them).
//!
//! `cargo run --release --example adversarial -- --help`

fn main() {
    cellseg::cli::adversarial::main();
}
