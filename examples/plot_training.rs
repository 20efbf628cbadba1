//! Training curves of metrics files: the same tool as `cellseg`'s subcommand (its flags and code
//! are in `cellseg::cli::plot_training`; `--help` lists them).
//!
//! `cargo run --release --example plot_training -- --help`

fn main() {
    cellseg::cli::plot_training::main();
}
