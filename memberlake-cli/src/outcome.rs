//! How a command ends: its exit code and, on failure, the message an operator reads.
//!
//! An expected failure (meta-service unreachable, a file not found, a refused action) prints
//! the error chain and a hint — never a stack trace, whatever `RUST_BACKTRACE` says: a backtrace
//! belongs to a bug, not to a 404. Exit codes are distinct per kind of failure so that scripts
//! can branch on them (listed in `memberlake --help` and the README).

use std::process::ExitCode;

use memberlake_admin::AdminError;

/// The exit codes of `memberlake`, one per kind of ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Anything unexpected (a bug, a contract mismatch between CLI and server).
    Failure = 1,
    /// Bad arguments (clap's own code).
    Usage = 2,
    /// A server could not be reached or is unavailable (meta-service, Postgres, the CQL nodes):
    /// trying again later may work.
    Unavailable = 3,
    /// What the command names does not exist (404).
    NotFound = 4,
    /// The server refused the request as it stands (400, 409, 413, 422): the file's state does
    /// not allow it, or a value is invalid.
    Refused = 5,
    /// The token is missing, wrong, or not allowed (401, 403), or the rate limit was hit (429).
    Unauthorized = 6,
    /// `memberlake wait`: the file ended failed or cancelled.
    FileFailed = 7,
    /// `memberlake wait`: the file's version is held for an operator's decision.
    FileHeld = 8,
    /// `memberlake check`: the list would be held for an operator (too many rejected rows, or
    /// it shrinks the active list past the guard).
    WouldHold = 9,
    /// `memberlake check`: the list would fail (unreadable: corrupt compression, changed or
    /// missing object).
    WouldFail = 10,
    /// `memberlake erase --wait --timeout`: the erasure was not complete in time (it goes on).
    WaitTimedOut = 11,
}

/// The table for `--help`.
pub const EXIT_CODES: &str =
    "Exit codes: 0 done · 1 unexpected failure · 2 bad arguments · 3 a server is unreachable or \
unavailable (retry later) · 4 not found · 5 refused (state or value) · 6 token missing, wrong or rate-limited · \
7 (wait) the file failed or was cancelled · 8 (wait) the version is held for an operator · 9 (check) the list \
would be held · 10 (check) the list would fail · 11 (erase --wait) the erasure was not complete within --timeout";

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// A failed command: why, and with which code.
#[derive(Debug)]
pub struct Failed {
    pub exit: Exit,
    pub error: anyhow::Error,
    pub hint: Option<String>,
}

impl Failed {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self { exit, error: error.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message: the error, each cause on its own line, then the hint. No backtrace.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}", self.error);
        for cause in self.error.chain().skip(1) {
            out.push_str(&format!("\n  caused by: {cause}"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }
}

impl From<anyhow::Error> for Failed {
    /// Classifies by the first error in the chain that says what happened.
    fn from(error: anyhow::Error) -> Self {
        let admin = error.chain().find_map(|e| e.downcast_ref::<AdminError>());
        match admin {
            Some(AdminError::Transport { base, .. }) => {
                let hint = format!(
                    "is meta-service running and listening at {base}? Set MEMBERLAKE_ADMIN_ADDR (or --admin-addr)"
                );
                Failed::new(Exit::Unavailable, error).hint(hint)
            }
            Some(AdminError::Api { status, .. }) => {
                let (exit, hint) = match status {
                    404 => (Exit::NotFound, Some("`memberlake files` lists the files and their ids")),
                    401 | 403 => (
                        Exit::Unauthorized,
                        Some("set MEMBERLAKE_ADMIN_TOKEN to one of meta-service's MEMBERLAKE_ADMIN_TOKENS"),
                    ),
                    429 => (Exit::Unauthorized, Some("the token's rate limit was hit: retry after a second")),
                    400 | 409 | 413 | 422 => (Exit::Refused, None),
                    500..=599 if *status != 500 => (Exit::Unavailable, Some("retry later")),
                    _ => (Exit::Failure, None),
                };
                let failed = Failed::new(exit, error);
                match hint {
                    Some(h) => failed.hint(h),
                    None => failed,
                }
            }
            Some(AdminError::Invalid(_)) => Failed::new(Exit::Usage, error),
            _ => Failed::new(Exit::Failure, error),
        }
    }
}

impl From<AdminError> for Failed {
    fn from(e: AdminError) -> Self {
        anyhow::Error::new(e).into()
    }
}

/// Ends the process: prints a failure's message on stderr and returns its code.
pub fn finish(result: Result<(), Failed>) -> ExitCode {
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(failed) => {
            eprintln!("{}", failed.render());
            failed.exit.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> anyhow::Error {
        anyhow::Error::new(AdminError::Api { status, code: "x".into(), message: "m".into() })
    }

    #[test]
    fn api_statuses_map_to_distinct_codes() {
        assert_eq!(Failed::from(api(404)).exit, Exit::NotFound);
        assert_eq!(Failed::from(api(409)).exit, Exit::Refused);
        assert_eq!(Failed::from(api(400)).exit, Exit::Refused);
        assert_eq!(Failed::from(api(401)).exit, Exit::Unauthorized);
        assert_eq!(Failed::from(api(429)).exit, Exit::Unauthorized);
        assert_eq!(Failed::from(api(503)).exit, Exit::Unavailable);
        assert_eq!(Failed::from(api(500)).exit, Exit::Failure);
        assert_eq!(Failed::from(anyhow::anyhow!("boom")).exit, Exit::Failure);
    }

    #[test]
    fn the_message_is_the_chain_and_a_hint_never_a_backtrace() {
        let error = anyhow::Error::new(std::io::Error::other("connection refused")).context("reading the file list");
        let text = Failed::new(Exit::Unavailable, error).hint("start meta-service").render();
        assert_eq!(text, "error: reading the file list\n  caused by: connection refused\n  hint: start meta-service");
        let not_found = Failed::from(api(404)).render();
        assert!(not_found.starts_with("error: 404 x: m") && not_found.contains("hint:"), "{not_found}");
        assert!(!not_found.contains("stack backtrace"), "{not_found}");
    }
}
