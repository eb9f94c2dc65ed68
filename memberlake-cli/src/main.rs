//! `memberlake`: the operator's command line.
//!
//! - `memberlake migrate`: applies the Postgres and CQL schema migrations (idempotent); only
//!   with the default feature `migrate`, the one part that needs the services' I/O stack.
//! - `memberlake check <list> [--advertiser A]`: a dry run of a list (same feature).
//! - `memberlake files | file | prioritize | pause | resume | cancel | retry | approve | reject
//!   | rollback | weight | lifespan | erase | erasure | actions | watch | wait`: the operator API
//!   (meta-service, `MEMBERLAKE_ADMIN_ADDR`, token in `MEMBERLAKE_ADMIN_TOKEN`), through
//!   `memberlake_admin::AdminClient`. `file` prints the file's version report; `approve` and
//!   `reject` decide on a held version; `rollback <advertiser> [--to <file id>]` restores an
//!   earlier version as a new one; `erase <email-or-hash> [--wait [--timeout T]]` erases a person
//!   for good (the email hashed here, only the hash sent) and `erasure <email-or-hash>` shows how
//!   far an erasure is.

mod admin;
#[cfg(feature = "migrate")]
mod check;
#[cfg(feature = "migrate")]
mod migrate;
mod outcome;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "memberlake", version, about = "memberlake operator command line", after_help = outcome::EXIT_CODES)]
#[cfg_attr(
    not(feature = "migrate"),
    command(about = "memberlake operator command line (operator API only: built without `migrate`)")
)]
struct Cli {
    #[cfg(feature = "migrate")]
    #[command(flatten)]
    log: memberlake::config::LogArgs,
    #[command(flatten)]
    admin: admin::AdminArgs,
    /// The deployment's hash scheme (`md5` or `sha256`, MEMBERLAKE_HASH): how `erase` hashes
    /// an email and what width a hash argument has.
    #[arg(long = "hash-scheme", id = "hash_scheme", env = "MEMBERLAKE_HASH", default_value = "md5")]
    hash_scheme: memberlake_admin::HashScheme,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the Postgres and CQL schema migrations (safe to run again).
    #[cfg(feature = "migrate")]
    Migrate(migrate::MigrateArgs),
    /// Dry run of a list: read it as the workers would and say what ingestion would find (rows,
    /// rejects by reason, duplicates, the range plan; with --advertiser, members added, removed
    /// and unchanged) and whether it would be held (exit 9) or fail (exit 10).
    #[cfg(feature = "migrate")]
    Check(check::CheckArgs),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Print the shell completion script (e.g. `memberlake completions bash >
    /// /etc/bash_completion.d/memberlake`).
    Completions { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // First: every hash this process parses or makes is of the deployment's scheme.
    cli.hash_scheme.install();
    // The operator commands log nothing; migrations log through the services' telemetry.
    #[cfg(feature = "migrate")]
    memberlake::telemetry::init(&cli.log);
    let result = match cli.command {
        #[cfg(feature = "migrate")]
        Command::Migrate(args) => migrate::run(args).await.map_err(migrate::failed),
        #[cfg(feature = "migrate")]
        Command::Check(args) => check::run(args).await,
        Command::Admin(command) => admin::run(cli.admin, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "memberlake",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    outcome::finish(result)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completion_scripts_cover_the_commands() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "memberlake", &mut out);
            let script = String::from_utf8(out).unwrap();
            for command in ["files", "approve", "rollback", "wait", "lifespan", "erase", "erasure", "completions"] {
                assert!(script.contains(command), "{shell}: {command}");
            }
        }
    }

    #[test]
    fn ids_and_states_are_parsed_at_the_edge() {
        let cli = Cli::try_parse_from(["memberlake", "files", "--state", "failed", "--advertiser", "acme"]).unwrap();
        let Command::Admin(admin::AdminCommand::Files { state, advertiser, limit }) = cli.command else { panic!() };
        assert_eq!((state.map(|s| s.as_str()), advertiser.unwrap().as_str(), limit), (Some("failed"), "acme", 50));
        for bad in [
            &["file", "0"][..],
            &["files", "--state", "done"],
            &["weight", "a b", "1"],
            &["pause", "x"],
            &["approve", "-1"],
            &["reject"],
            &["rollback"],
            &["rollback", "a.b"],
            &["rollback", "acme", "--to", "0"],
            &["rollback", "acme", "41"],
        ] {
            let args = std::iter::once("memberlake").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["memberlake", "prioritize", "7", "-5"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(admin::AdminCommand::Prioritize { id: memberlake_admin::FileId(7), priority: -5 })
        ));
    }

    #[test]
    fn erasures_have_commands() {
        use std::time::Duration;
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("memberlake").chain(args.iter().copied()));
        let Ok(Cli { command: Command::Admin(admin::AdminCommand::Erase { wait, timeout, .. }), .. }) =
            parse(&["erase", "jane@example.com"])
        else {
            panic!()
        };
        assert_eq!((wait, timeout), (false, None));
        let Ok(Cli { command: Command::Admin(admin::AdminCommand::Erase { wait, timeout, interval, .. }), .. }) =
            parse(&["erase", "c160f8cc69a4f0bf2b0362752353d060", "--wait", "--timeout", "10m", "--json"])
        else {
            panic!()
        };
        assert_eq!((wait, timeout, interval), (true, Some(Duration::from_secs(600)), 1.0));
        assert!(matches!(
            parse(&["erasure", "jane@example.com"]),
            Ok(Cli { command: Command::Admin(admin::AdminCommand::Erasure { .. }), .. })
        ));
        for bad in [
            &["erase"][..],
            &["erase", "a@b", "--timeout", "5m"],
            &["erase", "a@b", "--wait", "--timeout", "0s"],
            &["erasure"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // The value is hashed when the command runs, so a refusal never echoes it (clap's would).
        assert!(parse(&["erase", "not an email"]).is_ok());
    }

    #[test]
    fn held_versions_and_rollbacks_have_commands() {
        use memberlake_admin::FileId;
        let parse = |args: &[&str]| match Cli::try_parse_from(std::iter::once("memberlake").chain(args.iter().copied()))
        {
            Ok(Cli { command: Command::Admin(command), .. }) => command,
            other => panic!("{args:?}: {other:?}"),
        };
        assert!(matches!(parse(&["approve", "12"]), admin::AdminCommand::Approve { id: FileId(12) }));
        assert!(matches!(parse(&["reject", "13", "--json"]), admin::AdminCommand::Reject { id: FileId(13) }));
        let admin::AdminCommand::Rollback { advertiser, to } = parse(&["rollback", "acme"]) else { panic!() };
        assert_eq!((advertiser.as_str(), to), ("acme", None));
        let admin::AdminCommand::Rollback { advertiser, to } = parse(&["rollback", "globex", "--to", "41"]) else {
            panic!()
        };
        assert_eq!((advertiser.as_str(), to), ("globex", Some(FileId(41))));
    }
}
