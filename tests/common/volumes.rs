//! Real block devices for the tests of block-level snapshots: ext4 file
//! systems in image files, attached to loop devices and mounted, frozen
//! with fsfreeze while an image is copied (what a storage snapshot does),
//! and the copy attached and mounted elsewhere, as a clone. Root only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use super::{install, run_ok};

/// The tests of this kind, one at a time (loop devices are a shared
/// resource), if this process may attach loop devices and mount (root);
/// `None`, said loudly, otherwise.
pub fn exclusive() -> Option<MutexGuard<'static, ()>> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    // SAFETY: plain libc call.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: block-level snapshot tests need root and loop devices (mount, fsfreeze)");
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

/// An ext4 file system in an image file, attached to a loop device and
/// mounted; unmounted and detached when dropped (a cluster on it must be
/// dropped first).
pub struct Volume {
    pub image: PathBuf,
    pub device: String,
    pub mount: PathBuf,
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = run_ok(Command::new(program).args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Volume {
    /// A new, empty file system of `mb` MiB in `image`, mounted at `mount`
    /// and given to the cluster owner.
    pub fn create(image: &Path, mount: &Path, mb: u64) -> Volume {
        let f = fs::File::create(image).unwrap();
        f.set_len(mb << 20).unwrap();
        drop(f);
        sh("mkfs.ext4", &["-q", "-F", &image.display().to_string()]);
        let v = Volume::attach(image, mount);
        install().chown(&v.mount);
        v
    }

    /// The file system in `image` (a copy of another volume's), attached to
    /// a free loop device and mounted at `mount`.
    pub fn attach(image: &Path, mount: &Path) -> Volume {
        let device = sh("losetup", &["-f", "--show", &image.display().to_string()]);
        // Made before the mount, so that a failed mount still detaches.
        let v = Volume {
            image: image.to_path_buf(),
            device,
            mount: mount.to_path_buf(),
        };
        fs::create_dir_all(mount).unwrap();
        sh("mount", &[&v.device, &mount.display().to_string()]);
        v
    }

    /// The device number of the mounted file system, as stat(2) gives it.
    pub fn dev(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.mount).unwrap().dev()
    }

    /// Rolls the file system back to `snapshot` (an image of it) in place,
    /// as a storage rollback does: unmounted, the image written onto the
    /// same device, mounted again where it was.
    pub fn roll_back_to(&self, snapshot: &Path) {
        sh("umount", &[&self.mount.display().to_string()]);
        let mut device = fs::OpenOptions::new().write(true).open(&self.device).unwrap();
        std::io::copy(&mut fs::File::open(snapshot).unwrap(), &mut device).unwrap();
        device.sync_all().unwrap();
        drop(device);
        sh("mount", &[&self.device, &self.mount.display().to_string()]);
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).output();
        let unmounted = Command::new("umount")
            .arg(&self.mount)
            .output()
            .is_ok_and(|o| o.status.success());
        if !unmounted {
            // Still busy (a server of a failed test on its way out): detached
            // from the tree now, unmounted when the last user is gone.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
    }
}

/// Thaws what it froze when dropped, also when a freeze or a copy fails.
struct Frozen<'a>(Vec<&'a Volume>);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = Command::new("fsfreeze").arg("-u").arg(&v.mount).output();
        }
    }
}

/// A storage snapshot of `volumes` at one instant: all of them frozen
/// (fsfreeze: writes wait, dirty data is on disk), each image copied to
/// the path `to` gives it, then all thawed.
pub fn snapshot(volumes: &[&Volume], to: &[&Path]) {
    assert_eq!(volumes.len(), to.len());
    let mut frozen = Frozen(Vec::new());
    for v in volumes {
        sh("fsfreeze", &["-f", &v.mount.display().to_string()]);
        frozen.0.push(v);
    }
    for (v, t) in volumes.iter().zip(to) {
        fs::copy(&v.image, t).unwrap();
    }
    drop(frozen);
}
