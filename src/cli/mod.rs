//! The tools, one module each: its flags (`Args`, a clap parser) and its
//! main. The `cellseg` program runs them as subcommands, and the examples
//! of the same names run them as programs of their own
//! (`cargo run --release --example train_pets`).

pub mod adversarial;
pub mod bench_hires;
pub mod bench_parity;
pub mod bench_step;
pub mod evaluate;
pub mod export_web;
pub mod params;
pub mod plot_training;
pub mod segment;
pub mod step_cases;
pub mod sweep;
pub mod timing;
pub mod train;
pub mod unroll_memory;

/// Lets a tool whose output is piped into a program that stops reading
/// (`cellseg params | head -2`) end quietly, as command-line tools do,
/// instead of panicking on the broken pipe: restores the default action of
/// `SIGPIPE`, which the Rust runtime sets to ignore (Unix).
pub fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default at the start of
    // `main`, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The clap command and the two entry points every tool module has around
/// its `main_args`: `command()`, `main_matches(&ArgMatches)` (a
/// subcommand's) and `main()` (the process's own arguments).
macro_rules! tool {
    ($args:ty) => {
        /// The tool's flags as a clap command (the subcommand's name is
        /// the caller's).
        pub fn command() -> clap::Command {
            <$args as clap::CommandFactory>::command()
        }

        /// Runs the tool on flags a parser has matched.
        pub fn main_matches(matches: &clap::ArgMatches) {
            match <$args as clap::FromArgMatches>::from_arg_matches(matches) {
                Ok(args) => main_args(args),
                Err(e) => e.exit(),
            }
        }

        /// Runs the tool on the process's own arguments (the example's
        /// `main`).
        pub fn main() {
            crate::cli::quiet_broken_pipe();
            main_args(<$args as clap::Parser>::parse())
        }
    };
}
pub(crate) use tool;
