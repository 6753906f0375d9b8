//! A real SMTP server on loopback: `smtp_server.py` (aiosmtpd, which
//! `.ci/run` installs) writing each message it takes into a directory, and
//! a throwaway CA with a server certificate for its STARTTLS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use super::workspace;

/// How long the server may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A message the server took.
#[derive(Clone, Debug, Deserialize)]
pub struct Mail {
    /// The envelope's `MAIL FROM`.
    pub mail_from: String,
    /// The envelope's `RCPT TO`s.
    pub rcpt_tos: Vec<String>,
    /// Whether the session was under TLS (after STARTTLS).
    pub tls: bool,
    /// The user that logged in, if any.
    pub login: Option<String>,
    /// The headers, decoded, in order.
    pub headers: Vec<(String, String)>,
    /// The plain-text body, its transfer encoding undone.
    pub body: String,
    /// The message as received.
    pub raw: String,
}

impl Mail {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the server is protected and who may log in.
#[derive(Default)]
pub struct SmtpOptions<'a> {
    /// STARTTLS with this certificate, required before `MAIL`.
    pub tls: Option<&'a Certificate>,
    /// AUTH required, as this user and password.
    pub login: Option<(&'a str, &'a str)>,
}

/// A running `smtp_server.py`, killed on drop.
pub struct SmtpServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl SmtpServer {
    /// Starts the server writing messages into `dir` (created) and waits
    /// until it listens. Its stderr goes to `<dir>.log`.
    pub fn start(dir: &Path, options: SmtpOptions<'_>) -> SmtpServer {
        std::fs::create_dir_all(dir).unwrap();
        let log_path = dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(workspace().join("tests/support/smtp_server.py"))
            .arg(dir);
        if let Some(cert) = options.tls {
            command.arg("--tls").arg(&cert.cert).arg(&cert.key);
        }
        if let Some((user, password)) = options.login {
            command.arg("--login").arg(format!("{user}:{password}"));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 cannot run smtp_server.py: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let Some(port) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "smtp_server.py did not start (aiosmtpd is installed by .ci/run): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        SmtpServer {
            port: port.parse().unwrap(),
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// Every message taken so far, in the order taken.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway CA and a server certificate it signed.
pub struct Certificate {
    /// The CA's certificate (PEM): what a client is told to trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Makes a CA and a certificate it signs for `names` (subjectAltName
/// entries like `IP:127.0.0.1,DNS:localhost`) in `dir`: `smtp-ca.pem`,
/// `smtp.pem`, `smtp.key`, with `openssl`.
pub fn certificate(dir: &Path, names: &str) -> Certificate {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl cannot run: {e}"));
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=redeploy smtp test CA",
            "-keyout",
            "smtp-ca.key",
            "-out",
            "smtp-ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-nodes",
            "-subj",
            "/CN=mail.example.test",
            "-keyout",
            "smtp.key",
            "-out",
            "smtp.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("smtp.ext"),
        format!(
            "subjectAltName={names}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "smtp.csr",
        "-CA",
        "smtp-ca.pem",
        "-CAkey",
        "smtp-ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "smtp.ext",
        "-out",
        "smtp.pem",
    ]);
    Certificate {
        ca: dir.join("smtp-ca.pem"),
        cert: dir.join("smtp.pem"),
        key: dir.join("smtp.key"),
    }
}
