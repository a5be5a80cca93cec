//! `hubbub admin …`: what an operator does to the store directly, without a running
//! server: making an account a moderator (`grant`) or not (`revoke`).
//!
//! Moderation rights live in the store (`accounts.moderator`), so a grant takes effect on
//! every node at once: the store checks them inside each delete's transaction. A page
//! shows a moderator's extra buttons from its next load.

use clap::{Parser, Subcommand};

use crate::accounts::Accounts;
use crate::domain::DisplayName;
use crate::store::{self, DatabaseUrl};

/// `hubbub admin`: operator commands on the store.
#[derive(Debug, Parser)]
#[command(name = "hubbub admin", about = "Operator commands on hubbub's store")]
pub struct Admin {
    /// The store: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, as the
    /// server's `--database`.
    #[arg(
        long,
        global = true,
        env = "HUBBUB_DATABASE_URL",
        default_value = "sqlite://hubbub.db",
        value_name = "URL"
    )]
    pub database: DatabaseUrl,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Makes the account holding NAME a moderator: they may delete anyone's message.
    Grant {
        /// A claimed name, as claimed (any case, spaces or not).
        name: String,
    },
    /// Takes moderation rights from the account holding NAME.
    Revoke { name: String },
}

/// Why an admin command failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadName(String),
    #[error("no account holds the name {0:?}: it must be claimed (/signup) first")]
    NoSuchAccount(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Runs one admin command; returns what to tell the operator.
pub async fn run(admin: Admin) -> Result<String, AdminError> {
    let store = store::open(&admin.database).await?;
    let accounts = Accounts::new(store);
    let (raw, moderator) = match &admin.command {
        Command::Grant { name } => (name, true),
        Command::Revoke { name } => (name, false),
    };
    let name =
        DisplayName::parse(raw).map_err(|err| AdminError::BadName(format!("{raw:?}: {err}")))?;
    let account = accounts
        .set_moderator(&name, moderator)
        .await?
        .ok_or_else(|| AdminError::NoSuchAccount(raw.clone()))?;
    Ok(if moderator {
        format!("{} is a moderator now.", account.name)
    } else {
        format!("{} is no longer a moderator.", account.name)
    })
}
