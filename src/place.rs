//! Where a data directory lives: its path, the host, the boot of the
//! system, and the device of its backup_label. pg_start_backup records them
//! beside the label's identity; the postmaster compares them when it finds
//! the primary's own label (the same file, by inode number and birth time)
//! at a start. A block-level image of the primary (a snapshot, cloned onto
//! another volume, mounted elsewhere or on another host) keeps the label's
//! identity but not its surroundings, and is then most likely a clone.
//! Plain Rust: reads /proc and the host name.

use std::path::Path;

/// The surroundings of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The data directory's absolute path, symbolic links resolved.
    pub data_directory: String,
    pub host: String,
    /// /proc/sys/kernel/random/boot_id: changes at every boot.
    pub boot_id: String,
}

/// What differs between the place a backup was started in and the place
/// its label is found in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sameness {
    /// Nothing that says otherwise: the primary itself.
    Same,
    /// Only the device number, across a reboot, which can renumber devices
    /// (device-mapper, loop devices, NVMe enumeration): the primary.
    Rebooted,
    /// Another host, another path, or another device within one boot: a
    /// block-level clone. The differences, in words.
    Clone(Vec<String>),
}

/// This data directory's place now.
pub fn here(data_directory: &Path) -> Place {
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
/// with where its label is now. An unknown field (empty: not readable, or
/// not recorded) tells nothing.
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
    let same_boot = known(&then.boot_id, &now.boot_id) && then.boot_id == now.boot_id;
    let other_device = then_dev != 0 && now_dev != 0 && then_dev != now_dev;
    if other_device && (same_boot || !differences.is_empty()) {
        differences.push(format!(
            "backup_label is on device {}, the primary's was on {}",
            device_text(now_dev),
            device_text(then_dev)
        ));
    }
    if !differences.is_empty() {
        Sameness::Clone(differences)
    } else if other_device {
        Sameness::Rebooted
    } else {
        Sameness::Same
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
    fn a_renumbered_device_after_a_reboot_is_still_the_primary() {
        let then = place("/srv/pg/data", "db1", "b1");
        let now = place("/srv/pg/data", "db1", "b2");
        assert_eq!(compare(&then, LOOP0, &now, LOOP1), Sameness::Rebooted);
    }

    #[test]
    fn another_device_in_the_same_boot_is_a_clone() {
        let p = place("/srv/pg/data", "db1", "b1");
        match compare(&p, LOOP0, &p, LOOP1) {
            Sameness::Clone(d) => assert_eq!(d, ["backup_label is on device 7:1, the primary's was on 7:0"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_path_or_host_is_a_clone_whatever_the_boot() {
        let then = place("/srv/pg/data", "db1", "b1");
        match compare(&then, LOOP0, &place("/mnt/clone/data", "db1", "b2"), LOOP1) {
            Sameness::Clone(d) => {
                assert_eq!(d.len(), 2, "{d:?}");
                assert!(d[0].contains("\"/mnt/clone/data\""), "{d:?}");
            }
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
    fn devices_read_as_ls_shows_them() {
        assert_eq!(device_text(LOOP1), "7:1");
        assert_eq!(device_text(libc::makedev(259, 3)), "259:3");
        assert_eq!(device_text(libc::makedev(8, 300)), "8:300");
    }

    #[test]
    fn this_place_is_known() {
        let p = here(Path::new("/tmp/."));
        assert_eq!(p.data_directory, "/tmp");
        assert!(!p.boot_id.is_empty() && !p.host.is_empty());
    }
}
