//! The words of the postmaster's refusals: why a start must not go on,
//! and the FATAL, DETAIL and HINT that say what was found and what to do.
//! Pure Rust, no server.

use crate::files::{BACKUP_LABEL, BACKUP_LABEL_OLD, CONTROL_FILE, LOCK_FILE, TABLESPACE_MAP, TABLESPACE_MAP_OLD};
use crate::label::{self, BackupLabel};
use crate::record::STATE_FILE;

/// Why the state file cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// What is wrong with it, as the end of a sentence that begins with
    /// its name ("is a directory").
    pub why: String,
    /// Something other than a regular file lies under its name.
    pub not_a_file: bool,
}

/// Why the start refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Whose label it is cannot be told. `label`: what it is, when it is a
    /// label of ours.
    CannotTell {
        label: Option<BackupLabel>,
        why: Unknowable,
    },
    /// backup_label is neither a label of ours nor another writer's whole
    /// label. `state`: what keeps the record from saying whose file it is;
    /// `None` when it says the file is a restored copy's.
    Damaged { reason: String, state: Option<Unknowable> },
    /// backup_label cannot be read (`why` ends a sentence that begins
    /// with "It"); `published`: the label this primary published, when its
    /// identity says it is that file.
    Unreadable {
        why: Unusable,
        published: Option<BackupLabel>,
    },
    /// This primary's own label file, changed since it was published.
    OwnChanged { published: BackupLabel, change: String },
    /// This primary's own label file, rewritten in place with a whole
    /// label of another writer's (`method`: its BACKUP METHOD).
    OwnOverwritten { published: BackupLabel, method: String },
    /// This primary's own label file beside another global/pg_control.
    OwnLabelOtherControl { published: BackupLabel },
    /// A new label file beside this primary's own pg_control.
    Recreated { published: BackupLabel, holds: Holds },
    /// This primary's own label, which the lock file kept from being
    /// renamed: `why` ends a sentence; `held`: another process holds it.
    Unlocked {
        label: BackupLabel,
        why: String,
        held: bool,
    },
    /// This primary's own label, which could not be renamed: the error's
    /// message, and what lies under backup_label.old when that is what
    /// stopped it.
    NotRenamed {
        label: BackupLabel,
        error: String,
        blocking: Option<&'static str>,
    },
    /// This primary's own label, found in what is most likely a block-level
    /// clone of the primary (`differences`, in words) that archives WAL
    /// (`archiving`: with what), while pg_exclusive_backup.refuse_archiving_clone
    /// is on.
    ArchivingClone {
        label: BackupLabel,
        differences: Vec<String>,
        archiving: String,
    },
    /// The check itself failed (a bug).
    Internal,
}

/// What a label file other than the published one holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// What was published.
    Published,
    /// Another label of ours.
    Ours(BackupLabel),
    /// Nothing that is a label of ours: why.
    Damaged(String),
}

/// What keeps the record from telling whose label it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknowable {
    NoRecord,
    Record(Unusable),
    NoBirthTimes,
    SeveralFileSystems(String),
    LabelUnreadable(String),
    /// The record names pg_control, which cannot be examined now.
    ControlUnreadable,
}

/// A refusal as the FATAL the postmaster raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

/// "the exclusive backup "nightly" started at 2026-12-01 03:00:00 UTC"
pub fn describe(l: &BackupLabel) -> String {
    format!(
        "the exclusive backup \"{}\" started at {}",
        label::escape_non_ascii(&l.label),
        l.start_time
    )
}

const RESTORED_NEEDS_SIGNAL: &str = "If this data directory is a restored backup or a snapshot, create \
     \"recovery.signal\" (or \"standby.signal\") in it and start the server again.";

fn void_on_primary(condition: &str) -> String {
    format!(
        "If {condition}, the backup is void: rename \"{BACKUP_LABEL}\" to \"{BACKUP_LABEL_OLD}\" (and \
         \"{TABLESPACE_MAP}\" to \"{TABLESPACE_MAP_OLD}\", if there is one) and start the server again."
    )
}

const COPIED_IN_PLACE: &str = "If a backup was copied over this data directory in place (cp -a or rsync into \
     it), the result cannot be trusted: restore the backup into an empty directory instead.";

/// A block-level snapshot keeps the label's identity: one whose label was
/// edited after it was taken refuses like the primary.
const EDITED_SNAPSHOT: &str = "If this is a block-level snapshot of the primary whose label was edited, \
     renaming it too makes the server recover the snapshot as the image it is (crash-consistent); to recover \
     to the backup's end instead, take the snapshot again and create \"recovery.signal\" in it before its \
     first start.";

fn unknowable(why: &Unknowable) -> String {
    match why {
        Unknowable::NoRecord => format!("there is no \"{STATE_FILE}\" to tell whether it is this server's own"),
        Unknowable::Record(u) => format!(
            "\"{STATE_FILE}\", which tells whether it is this server's own, {}",
            u.why
        ),
        Unknowable::NoBirthTimes => "the file system does not record birth times, so a restored copy reusing \
             the inode numbers of the files published here cannot be told from them"
            .into(),
        Unknowable::SeveralFileSystems(what) => format!(
            "{what}, so after the postmaster was killed this may as well be a restore of snapshots of several \
             file systems, which only recovery from the label makes consistent: taken one after another they \
             do not fit together, and even an atomic snapshot of all of them looks no different from the \
             primary here"
        ),
        Unknowable::LabelUnreadable(why) => why.clone(),
        Unknowable::ControlUnreadable => format!(
            "\"{CONTROL_FILE}\" cannot be examined, so whether this is the data directory that published it \
             cannot be told"
        ),
    }
}

/// " Move the state file away", when it is not a regular file.
fn move_state_file(why: Option<&Unknowable>) -> String {
    match why {
        Some(Unknowable::Record(Unusable { not_a_file: true, .. })) => format!(
            " Either way, move \"{STATE_FILE}\" out of the data directory: it is not a regular file, so not \
             pg_exclusive_backup's."
        ),
        _ => String::new(),
    }
}

pub fn texts(refusal: &Refusal) -> Texts {
    match refusal {
        Refusal::CannotTell { label, why } => Texts {
            message: format!(
                "pg_exclusive_backup cannot tell whether \"{BACKUP_LABEL}\" is this server's own or a restored backup's"
            ),
            detail: match label {
                Some(l) => format!(
                    "\"{BACKUP_LABEL}\" is the label of {}; {}.",
                    describe(l),
                    unknowable(why)
                ),
                None => format!("\"{BACKUP_LABEL}\" is in the data directory, but {}.", unknowable(why)),
            },
            hint: match why {
                Unknowable::SeveralFileSystems(_) => format!(
                    "If this data directory is a snapshot of several volumes (taken atomically, as a recursive ZFS \
                     snapshot or an LVM consistency group takes them, or one after another), create \
                     \"recovery.signal\" in it, set restore_command to the WAL archive (and archive_mode = off, \
                     or an archive of its own), and start the server again: recovery from the label makes it \
                     consistent at the backup's end (mounted elsewhere than the primary's volumes, first point \
                     \"{TABLESPACE_MAP}\" and the pg_wal link at its own). {} \
                     Never do that in a snapshot.",
                    void_on_primary("it is the primary that was running this backup")
                ),
                _ => format!(
                    "{RESTORED_NEEDS_SIGNAL} {} Never do that in a restored backup.{}",
                    void_on_primary("it is the primary that was running this backup"),
                    move_state_file(Some(why))
                ),
            },
        },
        Refusal::Damaged { reason, state } => Texts {
            message: format!("\"{BACKUP_LABEL}\" is not a valid backup label"),
            detail: match state {
                Some(why) => format!("{reason} Whose file it is cannot be told: {}.", unknowable(why)),
                None => format!("{reason} It is not the file this server published: a restored copy's label, damaged."),
            },
            hint: format!(
                "If this data directory is a restored backup, copy \"{BACKUP_LABEL}\" (and \"{TABLESPACE_MAP}\") \
                 from the backup again and start the server again. {}{}",
                void_on_primary("it is the primary that was running an exclusive backup"),
                move_state_file(state.as_ref())
            ),
        },
        Refusal::Unreadable { why, published } => Texts {
            message: if why.not_a_file {
                format!("\"{BACKUP_LABEL}\" in the data directory is not a regular file")
            } else {
                format!("could not read \"{BACKUP_LABEL}\"")
            },
            detail: match published {
                Some(l) => format!(
                    "It {}. It is the file pg_start_backup() published for {}.",
                    why.why,
                    describe(l)
                ),
                None => format!("It {}. Whose file it is cannot be told without reading it.", why.why),
            },
            hint: if why.not_a_file {
                format!(
                    "pg_start_backup() only ever writes a regular file there. Move \"{BACKUP_LABEL}\" out of the \
                     data directory and start the server again: on the primary that was running an exclusive \
                     backup, that backup is void; on a restored backup, copy \"{BACKUP_LABEL}\" from the backup \
                     again first."
                )
            } else {
                format!(
                    "Make \"{BACKUP_LABEL}\" readable by the operating system user the server runs as, and start \
                     the server again."
                )
            },
        },
        Refusal::OwnOverwritten { published, method } => Texts {
            message: format!("this server's own \"{BACKUP_LABEL}\" now holds another tool's backup label"),
            detail: format!(
                "It is the file pg_start_backup() published for {}, rewritten in place with a whole backup label \
                 that says \"BACKUP METHOD: {}\" (pg_rewind writes its label that way).",
                describe(published),
                label::escape_non_ascii(method.as_bytes())
            ),
            hint: format!(
                "If pg_rewind or a restore tool wrote it and this data directory is to recover from it, create \
                 \"standby.signal\" (or \"recovery.signal\") in it and start the server again. {COPIED_IN_PLACE}"
            ),
        },
        Refusal::OwnLabelOtherControl { published } => Texts {
            message: format!("this server's own \"{BACKUP_LABEL}\" lies beside another \"{CONTROL_FILE}\""),
            detail: format!(
                "\"{BACKUP_LABEL}\" is the file pg_start_backup() published for {}, while \"{CONTROL_FILE}\" is \
                 not the file this server had: a backup was copied over this data directory in place (rsync \
                 replaces the files it changes, and keeps the others).",
                describe(published)
            ),
            hint: format!(
                "{COPIED_IN_PLACE} Do not rename \"{BACKUP_LABEL}\" here: crash recovery of such a mix would \
                 corrupt the database silently."
            ),
        },
        Refusal::OwnChanged { published, change } => Texts {
            message: format!("this server's own \"{BACKUP_LABEL}\" has been changed since pg_start_backup() wrote it"),
            detail: format!(
                "It is the file pg_start_backup() published for {}; {change} since. The startup process would \
                 take it for a restored backup's label.",
                describe(published)
            ),
            hint: format!(
                "{} {COPIED_IN_PLACE} {EDITED_SNAPSHOT}",
                void_on_primary("this is the primary that was running the backup")
            ),
        },
        Refusal::Recreated { published, holds } => Texts {
            message: format!("\"{BACKUP_LABEL}\" is a new file in this server's own data directory"),
            detail: match holds {
                Holds::Published => format!(
                    "It holds the label of {}, which this server published as another file, and \
                     \"{CONTROL_FILE}\" is still this server's own: the label was moved out and copied back, or a \
                     backup was copied over this data directory in place.",
                    describe(published)
                ),
                Holds::Ours(l) => format!(
                    "It is the label of {}, while this server last published the label of {} as another file, \
                     and \"{CONTROL_FILE}\" is still this server's own: a backup was copied over this data \
                     directory in place, or a label into it.",
                    describe(l),
                    describe(published)
                ),
                Holds::Damaged(reason) => format!(
                    "{reason} It is not the file this server published for {}, and \"{CONTROL_FILE}\" is still \
                     this server's own.",
                    describe(published)
                ),
            },
            hint: format!(
                "{} {COPIED_IN_PLACE}",
                void_on_primary("this is the primary and the label was copied back into it")
            ),
        },
        Refusal::Unlocked { label, why, held } => Texts {
            message: format!("could not lock \"{LOCK_FILE}\" to rename this server's own \"{BACKUP_LABEL}\""),
            detail: format!(
                "\"{BACKUP_LABEL}\" is the label of {}, which this server was running; it must be renamed under \
                 that lock before the startup process runs, and {why}.",
                describe(label)
            ),
            hint: if *held {
                format!(
                    "Stop the process that holds \"{LOCK_FILE}\" in the data directory (fuser -v names it) and \
                     start the server again."
                )
            } else {
                format!(
                    "Move \"{LOCK_FILE}\" out of the data directory (it holds no data, and is created again when \
                     needed) and start the server again."
                )
            },
        },
        Refusal::NotRenamed { label, error, blocking } => Texts {
            message: error.clone(),
            detail: format!(
                "{}\"{BACKUP_LABEL}\" is the label of {}, which this server was running; the startup process would \
                 take it for a restored backup's.",
                blocking
                    .map(|kind| format!("\"{BACKUP_LABEL_OLD}\" in the data directory is {kind}. "))
                    .unwrap_or_default(),
                describe(label)
            ),
            hint: match blocking {
                Some(_) => format!("Move \"{BACKUP_LABEL_OLD}\" out of the data directory and start the server again."),
                None => format!(
                    "Once the cause is fixed, start the server again. {}",
                    void_on_primary("it cannot be fixed")
                ),
            },
        },
        Refusal::ArchivingClone {
            label,
            differences,
            archiving,
        } => Texts {
            message: "this data directory is most likely a block-level clone of the primary, and it would archive \
                 WAL as the primary does"
                .into(),
            detail: format!(
                "\"{BACKUP_LABEL}\" is the file the primary published for {}, but {}. Started like this, the clone \
                 would continue the primary's timeline {}, and it archives with the primary's own settings, \
                 {archiving}: its WAL segments would have the names of the primary's, in the primary's archive \
                 they can overwrite the primary's own, and a restore of a valid backup from that archive would \
                 then fail. Nothing was changed.",
                describe(label),
                differences.join("; "),
                label.start_timeline
            ),
            hint: "Start this clone with archive_mode = off or an archive_command of its own: it then comes up as \
                 the crash-consistent image it is. To recover it to the backup's end instead, create \
                 \"recovery.signal\" (with restore_command) and turn its archiving off or to its own archive as \
                 well: on its new timeline it would still archive into the primary's archive. If this is the \
                 primary itself, moved since the backup started, set pg_exclusive_backup.refuse_archiving_clone = \
                 off and start it again."
                .into(),
        },
        Refusal::Internal => Texts {
            message: format!("pg_exclusive_backup failed while checking \"{BACKUP_LABEL}\""),
            detail: "An internal error of pg_exclusive_backup stopped the check before it could tell whose label \
                 it is; the server log may say more."
                .into(),
            hint: format!(
                "{RESTORED_NEEDS_SIGNAL} {} Never do that in a restored backup. Please report the error.",
                void_on_primary("it is the primary that was running this backup")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-25 03:05:06 UTC\n\
LABEL: nightly\n\
START TIMELINE: 1\n\
START EPOCH: 1795575906\n";

    fn published() -> BackupLabel {
        label::parse(LABEL.as_bytes()).unwrap()
    }

    #[test]
    fn every_refusal_says_what_was_found_and_what_to_do() {
        let l = published();
        let all = [
            Refusal::CannotTell {
                label: Some(l.clone()),
                why: Unknowable::NoRecord,
            },
            Refusal::CannotTell {
                label: None,
                why: Unknowable::LabelUnreadable("it cannot be read: Permission denied".into()),
            },
            Refusal::CannotTell {
                label: Some(l.clone()),
                why: Unknowable::Record(Unusable {
                    why: "is not valid: it is truncated".into(),
                    not_a_file: false,
                }),
            },
            Refusal::CannotTell {
                label: Some(l.clone()),
                why: Unknowable::NoBirthTimes,
            },
            Refusal::CannotTell {
                label: Some(l.clone()),
                why: Unknowable::SeveralFileSystems("pg_wal is on another file system than the data directory".into()),
            },
            Refusal::Damaged {
                reason: "The file is empty.".into(),
                state: Some(Unknowable::NoRecord),
            },
            Refusal::Damaged {
                reason: "The file is empty.".into(),
                state: None,
            },
            Refusal::OwnChanged {
                published: l.clone(),
                change: "it has been emptied".into(),
            },
            Refusal::Recreated {
                published: l.clone(),
                holds: Holds::Published,
            },
            Refusal::Recreated {
                published: l.clone(),
                holds: Holds::Ours(l.clone()),
            },
            Refusal::Recreated {
                published: l.clone(),
                holds: Holds::Damaged("The file is empty.".into()),
            },
            Refusal::Unlocked {
                label: l.clone(),
                why: "\"pg_exclusive_backup.lock\" in the data directory is a directory".into(),
                held: false,
            },
            Refusal::Unlocked {
                label: l.clone(),
                why: "another process holds it".into(),
                held: true,
            },
            Refusal::NotRenamed {
                label: l.clone(),
                error: "could not rename file \"backup_label\" to \"backup_label.old\": Is a directory".into(),
                blocking: Some("a directory"),
            },
            Refusal::NotRenamed {
                label: l.clone(),
                error: "could not rename file \"backup_label\" to \"backup_label.old\": Read-only file system".into(),
                blocking: None,
            },
            Refusal::Internal,
            Refusal::ArchivingClone {
                label: l.clone(),
                differences: vec!["the host is \"db2\", the primary's was \"db1\"".into()],
                archiving: "archive_command 'cp %p /archive/%f'".into(),
            },
            Refusal::Unreadable {
                why: Unusable {
                    why: "is a FIFO".into(),
                    not_a_file: true,
                },
                published: Some(l.clone()),
            },
            Refusal::Unreadable {
                why: Unusable {
                    why: "cannot be opened: Permission denied".into(),
                    not_a_file: false,
                },
                published: None,
            },
            Refusal::OwnOverwritten {
                published: l.clone(),
                method: "pg_rewind".into(),
            },
            Refusal::OwnLabelOtherControl { published: l.clone() },
            Refusal::CannotTell {
                label: Some(l.clone()),
                why: Unknowable::ControlUnreadable,
            },
        ];
        for r in &all {
            let t = texts(r);
            assert!(!t.message.is_empty() && !t.message.ends_with('.'), "{t:?}");
            assert!(t.detail.ends_with('.') && t.hint.ends_with('.'), "{t:?}");
            for text in [&t.message, &t.detail, &t.hint] {
                let words: Vec<&str> = text.split_whitespace().collect();
                assert!(words.windows(2).all(|w| w[0] != w[1]), "a doubled word: {text}");
                assert!(text.matches(" but ").count() <= 1, "{text}");
                assert!(!text.contains(".."), "{text}");
                assert!(
                    !text.contains("  "),
                    "a run of spaces (a lost line continuation?): {text}"
                );
            }
        }
        // The advice names the file at fault.
        let t = texts(&all[13]);
        assert!(
            t.detail
                .starts_with("\"backup_label.old\" in the data directory is a directory."),
            "{t:?}"
        );
        assert_eq!(
            t.hint,
            "Move \"backup_label.old\" out of the data directory and start the server again."
        );
        let t = texts(&all[11]);
        assert!(
            t.message.contains("pg_exclusive_backup.lock") && !t.message.contains("cannot tell"),
            "{t:?}"
        );
        // Where a restore copied in place may be the cause, the hint says
        // never to do that.
        for r in [&all[7], &all[8]] {
            assert!(texts(r)
                .hint
                .contains("restore the backup into an empty directory instead"));
        }
    }
}
