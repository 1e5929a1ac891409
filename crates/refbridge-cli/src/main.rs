use std::process::ExitCode;

use clap::Parser;
use refbridge_cli::commands::{Cli, Command, migrate, serve, token};
use refbridge_cli::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("refbridge: {e}");
            return ExitCode::from(2);
        }
    };
    refbridge_cli::telemetry::init(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("refbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(cfg).await,
            Command::Migrate => migrate::run(cfg).await,
            Command::Token { command } => token::run(cfg, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("refbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
