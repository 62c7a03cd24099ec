//! The extension's errors: each knows its SQLSTATE and the words the user
//! sees. Kept free of the server's symbols so the pure modules' unit tests
//! can use it.

use std::ffi::c_void;
use std::fmt;
use std::io;

/// A SQLSTATE in the server's packed form (MAKE_SQLSTATE), so that codes
/// we name and codes the server reports are one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub i32);

impl SqlState {
    /// Packs five characters of [0-9A-Z] as MAKE_SQLSTATE does.
    pub const fn of(code: &[u8; 5]) -> SqlState {
        let mut packed = 0i32;
        let mut i = 0;
        while i < 5 {
            packed += ((code[i].wrapping_sub(b'0') as i32) & 0x3F) << (6 * i);
            i += 1;
        }
        SqlState(packed)
    }

    /// The five characters back, as the client sees them.
    #[cfg(test)]
    pub fn text(self) -> String {
        (0..5)
            .map(|i| (((self.0 >> (6 * i)) & 0x3F) as u8).wrapping_add(b'0') as char)
            .collect()
    }
}

pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState::of(b"55000");
pub const INVALID_PARAMETER_VALUE: SqlState = SqlState::of(b"22023");
pub const INTERNAL_ERROR: SqlState = SqlState::of(b"XX000");
pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState::of(b"42501");
pub const WRONG_OBJECT_TYPE: SqlState = SqlState::of(b"42809");
pub const UNDEFINED_FILE: SqlState = SqlState::of(b"58P01");
pub const DUPLICATE_FILE: SqlState = SqlState::of(b"58P02");
pub const DISK_FULL: SqlState = SqlState::of(b"53100");
pub const INSUFFICIENT_RESOURCES: SqlState = SqlState::of(b"53000");
pub const IO_ERROR: SqlState = SqlState::of(b"58030");
pub const ADMIN_SHUTDOWN: SqlState = SqlState::of(b"57P01");

#[derive(Debug)]
pub enum Error {
    /// An error of ours (or one the start worker passed on), to be raised
    /// with ereport.
    Report {
        sqlstate: SqlState,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// An error the server raised inside a guarded call, to be re-thrown.
    Server(ServerError),
}

/// The server's copy of an error (an ErrorData in server memory).
#[derive(Debug, Clone, Copy)]
pub struct ServerError(pub *mut c_void);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(sqlstate: SqlState, message: impl Into<String>) -> Self {
        Error::Report {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, text: impl Into<String>) -> Self {
        if let Error::Report { detail, .. } = &mut self {
            *detail = Some(text.into());
        }
        self
    }

    pub fn hint(mut self, text: impl Into<String>) -> Self {
        if let Error::Report { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    pub fn file(verb: &str, path: &str, err: &io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(0);
        Error::new(
            sqlstate_for_errno(errno),
            format!("could not {verb} file \"{path}\": {}", strerror(err)),
        )
    }

    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        Error::new(INTERNAL_ERROR, format!("pg_exclusive_backup internal error: {what}"))
            .hint("This is a bug in pg_exclusive_backup; the backup state was left as it was before the call.")
    }

    /// The SQLSTATE of an error of ours; `None` for a server error.
    #[cfg(test)]
    pub fn sqlstate(&self) -> Option<SqlState> {
        match self {
            Error::Report { sqlstate, .. } => Some(*sqlstate),
            Error::Server(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Report { message, .. } => f.write_str(message),
            Error::Server(_) => f.write_str("server error"),
        }
    }
}

/// A start refused because an exclusive backup runs (or is being started).
pub fn already_running() -> Error {
    Error::new(OBJECT_NOT_IN_PREREQUISITE_STATE, "a backup is already in progress")
        .hint("Run pg_stop_backup() and try again.")
}

/// A start or stop refused on a server in recovery, in the server's words.
pub fn recovery_in_progress() -> Error {
    Error::new(OBJECT_NOT_IN_PREREQUISITE_STATE, "recovery is in progress")
        .hint("WAL control functions cannot be executed during recovery.")
}

/// A stop refused because no exclusive backup runs.
pub fn not_running() -> Error {
    Error::new(OBJECT_NOT_IN_PREREQUISITE_STATE, "exclusive backup not in progress")
        .hint("Did you call pg_start_backup()?")
}

/// The system's words for an I/O error, without Rust's "(os error N)".
pub fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The SQLSTATE the server's errcode_for_file_access() gives an errno.
pub fn sqlstate_for_errno(errno: i32) -> SqlState {
    match errno {
        libc::EPERM | libc::EACCES | libc::EROFS => INSUFFICIENT_PRIVILEGE,
        libc::ENOENT => UNDEFINED_FILE,
        libc::EEXIST => DUPLICATE_FILE,
        libc::ENOTDIR | libc::EISDIR | libc::ENOTEMPTY => WRONG_OBJECT_TYPE,
        libc::ENOSPC => DISK_FULL,
        libc::ENFILE | libc::EMFILE => INSUFFICIENT_RESOURCES,
        libc::EIO => IO_ERROR,
        _ => INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_make_sqlstate() {
        // ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE and ERRCODE_INTERNAL_ERROR
        // as the server's headers compute them.
        assert_eq!(OBJECT_NOT_IN_PREREQUISITE_STATE.0, 5 | (5 << 6));
        assert_eq!(INTERNAL_ERROR.0, 40 | (40 << 6));
        assert_eq!(UNDEFINED_FILE.0, 5 | (8 << 6) | (32 << 12) | (1 << 24));
        for code in ["55000", "XX000", "58P01", "57P01", "42809"] {
            let b: [u8; 5] = code.as_bytes().try_into().unwrap();
            assert_eq!(SqlState::of(&b).text(), code);
        }
    }

    #[test]
    fn file_errors_read_like_the_server() {
        let e = Error::file("write", "backup_label", &io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.sqlstate(), Some(DISK_FULL));
        assert_eq!(
            e.to_string(),
            "could not write file \"backup_label\": No space left on device"
        );
        let e = Error::file("open", "backup_label", &io::Error::from_raw_os_error(libc::EISDIR));
        assert_eq!(e.sqlstate(), Some(WRONG_OBJECT_TYPE));
        let e = Error::file("open", "backup_label", &io::Error::from_raw_os_error(libc::ELOOP));
        assert_eq!(e.sqlstate(), Some(INTERNAL_ERROR));
    }

    #[test]
    fn panic_payloads_become_internal_errors() {
        let e = Error::from_panic(&"boom");
        assert_eq!(e.sqlstate(), Some(INTERNAL_ERROR));
        assert!(e.to_string().contains("boom"));
        let e = Error::from_panic(&String::from("bang"));
        assert!(e.to_string().contains("bang"));
    }
}
