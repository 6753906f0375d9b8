//! `redeploy journal`: the journal itself. `migrate` brings its schema up
//! to date (as every start does) and says which version it is at; `export`
//! writes every row to a file and `import` reads one into a new journal,
//! which is how a SQLite journal moves to PostgreSQL with its history, its
//! hook tokens (every hook URL keeps working) and its server keys.

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::SecretScope;

/// Journal commands.
#[derive(Debug, clap::Args)]
pub struct JournalCommand {
    /// What to do.
    #[command(subcommand)]
    pub command: JournalSubcommand,
}

/// `redeploy journal` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JournalSubcommand {
    /// Create or migrate the journal's schema and print its version.
    Migrate(Migrate),
    /// Write every row of the journal to a new file (private: it holds the
    /// hook tokens); stop the server first.
    Export(Export),
    /// Read an export into the configured journal, which must be new.
    Import(Import),
}

/// `redeploy journal migrate`.
#[derive(Debug, clap::Args)]
pub struct Migrate {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

/// `redeploy journal export`.
#[derive(Debug, clap::Args)]
pub struct Export {
    /// The file to create (refused if it exists); created `0600`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

/// `redeploy journal import`.
#[derive(Debug, clap::Args)]
pub struct Import {
    /// A file `redeploy journal export` wrote.
    pub file: PathBuf,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl JournalCommand {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            JournalSubcommand::Migrate(c) => c.execute(),
            JournalSubcommand::Export(c) => c.execute(),
            JournalSubcommand::Import(c) => c.execute(),
        }
    }
}

impl Migrate {
    /// Opens (so creates or migrates) the journal and prints its version.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(SecretScope::NoStack)?;
        let journal = super::open_state(&config)?;
        crate::cli::print_line(format_args!(
            "journal {}: schema version {}",
            journal.location(),
            journal.schema_version()?
        ))?;
        Ok(())
    }
}

impl Export {
    /// Writes the export.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(SecretScope::NoStack)?;
        let journal = super::open_state(&config)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.output)
            .with_context(|| format!("cannot create {}", self.output.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let written = journal
            .export(&mut |line| writeln!(out, "{line}"))
            .map_err(anyhow::Error::from)
            .and_then(|rows| {
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|file| file.sync_all())
                    .with_context(|| format!("cannot write {}", self.output.display()))?;
                Ok(rows)
            });
        // An export that failed midway is no export: a file of whole lines
        // it left would import as if it were one.
        let rows = match written {
            Ok(rows) => rows,
            Err(e) => {
                let _ = std::fs::remove_file(&self.output);
                return Err(e);
            }
        };
        crate::cli::print_line(format_args!(
            "exported {rows} rows of journal {} to {}",
            journal.location(),
            self.output.display()
        ))?;
        Ok(())
    }
}

impl Import {
    /// Reads the export in, all or nothing.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(SecretScope::NoStack)?;
        let journal = super::open_state(&config)?;
        let file = std::fs::File::open(&self.file)
            .with_context(|| format!("cannot open {}", self.file.display()))?;
        let rows = journal
            .import(std::io::BufReader::new(file).lines())
            .with_context(|| format!("{}: nothing was imported", self.file.display()))?;
        crate::cli::print_line(format_args!(
            "imported {rows} rows from {} into journal {}",
            self.file.display(),
            journal.location()
        ))?;
        Ok(())
    }
}
