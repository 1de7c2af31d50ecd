use std::process::ExitCode;

use clap::Parser;
use meshguard_cli::{Cli, exit, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match run(cli, &mut stdout, &mut stderr) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meshguard: {e:#}");
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}
