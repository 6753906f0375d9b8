//! What can go wrong with the journal, on either backend.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::sql::DbError;
use super::DeployState;

/// Everything that can go wrong with the journal. Each message names the
/// journal file and, where there is one, the operation that failed, e.g.
/// `journal /x/journal.sqlite3: cannot open: unable to open database file`.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal's directory does not exist and cannot be created (or
    /// exists and is not a directory).
    #[error("journal {}: cannot create directory {}: {source}", path.display(), dir.display())]
    CreateDir {
        /// The journal file.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal file does not exist and cannot be created (typically: its
    /// directory is not writable).
    #[error("journal {}: cannot create file: {source}", path.display())]
    CreateFile {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal's write-ahead log could not be opened for the syncs
    /// that make commits durable.
    #[error("journal {}: cannot open its write-ahead log: {source}", path.display())]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`Journal::open_read_only`] was asked for a journal that does not
    /// exist.
    #[error(
        "journal {}: does not exist yet: nothing has run with this state directory (`redeploy serve`, the post-receive hook, `hook-url` and `trigger --local` create it); check server.state_dir",
        path.display()
    )]
    Missing {
        /// The journal file.
        path: PathBuf,
    },
    /// The file exists but has no journal schema in it (read-only open of a
    /// file that was never initialised by `redeploy serve`).
    #[error("journal {}: is not a redeploy journal (no schema)", path.display())]
    NotAJournal {
        /// The journal file.
        path: PathBuf,
    },
    /// The journal was written by a newer `redeploy` whose schema this build
    /// does not know.
    #[error(
        "journal {location}: schema version {found} is newer than this redeploy supports \
         ({supported}); upgrade redeploy"
    )]
    TooNew {
        /// The journal file, or the database URL without its password.
        location: String,
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows for that backend.
        supported: i64,
    },
    /// A database opened to read has no schema yet, or an older one than
    /// this build's.
    #[error(
        "journal {location}: schema version {found} is older than this redeploy's ({supported}): \
         start `redeploy serve` or run `redeploy journal migrate` first"
    )]
    Outdated {
        /// The database URL without its password.
        location: String,
        /// The version found (0: none).
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// SQLite refused to switch the journal to WAL mode (e.g. on a network
    /// file system without shared memory support).
    #[error(
        "journal {}: cannot set journal_mode=WAL: SQLite kept journal_mode={mode} \
         (does the file system support WAL?)",
        path.display()
    )]
    WalUnsupported {
        /// The journal file.
        path: PathBuf,
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// The database failed during `op` (e.g. `"open"`, `"insert deploy"`).
    #[error("journal {location}: cannot {op}: {source}")]
    Database {
        /// The journal file, or the database URL without its password.
        location: String,
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// The underlying error.
        source: DbError,
    },
    /// The state directory belongs to another user, or its group or others
    /// may write it or a directory on its path
    /// ([`crate::ownership::check_state_dir`]): nothing was created.
    #[error(transparent)]
    NotOwner(crate::ownership::OwnershipError),
    /// The file system refuses this user the journal (or a directory on the
    /// way to it): who owns what, instead of SQLite's "unable to open
    /// database file".
    #[error("journal {}: {denied}", path.display())]
    PermissionDenied {
        /// The journal file.
        path: PathBuf,
        /// Who owns what refuses access, and who is running (part of this
        /// message, not a source: the chain prints it once).
        denied: crate::ownership::OwnershipError,
    },
    /// [`Journal::transition`] was asked for a deploy id that does not exist.
    #[error("journal {location}: cannot transition deploy {id}: no such deploy")]
    UnknownDeploy {
        /// The journal file, or the database URL without its password.
        location: String,
        /// The deploy id asked for.
        id: i64,
    },
    /// [`Journal::transition`] was asked for a transition that
    /// [`DeployState::can_transition_to`] forbids; nothing was changed.
    #[error("journal: cannot transition deploy {id}: illegal transition {from} -> {to}")]
    IllegalTransition {
        /// The deploy id.
        id: i64,
        /// The deploy's current state.
        from: DeployState,
        /// The state asked for.
        to: DeployState,
    },
}

impl JournalError {
    /// A database error during `op` on the journal at `location`.
    pub fn database(
        location: impl fmt::Display,
        op: &'static str,
        source: impl Into<DbError>,
    ) -> Self {
        JournalError::Database {
            location: location.to_string(),
            op,
            source: source.into(),
        }
    }
}
