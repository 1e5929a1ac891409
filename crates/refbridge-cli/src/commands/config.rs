//! `refbridge config check|show`: the configuration as the service would read it (the built-in
//! defaults, then `--config`, then `REFBRIDGE_*`), checked, with secrets redacted.

use clap::Subcommand;

use crate::config::Config;
use crate::runtime;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration: exit 0 when it is valid (an invalid one exits 2 naming the
    /// key); say what it chooses.
    #[command(after_help = "Examples:\n  refbridge config check\n  \
        REFBRIDGE_ACCLOUD__TARGET=simulator refbridge --config prod.toml config check")]
    Check,
    /// Print the effective configuration, every layer applied, secrets redacted.
    Show,
}

/// `cfg` was loaded and checked before any command runs (`Config::load`).
pub fn run(cfg: &Config, cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Check => {
            println!("configuration valid");
            println!("  database: {:?}", cfg.database_url);
            println!("  accloud:  {}", runtime::describe_target(cfg));
            println!(
                "  blobs:    {}",
                match cfg.blobs.backend {
                    crate::config::BlobBackendKind::Auto =>
                        "auto (postgres on PostgreSQL, else the folder)".to_owned(),
                    crate::config::BlobBackendKind::Folder =>
                        format!("folder {}", cfg.files_dir.display()),
                    crate::config::BlobBackendKind::Postgres =>
                        "postgres (in the database)".to_owned(),
                    crate::config::BlobBackendKind::S3 => format!(
                        "s3 bucket {} at {}",
                        cfg.blobs.s3.bucket,
                        if cfg.blobs.s3.endpoint.is_empty() {
                            "AWS"
                        } else {
                            cfg.blobs.s3.endpoint.as_str()
                        }
                    ),
                }
            );
            if let Err(e) = cfg.accloud.chosen_target() {
                println!("  note: {e}");
            }
            println!(
                "  workers:  {} in serve, {} at once, lease {} s",
                if cfg.worker.enabled { "run" } else { "not run" },
                cfg.worker.concurrency,
                cfg.worker.lease_secs
            );
        }
        ConfigCommand::Show => println!("{cfg:#?}"),
    }
    Ok(())
}
