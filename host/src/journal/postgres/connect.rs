//! Reading a database URL: tokio-postgres's configuration, the TLS
//! parameters it does not know (`sslmode`, `sslrootcert`) and the rustls
//! set-up they ask for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};

/// Checks that `url` is a database URL this build can use (scheme, TLS
/// parameters, root certificate file); the message never quotes the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    ConnectConfig::parse(url).map(|_| ())
}

/// How `sslmode` asks the server's certificate to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Not at all (libpq's `prefer` and `require` without a root file):
    /// encrypted, not authenticated.
    Nothing,
    /// Chained to a trusted root (`verify-ca`).
    Chain,
    /// Chained to a trusted root and naming the host (`verify-full`).
    ChainAndName,
}

/// A URL taken apart: tokio-postgres's config without the TLS parameters it
/// does not know, and the TLS set-up they ask for.
pub(super) struct ConnectConfig {
    pub(super) config: tokio_postgres::Config,
    pub(super) ssl_mode: SslMode,
    pub(super) tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl ConnectConfig {
    /// Reads `url`. Errors never quote the URL (it holds the password).
    pub(super) fn parse(url: &str) -> Result<ConnectConfig, String> {
        let mut parsed =
            url::Url::parse(url).map_err(|e| format!("the database URL is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "the database URL must start with postgres:// or postgresql://, not {}://",
                parsed.scheme()
            ));
        }
        let mut sslmode = None;
        let mut rootcert = None;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => sslmode = Some(value.into_owned()),
                "sslrootcert" => rootcert = Some(PathBuf::from(value.into_owned())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let config: tokio_postgres::Config = parsed
            .as_str()
            .parse()
            .map_err(|e| format!("the database URL cannot be used: {e}"))?;
        let (ssl_mode, verify) = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, Verify::Nothing),
            // As libpq: a root certificate given makes prefer and require
            // check the chain.
            "prefer" if rootcert.is_some() => (SslMode::Prefer, Verify::Chain),
            "prefer" => (SslMode::Prefer, Verify::Nothing),
            "require" if rootcert.is_some() => (SslMode::Require, Verify::Chain),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::ChainAndName),
            other => {
                return Err(format!(
                    "sslmode={other} is not supported: use disable, prefer, require, verify-ca or verify-full"
                ))
            }
        };
        let tls = tls_config(verify, rootcert.as_deref())?;
        Ok(ConnectConfig {
            config,
            ssl_mode,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    /// `postgres://user@host:port/dbname`: the URL without its password.
    pub(super) fn location(&self) -> String {
        let user = self.config.get_user().unwrap_or("");
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]"),
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or(user);
        format!("postgres://{user}@{host}:{port}/{db}")
    }
}

/// rustls's client configuration for `verify`, trusting the PEM
/// certificates in `rootcert` or, without one, the Mozilla roots.
fn tls_config(verify: Verify, rootcert: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?;
    if verify == Verify::Nothing {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "sslrootcert {}: cannot read certificates: {e}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "sslrootcert {}: holds no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?;
    Ok(match verify {
        Verify::ChainAndName => builder.with_webpki_verifier(webpki).with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            .with_no_client_auth(),
    })
}

/// `sslmode=prefer`/`require` without a root certificate, as libpq: the
/// connection is encrypted and the handshake's signatures are checked, but
/// any certificate is accepted.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the certificate must chain to a trusted root; the
/// name in it is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::PostgresOptions;

    #[test]
    fn a_url_is_read_without_its_password_showing_anywhere() {
        let parsed =
            ConnectConfig::parse("postgres://app:s3cret@db.internal:6543/journal?sslmode=require")
                .unwrap();
        assert_eq!(parsed.location(), "postgres://app@db.internal:6543/journal");
        assert_eq!(parsed.ssl_mode, SslMode::Require);
        let options = PostgresOptions::new("postgres://app:s3cret@db/journal");
        assert!(!format!("{options:?}").contains("s3cret"));

        for (url, problem) in [
            ("mysql://app:s3cret@db/x", "must start with postgres://"),
            (
                "postgres://app:s3cret@db/x?sslmode=allow",
                "sslmode=allow is not supported",
            ),
            ("not a url s3cret", "is not a URL"),
            (
                "postgres://app:s3cret@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem: cannot read certificates",
            ),
        ] {
            let err = ConnectConfig::parse(url).err().unwrap();
            assert!(err.contains(problem), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }
}
