//! Where a data directory lives, and how it archives WAL: its path, the
//! host, the boot of the system, the device of its backup_label, its
//! archiving settings. pg_start_backup records them beside the label's
//! identity; the postmaster compares them when it finds the primary's own
//! label (the same file, by inode number and birth time) at its first
//! start. A block-level image of the primary (a snapshot cloned onto
//! another volume and started on another host or at another path) keeps
//! the label's identity but not its surroundings, and is then most likely
//! a clone. Plain Rust: reads /proc and the host name.

use std::path::Path;

/// The surroundings of a data directory. An empty field is unknown (not
/// readable, or not recorded), and tells nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The data directory's absolute path, symbolic links resolved.
    pub data_directory: String,
    pub host: String,
    /// /proc/sys/kernel/random/boot_id: changes at every boot.
    pub boot_id: String,
    /// How the server archives WAL ("archive_command '...' (archive_mode =
    /// on)"), "off" when it does not.
    pub archiving: String,
}

/// What differs between the place a backup was started in and the place
/// its label is found in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sameness {
    /// Nothing that says otherwise: the primary itself. A device number of
    /// its own does not say otherwise: a remount (Btrfs, NFS), a reboot, a
    /// volume attached again or a device-mapper reactivation renumbers the
    /// primary's own device.
    Same,
    /// Another host or another path: a block-level clone. The differences,
    /// in words (the device's too, when it differs).
    Clone(Vec<String>),
}

/// This data directory's place now; `archiving` as [`Place::archiving`].
pub fn here(data_directory: &Path, archiving: String) -> Place {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Place {
        data_directory: std::fs::canonicalize(data_directory)
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
        host: read("/proc/sys/kernel/hostname"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        archiving,
    }
}

/// "8:17", as ls -l shows a device.
pub fn device_text(dev: u64) -> String {
    // The glibc encoding of dev_t, as libc::major/minor decode it.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    format!("{major}:{minor}")
}

/// Compares where a backup was started (`then`, with its label's device)
/// with where its label is now.
pub fn compare(then: &Place, then_dev: u64, now: &Place, now_dev: u64) -> Sameness {
    let known = |a: &str, b: &str| !a.is_empty() && !b.is_empty();
    let mut differences = Vec::new();
    if known(&then.host, &now.host) && then.host != now.host {
        differences.push(format!(
            "the host is \"{}\", the primary's was \"{}\"",
            now.host, then.host
        ));
    }
    if known(&then.data_directory, &now.data_directory) && then.data_directory != now.data_directory {
        differences.push(format!(
            "the data directory is \"{}\", the primary's was \"{}\"",
            now.data_directory, then.data_directory
        ));
    }
    if differences.is_empty() {
        return Sameness::Same;
    }
    if then_dev != 0 && now_dev != 0 && then_dev != now_dev {
        differences.push(format!(
            "backup_label is on device {}, the primary's was on {}",
            device_text(now_dev),
            device_text(then_dev)
        ));
    }
    Sameness::Clone(differences)
}

/// Whether a clone that archives with `now` (`None`: it does not) would
/// archive as the primary did, with `then` (unknown, empty: it may).
pub fn archives_as_primary(then: &Place, now: Option<&str>) -> bool {
    match now {
        None => false,
        Some(now) => then.archiving.is_empty() || then.archiving == now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(dir: &str, host: &str, boot: &str) -> Place {
        Place {
            data_directory: dir.into(),
            host: host.into(),
            boot_id: boot.into(),
            archiving: "off".into(),
        }
    }

    const LOOP0: u64 = 7 << 8;
    const LOOP1: u64 = (7 << 8) | 1;

    #[test]
    fn the_primary_restarted_is_the_same_place() {
        let p = place("/srv/pg/data", "db1", "b1");
        assert_eq!(compare(&p, LOOP0, &p, LOOP0), Sameness::Same);
        // A power loss: another boot, the same device.
        assert_eq!(
            compare(&p, LOOP0, &place("/srv/pg/data", "db1", "b2"), LOOP0),
            Sameness::Same
        );
    }

    #[test]
    fn a_renumbered_device_is_still_the_primary() {
        let then = place("/srv/pg/data", "db1", "b1");
        // After a reboot, or in the same boot (a remount, a volume attached
        // again).
        assert_eq!(
            compare(&then, LOOP0, &place("/srv/pg/data", "db1", "b2"), LOOP1),
            Sameness::Same
        );
        assert_eq!(compare(&then, LOOP0, &then, LOOP1), Sameness::Same);
    }

    #[test]
    fn another_path_or_host_is_a_clone_whatever_the_boot() {
        let then = place("/srv/pg/data", "db1", "b1");
        match compare(&then, LOOP0, &place("/mnt/clone/data", "db1", "b2"), LOOP1) {
            Sameness::Clone(d) => assert_eq!(
                d,
                [
                    "the data directory is \"/mnt/clone/data\", the primary's was \"/srv/pg/data\"",
                    "backup_label is on device 7:1, the primary's was on 7:0"
                ]
            ),
            other => panic!("{other:?}"),
        }
        match compare(&then, LOOP0, &place("/srv/pg/data", "db2", "c1"), LOOP0) {
            Sameness::Clone(d) => assert_eq!(d, ["the host is \"db2\", the primary's was \"db1\""]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_was_not_recorded_tells_nothing() {
        let then = place("", "", "");
        assert_eq!(compare(&then, 0, &place("/x", "h", "b"), LOOP1), Sameness::Same);
    }

    #[test]
    fn only_the_primarys_own_archiving_counts() {
        let mut then = place("/srv/pg/data", "db1", "b1");
        then.archiving = "archive_command 'cp %p /a/%f' (archive_mode = on)".into();
        assert!(archives_as_primary(
            &then,
            Some("archive_command 'cp %p /a/%f' (archive_mode = on)")
        ));
        assert!(!archives_as_primary(
            &then,
            Some("archive_command 'cp %p /clone/%f' (archive_mode = on)")
        ));
        assert!(!archives_as_primary(&then, None));
        // Not recorded: it may.
        then.archiving = String::new();
        assert!(archives_as_primary(
            &then,
            Some("archive_command 'x' (archive_mode = on)")
        ));
    }

    #[test]
    fn devices_read_as_ls_shows_them() {
        assert_eq!(device_text(LOOP1), "7:1");
        assert_eq!(device_text(libc::makedev(259, 3)), "259:3");
        assert_eq!(device_text(libc::makedev(8, 300)), "8:300");
    }

    #[test]
    fn this_place_is_known() {
        let p = here(Path::new("/tmp/."), "off".into());
        assert_eq!(p.data_directory, "/tmp");
        assert!(!p.boot_id.is_empty() && !p.host.is_empty());
    }
}
