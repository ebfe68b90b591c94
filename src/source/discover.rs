//! Finding transcripts: the config roots (`CLAUDE_CONFIG_DIR`, else `~/.claude` and
//! `~/.config/claude`) and every `*.jsonl` under each root's `projects/`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::identity::FileIdentity;

/// One transcript file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptFile {
    pub path: PathBuf,
    /// The project directory name under `projects/` (Claude Code's encoded cwd).
    pub project: String,
    pub size: u64,
    /// What `stat` said while listing; lets an unchanged file be passed over
    /// without opening it.
    pub identity: FileIdentity,
}

/// Warns, naming the folders searched, when a listing found no transcript.
pub fn warn_if_none_found(roots: &[PathBuf], files: &[TranscriptFile]) {
    if files.is_empty() {
        let searched: Vec<String> = roots
            .iter()
            .map(|r| r.join("projects").display().to_string())
            .collect();
        tracing::warn!("no transcripts found under {}", searched.join(", "));
    }
}

/// The roots named by `CLAUDE_CONFIG_DIR` (a comma-separated list), if it is set.
pub fn roots_from_env(value: Option<&str>) -> Option<Vec<PathBuf>> {
    let value = value?;
    let roots: Vec<PathBuf> = value
        .split(',')
        .map(str::trim)
        .filter(|root| !root.is_empty())
        .map(PathBuf::from)
        .collect();
    (!roots.is_empty()).then_some(roots)
}

/// Claude Code's default config roots under `home`.
pub fn default_roots(home: &Path) -> Vec<PathBuf> {
    vec![home.join(".claude"), home.join(".config").join("claude")]
}

/// Every transcript under the given roots, sorted by path. Roots without a
/// `projects/` directory are skipped; the same file reached through two roots (a
/// symlinked config dir) is listed once.
///
/// Project directories are walked on several threads: listing is mostly `stat`
/// calls, and on an unchanged corpus listing is most of what a run does.
pub fn discover(roots: &[PathBuf]) -> io::Result<Vec<TranscriptFile>> {
    let mut files = Vec::new();
    let mut project_dirs = Vec::new();
    for root in roots {
        let projects = root.join("projects");
        if !fs::metadata(&projects).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for entry in fs::read_dir(&projects)? {
            let entry = entry?;
            let project = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                project_dirs.push((entry.path(), project));
            } else {
                push_if_transcript(&entry, &project, &mut files);
            }
        }
    }
    files.extend(walk_in_parallel(&project_dirs)?);
    // Byte order: as deterministic as component order, and much cheaper.
    files.sort_unstable_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    let mut seen = HashSet::with_capacity(files.len());
    files.retain(|file| seen.insert((file.identity.dev, file.identity.ino)));
    Ok(files)
}

fn walk_in_parallel(project_dirs: &[(PathBuf, String)]) -> io::Result<Vec<TranscriptFile>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<io::Result<Vec<TranscriptFile>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut files = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((dir, project)) = project_dirs.get(at) else {
                            return Ok(files);
                        };
                        walk(dir, project, &mut files)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("listing thread failed")))
            })
            .collect()
    });
    let mut files = Vec::new();
    for result in results {
        files.extend(result?);
    }
    Ok(files)
}

fn walk(dir: &Path, project: &str, files: &mut Vec<TranscriptFile>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A session directory deleted by Claude Code's cleanup while we walk.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        // Directory symlinks are not followed: they can form cycles.
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), project, files)?;
        } else {
            push_if_transcript(&entry, project, files);
        }
    }
    Ok(())
}

fn push_if_transcript(entry: &fs::DirEntry, project: &str, files: &mut Vec<TranscriptFile>) {
    if !entry.file_name().as_bytes().ends_with(b".jsonl") {
        return;
    }
    // Follows a symlinked file (unlike `DirEntry::metadata`), relative to the
    // directory already open.
    let path = entry.path();
    let metadata = match entry.file_type() {
        Ok(kind) if kind.is_symlink() => fs::metadata(&path),
        _ => entry.metadata(),
    };
    let Ok(metadata) = metadata else {
        return;
    };
    let identity = FileIdentity::of(&metadata);
    if !metadata.is_file() {
        return;
    }
    files.push(TranscriptFile {
        path,
        project: project.to_owned(),
        size: metadata.len(),
        identity,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, b"{}\n").expect("write");
    }

    #[test]
    fn finds_every_layout_and_nothing_else() {
        let home = tempfile::tempdir().expect("tempdir");
        let root = home.path().join(".claude");
        let project = root.join("projects").join("-home-dev-app");
        for name in [
            "s1.jsonl",
            "agent-af1ff21.jsonl",
            "s1/subagents/agent-a2898e3.jsonl",
            "s1/subagents/agent-acompact-e1f845.jsonl",
        ] {
            touch(&project.join(name));
        }
        touch(&project.join("s1/subagents/agent-a2898e3.meta.json"));
        touch(&project.join("memory/notes.md"));
        touch(&root.join("history.jsonl"));
        let files = discover(&default_roots(home.path())).expect("discover");
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(&project)
                    .expect("under project")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "agent-af1ff21.jsonl",
                "s1.jsonl",
                "s1/subagents/agent-a2898e3.jsonl",
                "s1/subagents/agent-acompact-e1f845.jsonl",
            ]
        );
        assert!(files.iter().all(|f| f.project == "-home-dev-app"));
    }

    #[test]
    fn env_list_replaces_defaults() {
        assert_eq!(roots_from_env(None), None);
        assert_eq!(roots_from_env(Some(" , ")), None);
        assert_eq!(
            roots_from_env(Some("/a, /b ,")),
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
    }
}
