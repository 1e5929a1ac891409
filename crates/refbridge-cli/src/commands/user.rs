//! People who sign in to the console.

use std::io::Read as _;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use refbridge_api::console::session::{generate_password, hash_password};
use refbridge_domain::Role;
use refbridge_storage::{StorageError, Store, StoreOptions};

use crate::config::Config;

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRole {
    /// Reads referrals and decides on them.
    Reviewer,
    /// Keeps the sends moving; sees no personal data.
    Operator,
    /// Everything.
    Admin,
}

impl From<UserRole> for Role {
    fn from(r: UserRole) -> Role {
        match r {
            UserRole::Reviewer => Role::Reviewer,
            UserRole::Operator => Role::Operator,
            UserRole::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input with --password-stdin;
    /// otherwise one is generated and printed once.
    #[command(
        after_help = "Examples:\n  refbridge user create --name dana --role reviewer\n  \
        printf '%s' \"$PASSWORD\" | refbridge user create --name lee --role admin --password-stdin"
    )]
    Create {
        /// The name to sign in with (the actor in the audit trail).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: UserRole,
        /// Read the password from standard input (one line; at least 12 characters).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users, enabled or not.
    List,
    /// Disable a user and end their sessions.
    Disable {
        #[arg(long)]
        name: String,
    },
}

/// The shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 12;

pub async fn run(cfg: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let store = Store::open(cfg.database_url.expose(), &StoreOptions::default()).await?;
    match cmd {
        UserCommand::Create {
            name,
            role,
            password_stdin,
        } => {
            let name = name.trim();
            if name.is_empty() || name.chars().any(char::is_control) {
                bail!("--name must not be empty or hold control characters");
            }
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the password from standard input")?;
                (text.trim_end_matches(['\n', '\r']).to_owned(), false)
            } else {
                (generate_password()?, true)
            };
            if password.chars().count() < MIN_PASSWORD_CHARS {
                bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
            }
            let hash = hash_password(&password)?;
            match store.create_user(name, role.into(), &hash).await {
                Ok(_) if generated => println!("{password}"),
                Ok(_) => println!("created"),
                Err(StorageError::Conflict(_)) => bail!("a user named {name} exists already"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::List => {
            for u in store.list_users().await? {
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "enabled" }
                );
            }
        }
        UserCommand::Disable { name } => match store.disable_user(&name).await {
            Ok(()) => println!("disabled"),
            Err(StorageError::NotFound) => bail!("no enabled user named {name}"),
            Err(e) => return Err(e.into()),
        },
    }
    store.close().await;
    Ok(())
}
