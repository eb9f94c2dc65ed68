//! `memberlake`: the operator's command line.
//!
//! - `memberlake migrate`: applies the Postgres and CQL schema migrations (idempotent).
//! - `memberlake files | file | prioritize | pause | resume | cancel | retry | weight | actions
//!   | watch`: the operator API (meta-service, `MEMBERLAKE_ADMIN_ADDR`, token in
//!   `MEMBERLAKE_ADMIN_TOKEN`).

mod admin;
mod migrate;

use clap::{Parser, Subcommand};
use memberlake::config::{self, LogArgs};
use memberlake::telemetry;

#[derive(Parser, Debug)]
#[command(name = "memberlake", version, about = "memberlake operator command line")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    admin: admin::AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the Postgres and CQL schema migrations (safe to run again).
    Migrate(migrate::MigrateArgs),
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (cli, _) = config::parse::<Cli>();
    telemetry::init(&cli.log);
    match cli.command {
        Command::Migrate(args) => migrate::run(args).await,
        Command::Admin(command) => admin::run(cli.admin, command).await,
    }
}
