use std::{
    io::{BufWriter, Write},
    process::ExitCode,
};

use clap::Parser;
use meshguard_cli::{Cli, exit, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Buffered: stdout on its own flushes at every newline, and `diff -o
    // json` or `check --flows` print hundreds of thousands of lines.
    let mut stdout = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut stderr = std::io::stderr().lock();
    let result = run(cli, &mut stdout, &mut stderr);
    let flushed = stdout.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(Into::into)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meshguard: {e:#}");
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}
