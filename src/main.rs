//! The `sopvault` command: parse arguments, run one subcommand, map errors to exit codes.

fn main() {
    std::process::exit(sopvault_cli::run());
}

#[path = "cli/mod.rs"]
mod sopvault_cli;
