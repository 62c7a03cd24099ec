//! Durable, race-free handling of backup_label and tablespace_map.
//!
//! Plain Rust over the file system, no server calls, so nothing here can
//! longjmp. Every change is made durable the way the server makes its own
//! control files durable: write a private temporary file, fsync it, move it
//! into place, fsync the directory. A reader (the server at restart, a
//! snapshot, a copy tool) therefore sees either no file or a whole one,
//! never a half-written label.
//!
//! backup_label doubles as the lock that makes a backup exclusive: it is
//! published with link(2), which fails if the name exists, so of several
//! sessions racing pg_start_backup exactly one wins.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const BACKUP_LABEL: &str = "backup_label";
pub const TABLESPACE_MAP: &str = "tablespace_map";
/// The control file, relative to the data directory: the server and its
/// tools only ever rewrite it in place.
pub const CONTROL_FILE: &str = "global/pg_control";
/// Where the server moves a backup_label it found at startup.
pub const BACKUP_LABEL_OLD: &str = "backup_label.old";
/// Where the server, and the postmaster in preload mode, move
/// tablespace_map along with backup_label.
pub const TABLESPACE_MAP_OLD: &str = "tablespace_map.old";

/// The identity of a file, as far as telling it from a copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Birth time (seconds, nanoseconds), when the file system records it.
    pub birth: Option<(i64, u32)>,
}

/// The identity of no file, for a record whose label's file is gone.
pub const NO_FILE: FileId = FileId {
    dev: 0,
    ino: 0,
    birth: None,
};

impl FileId {
    /// Whether `self` and `other` are one file: `None` when only birth
    /// times could tell and one of them is unknown. The device number is
    /// left out: it can change across a reboot (device-mapper, NVMe
    /// enumeration), and a block-level image keeps inode numbers and birth
    /// times on another device.
    pub fn same_file(self, other: FileId) -> Option<bool> {
        if self.ino != other.ino {
            return Some(false);
        }
        match (self.birth, other.birth) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        }
    }
}

/// Backends and background workers run with the data directory as their
/// working directory.
#[cfg(not(test))]
pub fn data_dir() -> &'static Path {
    Path::new(".")
}

#[cfg(test)]
thread_local! {
    static TEST_DATA_DIR: std::cell::Cell<&'static Path> = std::cell::Cell::new(Path::new("."));
}

/// The unit tests' data directory: the one this thread was given.
#[cfg(test)]
pub fn data_dir() -> &'static Path {
    TEST_DATA_DIR.with(|d| d.get())
}

/// Makes `dir` this thread's data directory, for a unit test.
#[cfg(test)]
pub fn use_data_dir(dir: &Path) {
    let dir: &'static Path = Box::leak(dir.to_path_buf().into_boxed_path());
    TEST_DATA_DIR.with(|d| d.set(dir));
}

/// What publishing an exclusive file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    Created,
    AlreadyExists,
}

fn tmp_name(name: &str) -> String {
    format!("{name}.tmp.{}", std::process::id())
}

/// The server creates files with the data directory's group access
/// (initdb --allow-group-access); follow the directory.
fn file_mode(dir: &Path) -> u32 {
    match fs::metadata(dir) {
        Ok(m) if m.mode() & 0o070 != 0 => 0o640,
        _ => 0o600,
    }
}

/// Reads a small control file; `None` when it does not exist. At most
/// `limit + 1` bytes are read, so a huge file cannot exhaust memory and the
/// caller still sees that it is too long. Only a regular file is read: the
/// open neither follows a symlink nor waits for a FIFO's writer, and
/// anything else under the name is an error that names it.
pub fn read_optional(dir: &Path, name: &str, limit: usize) -> Result<Option<Vec<u8>>> {
    // Named before opening: opening a socket fails with a less helpful
    // error, and the descriptor's own type is checked after the open too.
    if regular_or_absent(dir, name)?.is_none() {
        return Ok(None);
    }
    let Some(file) = open_regular(dir, name, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    // Sized up front: one read for the content, one to see the end.
    let mut content = Vec::with_capacity(limit + 1);
    file.take(limit as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| Error::file("read", name, &e))?;
    Ok(Some(content))
}

/// Opens `name` with `options`, never following a symlink nor waiting for
/// a FIFO's writer, and only if it is a regular file (else an error naming
/// it); `None` if it does not exist.
fn open_regular(dir: &Path, name: &str, options: &mut OpenOptions) -> Result<Option<File>> {
    let file = match options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(dir.join(name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular(name, "a symbolic link")),
        Err(e) => return Err(Error::file("open", name, &e)),
    };
    let meta = file.metadata().map_err(|e| Error::file("stat", name, &e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(name, kind_of(&meta.file_type())));
    }
    Ok(Some(file))
}

/// What a file type is, in words: "a directory", "a FIFO", ...
pub fn kind_of(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Something other than a regular file lies where a label or map belongs:
/// never ours, never to be followed or waited on.
pub fn not_regular(name: &str, kind: &str) -> Error {
    Error::new(
        crate::error::WRONG_OBJECT_TYPE,
        format!("\"{name}\" in the data directory is not a regular file"),
    )
    .detail(format!(
        "It is {kind}; pg_exclusive_backup only ever writes regular files there."
    ))
    .hint(format!("Move \"{name}\" out of the data directory."))
}

/// The kind of what lies under `name`, without following a symlink:
/// `None` if nothing does.
pub fn regular_or_absent(dir: &Path, name: &str) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(dir.join(name)) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m)),
        Ok(m) => Err(not_regular(name, kind_of(&m.file_type()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file("stat", name, &e)),
    }
}

/// The file whose flock(2) serialises the changes of backup_label and
/// tablespace_map. A file of our own, not the data directory itself, so
/// that a script's `flock $PGDATA ...` cannot block us.
pub const LOCK_FILE: &str = "pg_exclusive_backup.lock";

/// An exclusive flock(2) on [`LOCK_FILE`], dropped when this is dropped,
/// and by the kernel when the holder exits, however it exits. disk.rs owns
/// it: see its `Lock`.
pub struct DirLock(File);

impl DirLock {
    /// Takes the lock if nobody holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<DirLock>> {
        use std::os::unix::io::AsRawFd;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).mode(file_mode(dir));
        // Created if missing, so never absent.
        let Some(f) = open_regular(dir, LOCK_FILE, &mut options)? else {
            return Err(Error::file(
                "open",
                LOCK_FILE,
                &io::Error::from(io::ErrorKind::NotFound),
            ));
        };
        // SAFETY: plain system call on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(DirLock(f)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(None),
            _ => Err(Error::file("lock", LOCK_FILE, &e)),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: plain system call; closing the descriptor would drop the
        // lock as well, this only makes it explicit.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Writes `content` to a fresh temporary file next to `name` and fsyncs it.
fn write_tmp(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(tmp_name(name));
    // A file of this name can only be left over from a crashed backend that
    // had our pid; it is garbage.
    let _ = fs::remove_file(&tmp);
    let shown = tmp_name(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode(dir))
            .open(&tmp)
            .map_err(|e| Error::file("create", &shown, &e))?;
        f.write_all(content).map_err(|e| Error::file("write", &shown, &e))?;
        f.sync_all().map_err(|e| Error::file("fsync", &shown, &e))?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes the directory's entries durable. As the server does, EBADF and
/// EINVAL are taken to mean the file system cannot fsync a directory.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::EINVAL)) => Ok(()),
        Err(e) => Err(Error::file("fsync", &dir.display().to_string(), &e)),
    }
}

/// Creates `name` with `content` unless it already exists, atomically and
/// durably.
#[cfg(test)]
pub fn publish_exclusive(dir: &Path, name: &str, content: &[u8]) -> Result<Published> {
    let linked = Prepared::write(dir, name, content)?.link_exclusive()?;
    if linked == Published::Created {
        fsync_dir(dir)?;
    }
    Ok(linked)
}

/// Content written and fsynced under a private temporary name, ready to be
/// put in place by a link or rename that cannot run out of space or leave
/// half a file. The temporary file is removed when this is dropped.
pub struct Prepared {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
}

impl Prepared {
    pub fn write(dir: &Path, name: &str, content: &[u8]) -> Result<Prepared> {
        let tmp = write_tmp(dir, name, content)?;
        Ok(Prepared {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            tmp,
        })
    }

    /// Links the content in as `name` unless `name` exists; the caller
    /// makes it durable with [`fsync_dir`] once it owns the name.
    pub fn link_exclusive(self) -> Result<Published> {
        match fs::hard_link(&self.tmp, self.dir.join(&self.name)) {
            Ok(()) => Ok(Published::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Published::AlreadyExists),
            Err(e) => Err(Error::file("link", &self.name, &e)),
        }
    }

    /// The identity the file will have once it is in place: a link keeps
    /// the inode and its birth time.
    pub fn file_id(&self) -> Result<FileId> {
        file_id(&self.tmp).map_err(|e| Error::file("stat", &self.tmp.display().to_string(), &e))
    }

    /// Renames the content in as `name`, replacing whatever file is there.
    pub fn replace(self) -> Result<()> {
        fs::rename(&self.tmp, self.dir.join(&self.name)).map_err(|e| Error::file("rename", &self.name, &e))?;
        fsync_dir(&self.dir)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Gone already after a successful replace; after a link, the name
        // in place keeps the content.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Moves `from` back to `to` unless `to` exists (link, then unlink), so
/// that putting a file back can never overwrite a newer one. Returns
/// whether it was put back.
pub fn put_back(dir: &Path, from: &str, to: &str) -> Result<bool> {
    match fs::hard_link(dir.join(from), dir.join(to)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::file("link", to, &e)),
    }
    let _ = fs::remove_file(dir.join(from));
    fsync_dir(dir)?;
    Ok(true)
}

/// Creates or replaces `name` with `content`, atomically and durably.
pub fn replace(dir: &Path, name: &str, content: &[u8]) -> Result<()> {
    Prepared::write(dir, name, content)?.replace()
}

/// Removes `name` durably. Returns whether it existed.
pub fn remove(dir: &Path, name: &str) -> Result<bool> {
    let removed = unlink(dir, name)?;
    if removed {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Removes `name`; durable only once the directory is fsynced (by the
/// caller's next durable change in it). Returns whether it existed.
pub fn unlink(dir: &Path, name: &str) -> Result<bool> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::file("remove", name, &e)),
    }
}

/// Renames `from` to `to` durably. Returns false if `from` did not exist:
/// since rename(2) is atomic, of two sessions renaming the same file only one
/// gets true. An error names both files, and what lies under `to` when
/// that is what stopped the rename. An error of the directory's fsync
/// comes after the rename happened.
pub fn rename(dir: &Path, from: &str, to: &str) -> Result<bool> {
    let renamed = rename_undurably(dir, from, to)?;
    if renamed {
        fsync_dir(dir)?;
    }
    Ok(renamed)
}

/// [`rename`] without the directory's fsync, for a caller that must know
/// whether the rename itself happened before the fsync can fail.
pub fn rename_undurably(dir: &Path, from: &str, to: &str) -> Result<bool> {
    match fs::rename(dir.join(from), dir.join(to)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            let error = Error::new(
                crate::error::sqlstate_for_errno(e.raw_os_error().unwrap_or(0)),
                format!(
                    "could not rename file \"{from}\" to \"{to}\": {}",
                    crate::error::strerror(&e)
                ),
            );
            Err(match blocking(dir, to) {
                Some(kind) => error
                    .detail(format!("\"{to}\" in the data directory is {kind}."))
                    .hint(format!("Move \"{to}\" out of the data directory.")),
                None => error,
            })
        }
    }
}

/// What lies under `name` when it is there and is not a regular file
/// (which no rename can replace, and no one should write into).
pub fn blocking(dir: &Path, name: &str) -> Option<&'static str> {
    match fs::symlink_metadata(dir.join(name)) {
        Ok(m) if !m.file_type().is_file() => Some(kind_of(&m.file_type())),
        _ => None,
    }
}

/// What lies under a name, as a judgement of it needs to know.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Absent,
    /// A regular file: its first bytes (at most the limit asked for, plus
    /// one) and its size.
    File {
        head: Vec<u8>,
        size: u64,
    },
    /// Something else: what.
    NotAFile(&'static str),
    /// What could not be examined or read: "cannot be opened: <why>".
    Unreadable(String),
}

/// Examines `name` without following a symlink or waiting for a FIFO's
/// writer, reading at most `limit + 1` bytes of it.
pub fn examine(dir: &Path, name: &str, limit: usize) -> Entry {
    let why = |verb: &str, e: &io::Error| Entry::Unreadable(format!("cannot be {verb}: {}", crate::error::strerror(e)));
    match fs::symlink_metadata(dir.join(name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Absent,
        Err(e) => return why("examined", &e),
        Ok(m) if !m.file_type().is_file() => return Entry::NotAFile(kind_of(&m.file_type())),
        Ok(_) => {}
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(dir.join(name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Entry::NotAFile("a symbolic link"),
        Err(e) => return why("opened", &e),
    };
    let meta = match file.metadata() {
        Ok(m) if !m.file_type().is_file() => return Entry::NotAFile(kind_of(&m.file_type())),
        Ok(m) => m,
        Err(e) => return why("examined", &e),
    };
    let mut head = Vec::with_capacity(limit + 1);
    match file.take(limit as u64 + 1).read_to_end(&mut head) {
        Ok(_) => Entry::File { head, size: meta.len() },
        Err(e) => why("read", &e),
    }
}

/// The inode identity of `path` itself (a symlink is not followed),
/// with its birth time when the file system records one.
pub fn file_id(path: &Path) -> io::Result<FileId> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an all-zero statx is a valid value of a plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `stx` is writable; both outlive the
    // call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_INO | libc::STATX_BTIME,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let birth = (stx.stx_mask & libc::STATX_BTIME != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec));
    Ok(FileId {
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        birth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("peb-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    const ID: FileId = FileId {
        dev: 2049,
        ino: 131_075,
        birth: Some((1_795_575_906, 123_456_789)),
    };

    #[test]
    fn files_are_the_same_only_when_it_is_certain() {
        assert_eq!(ID.same_file(ID), Some(true));
        assert_eq!(ID.same_file(FileId { dev: 1, ..ID }), Some(true));
        assert_eq!(ID.same_file(FileId { ino: 9, ..ID }), Some(false));
        assert_eq!(
            ID.same_file(FileId {
                birth: Some((1, 2)),
                ..ID
            }),
            Some(false)
        );
        let unknown = FileId { birth: None, ..ID };
        assert_eq!(ID.same_file(unknown), None);
        assert_eq!(unknown.same_file(unknown), None);
        assert_eq!(unknown.same_file(FileId { ino: 9, ..unknown }), Some(false));
    }

    #[test]
    fn publish_is_exclusive_and_leaves_no_temporary_file() {
        let d = scratch("publish");
        assert_eq!(
            publish_exclusive(&d, BACKUP_LABEL, b"first\n").unwrap(),
            Published::Created
        );
        assert_eq!(
            publish_exclusive(&d, BACKUP_LABEL, b"second\n").unwrap(),
            Published::AlreadyExists
        );
        assert_eq!(fs::read(d.join(BACKUP_LABEL)).unwrap(), b"first\n");
        assert_eq!(names(&d), vec![BACKUP_LABEL.to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn racing_publishers_have_exactly_one_winner() {
        let d = scratch("race");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let d = d.clone();
                    s.spawn(move || {
                        // Threads share a pid, so give each its own name space.
                        let sub = d.join(format!("t{i}"));
                        fs::create_dir_all(&sub).unwrap();
                        let tmp = write_tmp(&sub, "x", format!("{i}\n").as_bytes()).unwrap();
                        fs::hard_link(&tmp, d.join(BACKUP_LABEL)).is_ok() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_overwrites_and_remove_reports_presence() {
        let d = scratch("replace");
        replace(&d, TABLESPACE_MAP, b"old\n").unwrap();
        replace(&d, TABLESPACE_MAP, b"new\n").unwrap();
        assert_eq!(read_optional(&d, TABLESPACE_MAP, 100).unwrap(), Some(b"new\n".to_vec()));
        assert!(remove(&d, TABLESPACE_MAP).unwrap());
        assert!(!remove(&d, TABLESPACE_MAP).unwrap());
        assert_eq!(read_optional(&d, TABLESPACE_MAP, 100).unwrap(), None);
        assert!(names(&d).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_is_bounded() {
        let d = scratch("bounded");
        fs::write(d.join("big"), vec![b'x'; 10_000]).unwrap();
        assert_eq!(read_optional(&d, "big", 100).unwrap().unwrap().len(), 101);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rename_has_one_winner() {
        let d = scratch("rename");
        fs::write(d.join("a"), b"x").unwrap();
        assert!(rename(&d, "a", "b").unwrap());
        assert!(!rename(&d, "a", "c").unwrap());
        assert_eq!(names(&d), vec!["b".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn mode_follows_group_access_of_the_directory() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("mode");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
        replace(&d, "g", b"x").unwrap();
        assert_eq!(fs::metadata(d.join("g")).unwrap().mode() & 0o777, 0o640);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        replace(&d, "p", b"x").unwrap();
        assert_eq!(fs::metadata(d.join("p")).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let d = scratch("fail");
        // A directory in the way of the final name makes the rename fail.
        fs::create_dir(d.join(TABLESPACE_MAP)).unwrap();
        fs::write(d.join(TABLESPACE_MAP).join("f"), b"x").unwrap();
        let e = replace(&d, TABLESPACE_MAP, b"x").unwrap_err();
        assert!(
            e.to_string().starts_with("could not rename file \"tablespace_map\""),
            "{e}"
        );
        assert_eq!(names(&d), vec![TABLESPACE_MAP.to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn file_identity_survives_a_link_and_not_a_copy() {
        let dir = scratch("identity");
        let prepared = Prepared::write(&dir, "label", b"content\n").unwrap();
        let before = prepared.file_id().unwrap();
        assert_eq!(prepared.link_exclusive().unwrap(), Published::Created);
        let linked = file_id(&dir.join("label")).unwrap();
        assert_eq!(linked, before);
        fs::copy(dir.join("label"), dir.join("copy")).unwrap();
        let copy = file_id(&dir.join("copy")).unwrap();
        assert_ne!(copy.ino, linked.ino);
        // Where the file system records birth times, the copy was born later.
        if let (Some(a), Some(b)) = (linked.birth, copy.birth) {
            assert!(b >= a);
        }
        std::os::unix::fs::symlink("label", dir.join("link")).unwrap();
        assert_ne!(file_id(&dir.join("link")).unwrap().ino, linked.ino);
    }
}
