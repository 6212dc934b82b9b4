//! Customer records in one SQLite file (`<data-dir>/customers.sqlite3`). Every `put` is a
//! committed, fsynced transaction before it returns; the file is held exclusively by this
//! process. See the crate docs for why SQLite and why these pragmas.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// File name inside the data directory.
pub const DB_FILE: &str = "customers.sqlite3";
/// Schema version recorded in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS customer (
    id   TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) WITHOUT ROWID;";

/// Why the database could not be opened or used.
#[derive(Debug)]
pub enum StoreError {
    /// The data directory could not be created.
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite refused to open or set up the file.
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file was written by a newer version of the app.
    SchemaTooNew { path: PathBuf, found: i64 },
    /// A query failed while serving.
    Query(rusqlite::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CreateDir { path, source } => write!(
                f,
                "cannot create the data directory {} (set with --data-dir): {source}",
                path.display()
            ),
            StoreError::Open { path, source } => {
                write!(f, "cannot open the database {}: {source}", path.display())?;
                if is_busy(source) {
                    write!(f, " (is another app instance using this --data-dir?)")?;
                }
                Ok(())
            }
            StoreError::SchemaTooNew { path, found } => write!(
                f,
                "the database {} has schema version {found}, newer than this app's {SCHEMA_VERSION}",
                path.display()
            ),
            StoreError::Query(source) => write!(f, "database query failed: {source}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The customer table behind one connection; a mutex serialises access.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Creates the directory if needed (mode 0700), opens or creates the database, takes the
    /// exclusive lock and applies the schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_dir(dir)?;
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        // Order matters: EXCLUSIVE before WAL keeps the WAL index in heap memory (no -shm
        // file, no shared mmap); FULL fsyncs the WAL at every commit.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stayed {mode}"
            ))));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { path, found });
        }
        // A write: takes the exclusive lock now, so a second instance fails at start-up.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(open_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data stored for `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT data FROM customer WHERE id = ?1")
            .map_err(StoreError::Query)?;
        stmt.query_row(params![id], |row| row.get(0))
            .optional()
            .map_err(StoreError::Query)
    }

    /// Inserts or replaces the data for `id`; durable when this returns `Ok`.
    pub fn put(&self, id: &str, data: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO customer (id, data) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            )
            .map_err(StoreError::Query)?;
        stmt.execute(params![id, data]).map_err(StoreError::Query)?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock aborts the process (panic = "abort" in release), and
        // SQLite's own transaction state does not depend on the guard: recover the inner value.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("app-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_put_is_read_back_and_replaced() {
        let dir = dir("rw");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.get("1").unwrap(), None);
        store.put("1", "Tom").unwrap();
        assert_eq!(store.get("1").unwrap().as_deref(), Some("Tom"));
        store.put("1", "Jerry").unwrap();
        assert_eq!(store.get("1").unwrap().as_deref(), Some("Jerry"));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_survive_reopening() {
        let dir = dir("reopen");
        Store::open(&dir).unwrap().put("ü/x", "données").unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.get("ü/x").unwrap().as_deref(), Some("données"));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = dir("twice");
        let first = Store::open(&dir).unwrap();
        let err = Store::open(&dir).err().expect("second open must fail");
        assert!(
            matches!(&err, StoreError::Open { source, .. } if is_busy(source)),
            "{err}"
        );
        assert!(err.to_string().contains("another app instance"));
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = dir("newer");
        drop(Store::open(&dir).unwrap());
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        drop(conn);
        let err = Store::open(&dir).err().expect("newer schema must fail");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 2, .. }),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_data_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir("mode");
        let store = Store::open(&dir.join("nested")).unwrap();
        let mode = std::fs::metadata(dir.join("nested"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
