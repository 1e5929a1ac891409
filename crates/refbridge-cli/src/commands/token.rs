use anyhow::bail;
use clap::Subcommand;
use refbridge_domain::Role;
use refbridge_storage::{StorageError, Store, StoreOptions};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// A unique name: the actor recorded in the audit trail.
        #[arg(long)]
        name: String,
        /// intake, reviewer or admin.
        #[arg(long)]
        role: String,
    },
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
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be one of intake, reviewer, admin");
            };
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let token = refbridge_api::new_token();
            match store
                .create_token(name, role, &refbridge_api::hash_token(&token))
                .await
            {
                Ok(_) => println!("{token}"),
                Err(StorageError::Conflict(_)) => bail!("a token named {name} exists already"),
                Err(e) => return Err(e.into()),
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
