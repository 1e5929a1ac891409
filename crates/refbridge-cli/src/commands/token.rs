use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use refbridge_domain::Role;
use refbridge_storage::{StorageError, Store, StoreOptions};

use crate::config::Config;

/// What a caller of the JSON API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Posts Referral Requests (AlayaConnector).
    Intake,
    /// Reads referrals and decides on them (CPR+).
    Reviewer,
    /// Everything, webhooks and the access log included.
    Admin,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Role {
        match r {
            TokenRole::Intake => Role::Intake,
            TokenRole::Reviewer => Role::Reviewer,
            TokenRole::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is kept).
    #[command(
        after_help = "Examples:\n  refbridge token create --name alayaconnector --role intake\n  \
        refbridge token create --name cpr-plus --role reviewer"
    )]
    Create {
        /// A unique name: the actor recorded in the audit trail.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: TokenRole,
    },
    /// List the tokens (names, roles, when created and revoked; never the tokens).
    List,
    /// Revoke the token with this name.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(cfg: Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let store = Store::open(cfg.database_url.expose(), &StoreOptions::default()).await?;
    match cmd {
        TokenCommand::Create { name, role } => {
            let role = Role::from(role);
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let token =
                refbridge_api::new_token().context("the operating system's random source")?;
            match store
                .create_token(name, role, &refbridge_api::hash_token(&token))
                .await
            {
                Ok(_) => println!("{token}"),
                Err(StorageError::Conflict(_)) => bail!("a token named {name} exists already"),
                Err(e) => return Err(e.into()),
            }
        }
        TokenCommand::List => {
            println!("{:<32} {:<9} {:<32} revoked", "name", "role", "created");
            for (t, created, revoked) in store.list_tokens().await? {
                println!(
                    "{:<32} {:<9} {:<32} {}",
                    t.name,
                    t.role.as_str(),
                    created,
                    revoked.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { name } => match store.revoke_token(&name).await {
            Ok(()) => println!("revoked"),
            Err(StorageError::NotFound) => bail!("no live token named {name}"),
            Err(e) => return Err(e.into()),
        },
    }
    store.close().await;
    Ok(())
}
