use std::process::ExitCode;

use clap::Parser;
use refbridge_cli::commands::{
    Cli, Command, accloud, backup, bench, config as config_cmd, demo, migrate, prune, serve, sim,
    token, user, worker,
};
use refbridge_cli::config::{AcCloudTarget, Config};
use tracing::Instrument;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("refbridge: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Demo(_) | Command::Bench { .. })
        && std::env::var_os("RUST_LOG").is_none()
    {
        // The demo prints its own story; logs would drown it.
        cfg.log.filter = "warn".into();
    }
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
    // Against the simulator on purpose, every line the service logs says so.
    let root = match (&cli.command, cfg.accloud.target) {
        (Command::Serve | Command::Worker, Some(AcCloudTarget::Simulator)) => {
            tracing::info_span!("refbridge", accloud_target = "simulator")
        }
        _ => tracing::Span::none(),
    };
    let result = runtime.block_on(
        async move {
            match cli.command {
                Command::Serve => serve::run(cfg).await,
                Command::Worker => worker::run(cfg).await,
                Command::Sim(args) => sim::run(args).await,
                Command::Demo(args) => demo::run(cfg, args).await,
                Command::Migrate => migrate::run(cfg).await,
                Command::Bench { command } => bench::run(cfg, command).await,
                Command::Accloud { command } => accloud::run(cfg, command).await,
                Command::Config { command } => config_cmd::run(&cfg, command),
                Command::Prune(args) => prune::run(cfg, args).await,
                Command::Backup(args) => backup::backup(cfg, args).await,
                Command::Restore(args) => backup::restore(cfg, args).await,
                Command::Token { command } => token::run(cfg, command).await,
                Command::User { command } => user::run(cfg, command).await,
            }
        }
        .instrument(root),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("refbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
