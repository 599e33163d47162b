//! `climate-api`: standalone (default), `serve`, `migrate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use climate_api::Mode;
use climate_infra::Config;

/// Climate API: climate and earth-observation data for health information systems.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (default: CLIMATE_API_CONFIG, else the embedded example).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API + worker + scheduler in one process (the default).
    Standalone,
    /// The API only (distributed mode: workers run as climate-worker).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys (stored hashed in the configured database).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key and print it (it is shown only this once).
    Create {
        /// Who or what the key is for.
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated: read, ingest, admin (admin includes ingest, ingest read).
        #[arg(long, default_value = "ingest")]
        scopes: String,
        /// Days until the key stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never the keys themselves).
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key and every token issued for it.
    Revoke {
        /// The key id (the part after `cak_`, as `list` shows it).
        key_id: String,
    },
}

fn main() -> anyhow::Result<()> {
    climate_infra::shutdown::block_on("climate-api", main_async())
}

async fn main_async() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_process(args.config.as_deref())?;
    match args.command.unwrap_or(Command::Standalone) {
        Command::Standalone => climate_api::run(config, Mode::Standalone).await,
        Command::Serve => climate_api::run(config, Mode::Serve).await,
        Command::Migrate => {
            let url = config.database_url();
            let db = climate_infra::db::connect(&url, Some(1)).await?;
            db.migrate().await?;
            println!(
                "migrations applied to {}",
                climate_infra::platform::redact(&url)
            );
            Ok(())
        }
        Command::Keys { action } => keys(&config, action).await,
    }
}

async fn keys(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let url = config.database_url();
    let db = climate_infra::db::connect(&url, Some(1))
        .await
        .with_context(|| format!("connecting to {}", climate_infra::platform::redact(&url)))?;
    db.migrate().await?;
    let now = chrono::Utc::now();
    match action {
        KeysAction::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let scopes = climate_domain::auth::parse_scopes(&scopes).context("--scopes")?;
            anyhow::ensure!(
                !scopes.is_empty(),
                "--scopes: name at least one of read, ingest, admin"
            );
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let expires = expires_in_days.map(|d| now + chrono::TimeDelta::days(i64::from(d)));
            let (record, key) =
                climate_infra::auth::create_key(db.as_ref(), name.trim(), &scopes, expires, now)
                    .await?;
            eprintln!(
                "created key {} ({}) with scopes '{}'; it is shown only this once:",
                record.key_id, record.name, record.scopes
            );
            println!("{key}");
        }
        KeysAction::List { json } => {
            let keys = db.list_api_keys().await?;
            let state = |k: &climate_infra::db::ApiKeyRecord| {
                if k.revoked_at.is_some() {
                    "revoked"
                } else if k.is_active(now) {
                    "active"
                } else {
                    "expired"
                }
            };
            let t = |v: Option<chrono::DateTime<chrono::Utc>>| {
                v.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                )
            };
            if json {
                for k in &keys {
                    println!(
                        "{}",
                        serde_json::json!({
                            "key_id": k.key_id, "name": k.name, "scopes": k.scopes,
                            "state": state(k), "created_at": k.created_at,
                            "expires_at": k.expires_at, "revoked_at": k.revoked_at,
                            "last_used_at": k.last_used_at,
                        })
                    );
                }
            } else {
                println!(
                    "{:<16}  {:<8}  {:<18}  {:<20}  {:<20}  NAME",
                    "KEY ID", "STATE", "SCOPES", "CREATED", "LAST USED"
                );
                for k in &keys {
                    println!(
                        "{:<16}  {:<8}  {:<18}  {:<20}  {:<20}  {}",
                        k.key_id,
                        state(k),
                        k.scopes,
                        t(Some(k.created_at)),
                        t(k.last_used_at),
                        k.name
                    );
                }
            }
        }
        KeysAction::Revoke { key_id } => {
            let id = key_id.trim_start_matches(climate_infra::auth::KEY_PREFIX);
            anyhow::ensure!(
                db.revoke_api_key(id, now).await?,
                "no active key with id '{id}' (see `climate-api keys list`)"
            );
            println!("revoked key {id} and its tokens");
        }
    }
    Ok(())
}
