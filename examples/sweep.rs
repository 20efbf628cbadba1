//! A recipe sweep at an equal CPU budget: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::sweep`; `--help` lists them).
//!
//! `cargo run --release --example sweep -- --help`

fn main() {
    cellseg::cli::sweep::main();
}
