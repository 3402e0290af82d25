//! Running the binary and writing scratch files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root: the binary runs from here, so relative paths are the repo's.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tokenvend ARGS` from the repository root with `KUBECONFIG` set when given, off the
/// async runtime (the stand-in it may talk to is served by this test's runtime).
pub async fn tokenvend(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenvend"));
    command.args(args).current_dir(repo_root());
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    tokio::task::spawn_blocking(move || command.output().expect("tokenvend runs"))
        .await
        .unwrap()
}

/// stdout of a run that must succeed.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "tokenvend failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A file in a scratch directory of its own, which is removed on drop (also when the test
/// fails): kubeconfigs here hold bearer tokens.
pub struct ScratchFile {
    path: PathBuf,
}

impl std::ops::Deref for ScratchFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Writes `contents` to `name` in a fresh scratch directory.
pub fn scratch_file(name: &str, contents: &str) -> ScratchFile {
    let dir = std::env::temp_dir().join(format!("tokenvend-ship-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = ScratchFile {
        path: dir.join(name),
    };
    std::fs::write(&file.path, contents).unwrap();
    file
}
