//! `teams:`: policy files owned by product teams, each confined to a ceiling the main file
//! sets. A team file that does not load, or reaches beyond its ceiling, is refused alone: the
//! main file and every other file keep working, and on reload the refused file's last good
//! version stays in force if it still fits the ceiling in force (else it is dropped: fail
//! closed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::{Ceiling, IssuerRules, Policy, RawCeiling, RawTeamFile, compile_team};

/// `teams.NAME` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeam {
    /// A path whose file name may hold `*` (`/etc/tokenvend/teams/payments/*.yaml`); relative
    /// to the main file's directory.
    pub files: String,
    pub ceiling: RawCeiling,
}

/// A team of the main file: where its files are and what they may grant.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    /// The files pattern, resolved against the main file's directory.
    pub files: PathBuf,
    pub ceiling: Ceiling,
}

/// A team file whose policies are in force.
#[derive(Debug, Clone)]
pub struct TeamFile {
    pub team: String,
    pub path: PathBuf,
    pub raw: RawTeamFile,
    /// The file as it is now was refused; this is its last good version.
    pub last_good: bool,
}

/// A team file refused at this load. The message names the file, the team and, where it can,
/// the policy and the key, and says what stays in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRefusal {
    pub team: String,
    pub path: PathBuf,
    pub message: String,
}

/// Where team files come from besides their globs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamSources<'a> {
    /// The team files in force before this load (a reload's memory).
    pub last_good: &'a [TeamFile],
    /// `tokenvend check --team NAME FILE...`: these files instead of the team's glob.
    pub only: Option<(&'a str, &'a [PathBuf])>,
}

/// What loading every team's files gave.
#[derive(Debug, Default)]
pub(super) struct TeamLoad {
    pub policies: Vec<Policy>,
    pub files: Vec<TeamFile>,
    pub refusals: Vec<TeamRefusal>,
}

/// The pattern resolved against the main file's directory; only the file name may hold `*`.
pub(super) fn resolve_pattern(main: &Path, files: &str) -> Result<PathBuf, String> {
    let pattern = Path::new(files);
    let dir = pattern.parent().unwrap_or(Path::new(""));
    if dir.to_string_lossy().contains('*') || files.ends_with('/') || files.is_empty() {
        return Err(format!(
            "{files:?}: a path whose file name (only) may hold `*`, e.g. teams/payments/*.yaml"
        ));
    }
    Ok(match main.parent() {
        Some(base) if pattern.is_relative() => base.join(pattern),
        _ => pattern.to_owned(),
    })
}

/// The files a pattern names now, sorted. A missing directory names none (the team has no
/// files yet); names starting with `.` (a ConfigMap mount's own entries) match only a pattern
/// starting with `.`.
pub fn list_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match pattern.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: cannot list: {e}", dir.display())),
    };
    let parts: Vec<String> = name.split('*').map(regex::escape).collect();
    let matcher = regex::Regex::new(&format!("^(?:{})$", parts.join(".*")))
        .map_err(|e| format!("{}: {e}", pattern.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            (name.starts_with('.') || !file.starts_with('.')) && matcher.is_match(&file)
        })
        .map(|entry| dir.join(entry.file_name()))
        .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<RawTeamFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    serde_saphyr::from_str(&text).map_err(|e| super::syntax_message(&e))
}

/// Loads every team's files. `taken` holds the names already in use (the main file's).
pub(super) fn load(
    teams: &[Team],
    issuers: &[IssuerRules<'_>],
    protected: &BTreeSet<String>,
    mut taken: BTreeSet<String>,
    sources: TeamSources<'_>,
) -> TeamLoad {
    let mut load = TeamLoad::default();
    for team in teams {
        let compile = |raw: &RawTeamFile, taken: &BTreeSet<String>| {
            let policies =
                compile_team(&team.name, &raw.policies, &team.ceiling, issuers, protected)
                    .map_err(|e| e.to_string())?;
            match policies.iter().position(|p| taken.contains(&p.name)) {
                Some(index) => Err(format!(
                    "policies[{index}] ({}): name: duplicate policy name",
                    policies[index].name
                )),
                None => Ok(policies),
            }
        };
        let listed = match sources.only {
            Some((only, files)) if only == team.name => Ok(files.to_vec()),
            _ => list_files(&team.files),
        };
        // Files are tried one by one; when the listing itself fails, each last good file is
        // tried as if it had been refused.
        let (paths, listing_error) = match listed {
            Ok(paths) => (paths, None),
            Err(message) => {
                let previous = sources
                    .last_good
                    .iter()
                    .filter(|f| f.team == team.name)
                    .map(|f| f.path.clone())
                    .collect();
                (previous, Some(message))
            }
        };
        for path in paths {
            let fresh = match &listing_error {
                Some(message) => Err(message.clone()),
                None => read(&path).and_then(|raw| compile(&raw, &taken).map(|p| (raw, p))),
            };
            let refused = match fresh {
                Ok((raw, policies)) => {
                    load.accept(team, &path, raw, policies, false, &mut taken);
                    continue;
                }
                Err(message) => message,
            };
            let mut message = format!("{}: team {}: {refused}", path.display(), team.name);
            let previous = sources
                .last_good
                .iter()
                .find(|f| f.team == team.name && f.path == path);
            match previous.map(|file| (file, compile(&file.raw, &taken))) {
                None => message.push_str("; the file grants nothing"),
                Some((file, Ok(policies))) => {
                    message.push_str("; its last good version stays in force");
                    load.accept(team, &path, file.raw.clone(), policies, true, &mut taken);
                }
                Some((_, Err(why))) => message.push_str(&format!(
                    "; its last good version no longer fits and is dropped ({why})"
                )),
            }
            load.refusals.push(TeamRefusal {
                team: team.name.clone(),
                path,
                message,
            });
        }
    }
    load
}

impl TeamLoad {
    fn accept(
        &mut self,
        team: &Team,
        path: &Path,
        raw: RawTeamFile,
        policies: Vec<Policy>,
        last_good: bool,
        taken: &mut BTreeSet<String>,
    ) {
        taken.extend(policies.iter().map(|p| p.name.clone()));
        self.policies.extend(policies);
        self.files.push(TeamFile {
            team: team.name.clone(),
            path: path.to_owned(),
            raw,
            last_good,
        });
    }
}

/// Only what the watcher needs from the main file: each team's files pattern.
#[derive(Deserialize)]
struct Patterns {
    #[serde(default)]
    teams: std::collections::BTreeMap<String, FilesOnly>,
}

#[derive(Deserialize)]
struct FilesOnly {
    files: String,
}

/// The bytes that decide whether a reload is due: the main file, and the name and contents
/// of every file its teams' patterns match now (so a team file added, changed or removed is
/// a change). `None` when the main file cannot be read.
pub fn fingerprint(main: &Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(main).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Ok(patterns) = serde_saphyr::from_str::<Patterns>(&text) else {
        return Some(bytes);
    };
    for team in patterns.teams.values() {
        let Ok(pattern) = resolve_pattern(main, &team.files) else {
            continue;
        };
        for path in list_files(&pattern).unwrap_or_default() {
            bytes.push(0);
            bytes.extend_from_slice(path.to_string_lossy().as_bytes());
            bytes.push(0);
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    Some(bytes)
}
