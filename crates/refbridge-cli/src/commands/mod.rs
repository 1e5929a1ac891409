//! The subcommands: each is a role of the one binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod accloud;
pub mod backup;
pub mod bench;
pub mod config;
pub mod demo;
pub mod migrate;
pub mod prune;
pub mod serve;
pub mod sim;
pub mod token;
pub mod user;
pub mod worker;

#[derive(Debug, Parser)]
#[command(
    name = "refbridge",
    version,
    about = "Referral Requests in, Referral Approvals out to ACCloud, exactly once."
)]
pub struct Cli {
    /// A TOML configuration file (see config/default.toml for every key).
    #[arg(long, global = true, env = "REFBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, with the send workers (unless worker.enabled is false).
    Serve,
    /// Run the send workers alone (several may share a PostgreSQL database).
    Worker,
    /// Serve the ACCloud simulator.
    Sim(sim::SimArgs),
    /// Run the whole flow once against the built-in simulator and print what happened.
    Demo(demo::DemoArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Measure intake, memory and send throughput on loopback (a throwaway store).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Apply the retention policy ([retention]) once: what the service does on a schedule.
    #[command(after_help = "Examples:\n  refbridge prune --dry-run\n  \
        REFBRIDGE_RETENTION__STEP_PAYLOAD_DAYS=30 refbridge prune")]
    Prune(prune::PruneArgs),
    /// Snapshot the SQLite database and the files it refers to into an empty folder, while
    /// serving (for PostgreSQL: pg_dump and the blob backend's own backup; see README).
    #[command(after_help = "Examples:\n  refbridge backup --to /backups/refbridge-$(date +%F)")]
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data folder (database_url and files_dir of the
    /// configuration; the files go to the configured blob backend).
    #[command(
        after_help = "Examples:\n  refbridge restore --from /backups/refbridge-2026-12-01\n  \
        REFBRIDGE_DATABASE_URL=sqlite://new/refbridge.db REFBRIDGE_FILES_DIR=new/files \
        refbridge restore --from /backups/refbridge-2026-12-01"
    )]
    Restore(backup::RestoreArgs),
    /// Check the configured ACCloud tenant before the first approval.
    Accloud {
        #[command(subcommand)]
        command: accloud::AcCloudCommand,
    },
    /// Check or show the configuration (secrets redacted).
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Manage the people who sign in to the console.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_create_takes_name_and_role() {
        let cli = Cli::try_parse_from([
            "refbridge",
            "token",
            "create",
            "--name",
            "cpr",
            "--role",
            "reviewer",
        ])
        .unwrap();
        match cli.command {
            Command::Token {
                command: token::TokenCommand::Create { name, role },
            } => {
                assert_eq!(name, "cpr");
                assert_eq!(role, token::TokenRole::Reviewer);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
