//! `cellseg`: every tool of the project as a subcommand (`cellseg --help`
//! lists them; `cellseg train --help` and the others give each one's
//! flags). Installed with `cargo install --path .`.

use clap::{ArgMatches, Command};

use cellseg::cli;

/// A subcommand: its name, one line on what it does, its flags, its main.
struct Tool {
    name: &'static str,
    about: &'static str,
    command: fn() -> Command,
    run: fn(&ArgMatches),
}

const TOOLS: [Tool; 10] = [
    Tool {
        name: "train",
        about: "Train a model on the Oxford-IIIT Pet layout (the train_pets example)",
        command: cli::train::command,
        run: cli::train::main_matches,
    },
    Tool {
        name: "segment",
        about: "Segment a photo: class map, overlay, evolution GIF",
        command: cli::segment::command,
        run: cli::segment::main_matches,
    },
    Tool {
        name: "evaluate",
        about: "The evaluation protocols: stability, switching, shift, norms, probe, uncertainty, compare",
        command: cli::evaluate::command,
        run: cli::evaluate::main_matches,
    },
    Tool {
        name: "serve",
        about: "The live page and the HTTP API",
        command: serve_command,
        run: serve,
    },
    Tool {
        name: "export-web",
        about: "Write the live page and models as a static site; the colony runs in the browser",
        command: cli::export_web::command,
        run: cli::export_web::main_matches,
    },
    Tool {
        name: "sweep",
        about: "Train a file of configurations at an equal CPU budget in parallel lanes and rank them",
        command: cli::sweep::command,
        run: sweep,
    },
    Tool {
        name: "params",
        about: "Parameter counts of the paper's Table 1 variants",
        command: cli::params::command,
        run: cli::params::main_matches,
    },
    Tool {
        name: "adversarial",
        about: "The adversarial-region procedure on a trained model",
        command: cli::adversarial::command,
        run: cli::adversarial::main_matches,
    },
    Tool {
        name: "plot",
        about: "Loss and IoU curves of training runs' metrics files",
        command: cli::plot_training::command,
        run: cli::plot_training::main_matches,
    },
    Tool {
        name: "bench",
        about: "Timings: the CA step, the high-resolution models, an unroll's memory, a server's load",
        command: bench_command,
        run: bench,
    },
];

/// `cellseg bench step|parity|hires|load|unroll-memory`.
fn bench_command() -> Command {
    Command::new("bench")
        .subcommand_required(true)
        .subcommand(
            cli::bench_step::command()
                .name("step")
                .about("Step timing of both cells (the step_timing example)"),
        )
        .subcommand(
            cli::bench_parity::command()
                .name("parity")
                .about("One CA step and its gradients on --device against the CPU's"),
        )
        .subcommand(
            cli::bench_hires::command()
                .name("hires")
                .about("Training step of the high-resolution models (the hires_timing example)"),
        )
        .subcommand(
            <cellseg::ca_serve::load::Args as clap::CommandFactory>::command()
                .name("load")
                .about("Parallel API clients against a running server"),
        )
        .subcommand(
            cli::unroll_memory::command()
                .name("unroll-memory")
                .about("One unroll and its backward, for a memory measurement"),
        )
}

fn bench(matches: &ArgMatches) {
    match matches.subcommand() {
        Some(("step", m)) => cli::bench_step::main_matches(m),
        Some(("hires", m)) => cli::bench_hires::main_matches(m),
        Some(("parity", m)) => cli::bench_parity::main_matches(m),
        Some(("unroll-memory", m)) => cli::unroll_memory::main_matches(m),
        Some(("load", m)) => {
            match <cellseg::ca_serve::load::Args as clap::FromArgMatches>::from_arg_matches(m) {
                Ok(args) => exit_with(cellseg::ca_serve::load::main_args(args)),
                Err(e) => e.exit(),
            }
        }
        _ => unreachable!("clap requires a bench subcommand"),
    }
}

fn serve_command() -> Command {
    <cellseg::ca_serve::cli::Args as clap::CommandFactory>::command()
}

fn serve(matches: &ArgMatches) {
    match <cellseg::ca_serve::cli::Args as clap::FromArgMatches>::from_arg_matches(matches) {
        Ok(args) => exit_with(cellseg::ca_serve::cli::main_args(args)),
        Err(e) => e.exit(),
    }
}

/// Ends the process with `code`'s status (0 or 1).
fn exit_with(code: std::process::ExitCode) {
    std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS));
}

/// `cellseg sweep`: each run is `cellseg train ...` of this program.
fn sweep(matches: &ArgMatches) {
    let args = match <cli::sweep::Args as clap::FromArgMatches>::from_arg_matches(matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let run = std::env::current_exe()
        .map_err(|e| e.into())
        .and_then(|me| cli::sweep::run(args, me, vec!["train".into()]));
    cellseg::error::exit_on_error(run);
}

fn main() {
    cli::quiet_broken_pipe();
    // Reuse the freed step buffers instead of faulting them in every step.
    cellseg::ca_core::alloc::retain_freed_memory();
    let mut command = Command::new("cellseg")
        .about("Image segmentation by learned cellular automata (Sandler et al., 2020)")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true);
    for tool in &TOOLS {
        command = command.subcommand((tool.command)().name(tool.name).about(tool.about));
    }
    let matches = command.get_matches();
    let (name, sub) = matches.subcommand().expect("clap requires a subcommand");
    let tool = TOOLS
        .iter()
        .find(|t| t.name == name)
        .expect("clap knows only these subcommands");
    (tool.run)(sub);
}
