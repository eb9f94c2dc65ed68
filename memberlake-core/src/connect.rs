//! Connecting to the control plane (Postgres) and the store (CQL) the way a production
//! deployment needs: passwords from mounted files, TLS verified against a configured CA,
//! requests kept in the local datacenter. When a server refuses a connection at start, the
//! error says what is wrong and which setting to fix ([`pg_hint`], [`cql_hint`]).
//!
//! Secrets never reach a log: they are read here, handed to the driver, and never formatted
//! (the effective-configuration log shows the files' paths, not their contents).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::{DatabaseArgs, StoreArgs};

/// A connection setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {setting} ({}): {source}", path.display())]
    Read { setting: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{setting} ({}) holds no usable {what}: {detail}", path.display())]
    Pem { setting: &'static str, path: PathBuf, what: &'static str, detail: String },
    #[error("{setting}: {message}")]
    Invalid { setting: &'static str, message: String },
}

/// Reads a secret from a mounted file; one trailing newline (`\n` or `\r\n`) is not part of it.
pub fn read_secret(setting: &'static str, path: &Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        setting,
        path: path.to_owned(),
        source,
    })?;
    let secret = text.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&text);
    if secret.is_empty() {
        return Err(SettingsError::Invalid { setting, message: format!("{} is empty", path.display()) });
    }
    Ok(secret.to_owned())
}

/// The crypto provider of every TLS configuration this crate builds. Named explicitly: the
/// CQL driver's rustls also compiles in aws-lc-rs, so rustls cannot pick a process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SettingsError> {
    let pem = |detail: String| SettingsError::Pem { setting, path: path.to_owned(), what: "PEM certificate", detail };
    let bytes = std::fs::read(path).map_err(|source| SettingsError::Read { setting, path: path.to_owned(), source })?;
    let certs =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no -----BEGIN CERTIFICATE----- block".into()));
    }
    Ok(certs)
}

fn load_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, SettingsError> {
    let bytes = std::fs::read(path).map_err(|source| SettingsError::Read { setting, path: path.to_owned(), source })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| SettingsError::Pem {
        setting,
        path: path.to_owned(),
        what: "PEM private key",
        detail: e.to_string(),
    })
}

fn roots(setting: &'static str, path: &Path) -> Result<Arc<RootCertStore>, SettingsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(setting, path)? {
        roots.add(cert).map_err(|e| SettingsError::Pem {
            setting,
            path: path.to_owned(),
            what: "CA certificate",
            detail: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Verifies every node's certificate for one configured name instead of the address the driver
/// connected to (the CQL driver always presents the node's IP address).
#[derive(Debug)]
struct NamedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _connected_to: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS configuration of CQL connections, or `None` for plaintext.
pub fn cql_tls(args: &StoreArgs) -> Result<Option<Arc<ClientConfig>>, SettingsError> {
    const CA: &str = "MEMBERLAKE_SCYLLA_TLS_CA_FILE";
    let Some(ca) = &args.scylla_tls_ca_file else { return Ok(None) };
    let tls = |message: String| SettingsError::Invalid { setting: CA, message };
    let roots = roots(CA, ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?;
    let builder = match &args.scylla_tls_server_name {
        None => builder.with_root_certificates(roots),
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| SettingsError::Invalid {
                setting: "MEMBERLAKE_SCYLLA_TLS_SERVER_NAME",
                message: format!("{name:?} is not a DNS name or address: {e}"),
            })?;
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| tls(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NamedServerVerifier { inner, name }))
        }
    };
    let config = match (&args.scylla_tls_cert_file, &args.scylla_tls_key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("MEMBERLAKE_SCYLLA_TLS_CERT_FILE", cert)?;
            let key = load_key("MEMBERLAKE_SCYLLA_TLS_KEY_FILE", key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| SettingsError::Invalid {
                setting: "MEMBERLAKE_SCYLLA_TLS_KEY_FILE",
                message: format!("the key does not fit the client certificate: {e}"),
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The CQL user and password, if authentication is configured.
pub fn cql_credentials(args: &StoreArgs) -> Result<Option<(String, String)>, SettingsError> {
    match (&args.scylla_username, &args.scylla_password_file) {
        (Some(user), Some(file)) => Ok(Some((user.clone(), read_secret("MEMBERLAKE_SCYLLA_PASSWORD_FILE", file)?))),
        (None, None) => Ok(None),
        _ => Err(SettingsError::Invalid {
            setting: "MEMBERLAKE_SCYLLA_USERNAME",
            message: "set together with MEMBERLAKE_SCYLLA_PASSWORD_FILE".into(),
        }),
    }
}

/// Postgres connection options: the URL, plus the password file and the CA file if set.
pub fn pg_options(args: &DatabaseArgs) -> Result<PgConnectOptions, SettingsError> {
    const URL: &str = "MEMBERLAKE_DATABASE_URL";
    let parsed = url::Url::parse(&args.database_url)
        .map_err(|e| SettingsError::Invalid { setting: URL, message: format!("not a URL: {e}") })?;
    let mut options: PgConnectOptions = args
        .database_url
        .parse()
        .map_err(|e: sqlx::Error| SettingsError::Invalid { setting: URL, message: e.to_string() })?;
    if let Some(file) = &args.database_password_file {
        if parsed.password().is_none() {
            options = options.password(&read_secret("MEMBERLAKE_DATABASE_PASSWORD_FILE", file)?);
        }
    }
    if let Some(ca) = &args.database_tls_ca_file {
        // Fail here, with the setting's name, rather than inside the first handshake.
        roots("MEMBERLAKE_DATABASE_TLS_CA_FILE", ca)?;
        options = options.ssl_mode(PgSslMode::VerifyFull).ssl_root_cert(ca);
    }
    Ok(options)
}

/// What to fix when Postgres refused a connection, from the refusal.
pub fn pg_hint(error: &sqlx::Error, args: &DatabaseArgs) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => Some(
                "Postgres refused the password: check MEMBERLAKE_DATABASE_PASSWORD_FILE (or the password in \
                 MEMBERLAKE_DATABASE_URL) and the user name in the URL"
                    .into(),
            ),
            Some("28000") if db.message().contains("no encryption") => Some(
                "Postgres accepts only TLS connections from this host: set MEMBERLAKE_DATABASE_TLS_CA_FILE to the \
                 CA that signed the server's certificate"
                    .into(),
            ),
            Some("28000") => Some(
                "Postgres has no pg_hba.conf entry admitting this user, database and address (or requires TLS)".into(),
            ),
            _ => None,
        },
        // sqlx reports a failed certificate check as an I/O error of the handshake.
        sqlx::Error::Io(e) if is_certificate_error(&e.to_string()) => tls_hint(&format!("{e:?} {e}")),
        sqlx::Error::Tls(e) => tls_hint(&format!("{e:?} {e}")),
        other if other.to_string().contains("password") && args.database_password_file.is_none() => {
            Some("Postgres asks for a password: set MEMBERLAKE_DATABASE_PASSWORD_FILE".into())
        }
        _ => None,
    }
}

/// Whether an error's text is a failed certificate check (rustls' words).
fn is_certificate_error(text: &str) -> bool {
    ["invalid peer certificate", "UnknownIssuer", "NotValidForName", "BadSignature", "Expired"]
        .iter()
        .any(|t| text.contains(t))
}

/// What to fix when the TLS handshake with Postgres failed.
fn tls_hint(text: &str) -> Option<String> {
    Some(if text.contains("does not support TLS") {
        "the Postgres server does not offer TLS, but MEMBERLAKE_DATABASE_TLS_CA_FILE (sslmode=verify-full) requires it"
            .into()
    } else if text.contains("NotValidForName") {
        "the Postgres server's certificate does not name the host in MEMBERLAKE_DATABASE_URL: connect by a name or \
         address the certificate lists"
            .into()
    } else if text.contains("UnknownIssuer") || text.contains("certificate") {
        "the Postgres server's certificate is not trusted: MEMBERLAKE_DATABASE_TLS_CA_FILE must hold the CA that \
         signed it"
            .into()
    } else {
        "the TLS handshake with Postgres failed: check MEMBERLAKE_DATABASE_TLS_CA_FILE".into()
    })
}

/// What to fix when the CQL nodes refused the session, from the refusal's text (the driver's
/// errors nest several levels deep; their text is stable enough to classify).
pub fn cql_hint(error_text: &str, args: &StoreArgs) -> Option<String> {
    let text = error_text;
    let tls = args.scylla_tls_ca_file.is_some();
    if text.contains("Authentication failed") || text.contains("Provided username") || text.contains("Bad credentials")
    {
        return Some(
            "the CQL nodes refused the user name or password: check MEMBERLAKE_SCYLLA_USERNAME and \
             MEMBERLAKE_SCYLLA_PASSWORD_FILE"
                .into(),
        );
    }
    if text.contains("Authentication") || text.contains("authenticat") {
        return Some(if args.scylla_username.is_none() {
            "the CQL nodes require authentication: set MEMBERLAKE_SCYLLA_USERNAME and MEMBERLAKE_SCYLLA_PASSWORD_FILE"
                .into()
        } else {
            "CQL authentication failed: check MEMBERLAKE_SCYLLA_USERNAME and MEMBERLAKE_SCYLLA_PASSWORD_FILE".into()
        });
    }
    if tls && (text.contains("NotValidForName") || text.contains("not valid for name")) {
        return Some(
            "a CQL node's certificate does not name the address connected to: list the nodes by an address the \
             certificates name, or set MEMBERLAKE_SCYLLA_TLS_SERVER_NAME to the name they carry"
                .into(),
        );
    }
    if tls && (text.contains("UnknownIssuer") || text.contains("invalid peer certificate")) {
        return Some(
            "a CQL node's certificate is not trusted: MEMBERLAKE_SCYLLA_TLS_CA_FILE must hold the CA that signed it"
                .into(),
        );
    }
    if tls
        && (text.contains("InvalidContentType")
            || text.contains("corrupt message")
            || text.contains("HandshakeFailure"))
    {
        return Some(
            "the CQL port does not speak TLS: unset MEMBERLAKE_SCYLLA_TLS_CA_FILE or list the nodes' TLS port".into(),
        );
    }
    if !tls
        && [
            "Connection reset",
            "connection reset",
            "Broken pipe",
            "broken pipe",
            "unexpected end",
            "early eof",
            "closed",
        ]
        .iter()
        .any(|t| text.contains(t))
    {
        return Some(
            "the CQL nodes closed the connection: if they require TLS (client_encryption_options), set \
             MEMBERLAKE_SCYLLA_TLS_CA_FILE"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_args() -> StoreArgs {
        let settings = crate::config::ConnectionSettings::try_parse_from(["t"]).unwrap();
        settings.store
    }

    use clap::Parser as _;

    #[test]
    fn a_secret_file_loses_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("memberlake-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (content, want) in
            [("hunter2\n", "hunter2"), ("hunter2\r\n", "hunter2"), ("a b \n\n", "a b \n"), ("x", "x")]
        {
            let path = dir.join("s");
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_secret("S", &path).unwrap(), want);
        }
        std::fs::write(dir.join("empty"), "\n").unwrap();
        assert!(read_secret("S", &dir.join("empty")).unwrap_err().to_string().contains("empty"));
        let missing = read_secret("MEMBERLAKE_X_FILE", &dir.join("missing")).unwrap_err().to_string();
        assert!(missing.contains("MEMBERLAKE_X_FILE") && missing.contains("missing"), "{missing}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_setting() {
        let dir = std::env::temp_dir().join(format!("memberlake-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut args = store_args();
        args.scylla_tls_ca_file = Some(path);
        let err = cql_tls(&args).unwrap_err().to_string();
        assert!(err.contains("MEMBERLAKE_SCYLLA_TLS_CA_FILE") && err.contains("certificate"), "{err}");
    }

    #[test]
    fn plaintext_needs_no_tls_configuration() {
        assert!(cql_tls(&store_args()).unwrap().is_none());
        assert!(cql_credentials(&store_args()).unwrap().is_none());
    }

    #[test]
    fn an_untrusted_postgres_certificate_names_the_ca_file() {
        let args = crate::config::ConnectionSettings::try_parse_from(["t"]).unwrap().database;
        // What sqlx returns when rustls rejects the server's certificate: an I/O error.
        let refused = sqlx::Error::Io(std::io::Error::other("invalid peer certificate: UnknownIssuer"));
        assert!(pg_hint(&refused, &args).unwrap_or_default().contains("MEMBERLAKE_DATABASE_TLS_CA_FILE"));
        let unreachable = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(pg_hint(&unreachable, &args), None, "an unreachable server is not a setting to fix");
    }

    #[test]
    fn cql_refusals_name_the_setting_to_fix() {
        let plain = store_args();
        let mut tls = store_args();
        tls.scylla_tls_ca_file = Some("/ca.pem".into());
        let hint = |text: &str, args: &StoreArgs| cql_hint(text, args).unwrap_or_default();
        assert!(hint("Authentication failed - Provided username memberlake and/or password are incorrect", &plain)
            .contains("MEMBERLAKE_SCYLLA_PASSWORD_FILE"));
        assert!(hint("Authentication is required but no authenticator was given", &plain)
            .contains("MEMBERLAKE_SCYLLA_USERNAME"));
        assert!(hint("invalid peer certificate: UnknownIssuer", &tls).contains("MEMBERLAKE_SCYLLA_TLS_CA_FILE"));
        assert!(hint("Connection reset by peer (os error 104)", &plain).contains("TLS"));
        assert_eq!(cql_hint("Connection refused (os error 111)", &plain), None);
    }
}
