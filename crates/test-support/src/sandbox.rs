//! What every test binary that runs processes or writes files needs: a temporary directory
//! removed whatever happens, a child process killed whatever happens, a private HOME, and a
//! clear message when an outside tool is missing.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A fresh directory under the system temp dir, removed with everything in it on drop
/// (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tokenvend-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// A `home` directory inside this one, for a child's `HOME` and XDG directories.
    pub fn home(&self) -> PathBuf {
        let home = self.join("home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Points everything a child could write under the user's home (`HOME`, the XDG cache and
/// config directories, kubectl's cache) at `home`, a temporary directory.
pub fn private_home<'c>(command: &'c mut Command, home: &Path) -> &'c mut Command {
    command
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("KUBECACHEDIR")
}

/// A child process killed (and reaped) on drop, so a failing assertion leaves none behind.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> Self {
        Self(Some(command.spawn().expect("the child process starts")))
    }

    /// Gives the child up, e.g. to wait for its exit status.
    pub fn into_inner(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().unwrap()
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command for an outside tool the tests need (kubectl, curl, bash), failing with a message
/// that names the tool and the script that installs it when it is not on PATH.
pub fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "`{name}` is not on PATH; this test needs it. Run the tests with scripts/test, which \
         installs what is missing (kubectl >= 1.28 through .ci/ensure-kubectl) and puts it on PATH."
    );
    Command::new(name)
}
