//! The extension's errors: each knows its SQLSTATE and the words the user
//! sees. Kept free of the server's symbols so the pure modules' unit tests
//! can use it.

use std::ffi::c_void;
use std::fmt;
use std::io;

/// A five-character SQLSTATE, e.g. `*b"55000"`.
pub type SqlState = [u8; 5];

pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = *b"55000";
pub const INVALID_PARAMETER_VALUE: SqlState = *b"22023";
pub const INTERNAL_ERROR: SqlState = *b"XX000";

#[derive(Debug)]
pub enum Error {
    /// An error of ours, reported with ereport(ERROR) at the SQL entry point.
    Report {
        sqlstate: SqlState,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// An error the server raised inside a guarded call, held as its copied
    /// ErrorData and re-thrown unchanged, so the user sees exactly what the
    /// server said (SQLSTATE, message, context).
    Server(ServerError),
    /// An error reported by another process (the start worker), with the
    /// server's packed SQLSTATE.
    Raw {
        sqlerrcode: i32,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
}

/// A caught server error (`ErrorData *` in the caller's memory context).
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
        if let Error::Report { detail, .. } | Error::Raw { detail, .. } = &mut self {
            *detail = Some(text.into());
        }
        self
    }

    pub fn hint(mut self, text: impl Into<String>) -> Self {
        if let Error::Report { hint, .. } | Error::Raw { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    /// "could not <verb> file "<path>": <strerror>", with the SQLSTATE the
    /// server's errcode_for_file_access() would pick for that errno.
    pub fn file(verb: &str, path: &str, err: &io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(0);
        Error::new(
            sqlstate_for_errno(errno),
            format!("could not {verb} file \"{path}\": {}", strerror(err)),
        )
    }

    /// The panic payload's text, if it has one, as an internal error.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        Error::new(INTERNAL_ERROR, format!("pg_exclusive_backup internal error: {what}"))
            .hint("This is a bug in pg_exclusive_backup; the backup state was left as it was before the call.")
    }

    #[cfg(test)]
    pub fn sqlstate(&self) -> Option<SqlState> {
        match self {
            Error::Report { sqlstate, .. } => Some(*sqlstate),
            Error::Server(_) | Error::Raw { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Report { message, .. } | Error::Raw { message, .. } => f.write_str(message),
            Error::Server(_) => f.write_str("server error"),
        }
    }
}

/// io::Error's Display adds " (os error N)"; the server prints plain %m.
fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The same mapping as the server's errcode_for_file_access().
pub fn sqlstate_for_errno(errno: i32) -> SqlState {
    match errno {
        libc::EPERM | libc::EACCES | libc::EROFS => *b"42501",
        libc::ENOENT => *b"58P01",
        libc::EEXIST => *b"58P02",
        libc::ENOTDIR | libc::EISDIR | libc::ENOTEMPTY => *b"58030",
        libc::ENOSPC => *b"53100",
        libc::ENFILE | libc::EMFILE => *b"53000",
        _ => *b"58030",
    }
}

/// The server's packed form of a SQLSTATE (MAKE_SQLSTATE).
pub fn packed_sqlstate(code: SqlState) -> i32 {
    code.iter().enumerate().fold(0i32, |acc, (i, &c)| {
        acc + ((i32::from(c.wrapping_sub(b'0')) & 0x3F) << (6 * i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_make_sqlstate() {
        // ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE and ERRCODE_INTERNAL_ERROR
        // as the server's headers compute them.
        assert_eq!(packed_sqlstate(*b"55000"), 5 | (5 << 6));
        assert_eq!(packed_sqlstate(*b"XX000"), 40 | (40 << 6));
        assert_eq!(packed_sqlstate(*b"58P01"), 5 | (8 << 6) | (32 << 12) | (1 << 24));
    }

    #[test]
    fn file_errors_read_like_the_server() {
        let e = Error::file("write", "backup_label", &io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.sqlstate(), Some(*b"53100"));
        assert_eq!(
            e.to_string(),
            "could not write file \"backup_label\": No space left on device"
        );
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
