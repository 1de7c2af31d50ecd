use std::process::ExitCode;

use clap::Parser;
use meshguard_operator::{
    controller::{
        cli::{Flags, LogFormat, OperatorCommand, UninstallArgs},
        run,
    },
    uninstall,
};

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn teardown(args: &UninstallArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let settings = uninstall::Settings {
        namespace: args.namespace.clone(),
        agent: args.agent_daemonset.clone(),
        teardown: args.teardown_daemonset.clone(),
        timeout: args.timeout,
        poll: std::time::Duration::from_secs(2),
    };
    let nodes = uninstall::run(client, &settings).await?;
    println!("meshguard torn down on {nodes} nodes");
    Ok(())
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(flags.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match flags.command {
            Some(OperatorCommand::Uninstall(ref args)) => runtime.block_on(teardown(args)),
            None => runtime.block_on(run::run(flags)),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshguard-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
