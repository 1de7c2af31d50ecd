use std::process::ExitCode;

use clap::Parser;
use meshguard_agent::{
    agent,
    cli::{Cli, Command, LogFormat},
    keys::KeyPair,
};

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pubkey { private_key } => KeyPair::load_or_create(&private_key)
            .map(|k| println!("{}", k.public_base64()))
            .map_err(anyhow::Error::from),
        Command::Teardown(args) => {
            init_logging(args.common.log_format);
            agent::teardown(&args)
        }
        Command::Run(args) => {
            init_logging(args.common.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(agent::run(*args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshguard-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
