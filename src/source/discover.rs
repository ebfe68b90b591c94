//! Finding transcripts: the config roots (`CLAUDE_CONFIG_DIR`, else `~/.claude` and
//! `~/.config/claude`) and every `*.jsonl` under each root's `projects/`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashSet;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::identity::FileIdentity;
use super::listing::{DirEntries, DirEntry, DirListing, DirStamp, Listing};

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
pub fn discover(roots: &[PathBuf]) -> io::Result<Vec<TranscriptFile>> {
    Ok(discover_with(roots, &Listing::default())?.files)
}

/// What a listing found, and what it learned for the next one.
#[derive(Debug, Default)]
pub struct Discovery {
    pub files: Vec<TranscriptFile>,
    /// The settled directories' entries, for the next call.
    pub listing: Listing,
    /// Directories whose entries were read (the others were unchanged).
    pub dirs_read: usize,
}

impl Discovery {
    /// The listing learned differs from `previous`, the one it started from.
    /// With no directory read, every entry came unchanged from `previous`, so the
    /// sizes tell.
    pub fn listing_changed(&self, previous: &Listing) -> bool {
        self.dirs_read > 0 || self.listing.len() != previous.len()
    }
}

/// Like [`discover`], reusing `previous` entries of directories unchanged since
/// (see [`super::listing`]): each directory is `stat`ed and only the changed ones
/// are read. Transcripts are `stat`ed either way, which catches appends.
///
/// Project directories are visited on several threads: on an unchanged corpus,
/// these `stat` calls are most of what a run does.
pub fn discover_with(roots: &[PathBuf], previous: &Listing) -> io::Result<Discovery> {
    discover_at(roots, previous, SystemTime::now())
}

/// [`discover_with`] as if it ran at `listed_at`, which decides what is settled.
fn discover_at(
    roots: &[PathBuf],
    previous: &Listing,
    listed_at: SystemTime,
) -> io::Result<Discovery> {
    let mut walk = Walk::new(previous, listed_at);
    let mut project_dirs = Vec::new();
    for root in roots {
        let projects = root.join("projects");
        let Some(anchor) = Anchor::open(&projects)? else {
            continue;
        };
        let Some(entries) = walk.entries(&anchor, &projects)? else {
            continue;
        };
        for name in entries.transcripts() {
            let project = name.to_string_lossy();
            walk.push_if_transcript(&anchor, projects.join(name), &project);
        }
        for name in entries.subdirs() {
            let project = name.to_string_lossy().into_owned();
            project_dirs.push((projects.join(name), project));
        }
    }
    let mut found = walk.found;
    let parts = visit_in_parallel(&project_dirs, previous, listed_at)?;
    merge_in_project_order(parts, &mut found);
    // Byte order: as deterministic as component order, and much cheaper. Walks
    // descend in that order, so this sorts only what came from several roots.
    let by_path = |a: &TranscriptFile, b: &TranscriptFile| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    };
    if !found.files.is_sorted_by(|a, b| by_path(a, b).is_le()) {
        found.files.sort_unstable_by(by_path);
    }
    let mut seen = FxHashSet::with_capacity_and_hasher(found.files.len(), Default::default());
    found
        .files
        .retain(|file| seen.insert((file.identity.dev, file.identity.ino)));
    Ok(found)
}

/// One walker's findings, with the project directories it visited (their index,
/// in increasing order) and how many files each added.
struct Part {
    found: Discovery,
    visited: Vec<(usize, usize)>,
}

/// Adds the walkers' findings to `found`, their files in the order of the project
/// directories they came from.
fn merge_in_project_order(parts: Vec<Part>, found: &mut Discovery) {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut files = Vec::with_capacity(parts.len());
    for (walker, part) in parts.into_iter().enumerate() {
        runs.extend(part.visited.iter().map(|&(at, count)| (at, walker, count)));
        found.listing.extend(part.found.listing);
        found.dirs_read += part.found.dirs_read;
        files.push(part.found.files.into_iter());
    }
    runs.sort_unstable();
    found
        .files
        .reserve(files.iter().map(|walker| walker.len()).sum());
    for (_, walker, count) in runs {
        found.files.extend(files[walker].by_ref().take(count));
    }
}

fn visit_in_parallel(
    project_dirs: &[(PathBuf, String)],
    previous: &Listing,
    listed_at: SystemTime,
) -> io::Result<Vec<Part>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(project_dirs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut walk = Walk::new(previous, listed_at);
                    let mut visited = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((dir, project)) = project_dirs.get(at) else {
                            return Ok(Part {
                                found: walk.found,
                                visited,
                            });
                        };
                        let before = walk.found.files.len();
                        if let Some(anchor) = Anchor::open(dir)? {
                            walk.visit(&anchor, dir, project)?;
                        }
                        visited.push((at, walk.found.files.len() - before));
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
    })
}

/// One thread's share of a listing.
struct Walk<'a> {
    previous: &'a Listing,
    listed_at: SystemTime,
    found: Discovery,
}

impl<'a> Walk<'a> {
    fn new(previous: &'a Listing, listed_at: SystemTime) -> Self {
        Walk {
            previous,
            listed_at,
            found: Discovery::default(),
        }
    }

    /// Lists `dir`, which is `anchor`'s or under it, and what is under it.
    fn visit(&mut self, anchor: &Anchor<'_>, dir: &Path, project: &str) -> io::Result<()> {
        let Some(entries) = self.entries(anchor, dir)? else {
            return Ok(());
        };
        for entry in entries.in_path_order() {
            match entry {
                DirEntry::Transcript(name) => {
                    self.push_if_transcript(anchor, dir.join(name), project)
                }
                DirEntry::Subdir(name) => self.visit(anchor, &dir.join(name), project)?,
            }
        }
        Ok(())
    }

    /// The entries of `dir`, reused when it is unchanged since the last listing;
    /// `None` when it is gone (deleted by Claude Code's cleanup while we walk).
    fn entries(&mut self, anchor: &Anchor<'_>, dir: &Path) -> io::Result<Option<Arc<DirEntries>>> {
        // Taken before reading: a change while we read shows as a different stamp.
        let stamp = match anchor.stat(dir) {
            Ok(stat) => DirStamp::of(&stat),
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(about(dir, errno.into())),
        };
        let entries = match self.previous.entries_if_unchanged(dir, &stamp) {
            Some(entries) => Arc::clone(entries),
            None => {
                self.found.dirs_read += 1;
                match DirEntries::read(dir) {
                    Ok(entries) => Arc::new(entries),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(about(dir, error)),
                }
            }
        };
        if stamp.settled(self.listed_at) {
            let listing = DirListing {
                stamp,
                entries: Arc::clone(&entries),
            };
            self.found.listing.insert(dir, listing);
        }
        Ok(Some(entries))
    }

    /// Follows a symlinked file; skips what is not a regular file or is gone.
    fn push_if_transcript(&mut self, anchor: &Anchor<'_>, path: PathBuf, project: &str) {
        let Ok(stat) = anchor.stat(&path) else {
            return;
        };
        if !FileType::from_raw_mode(stat.st_mode).is_file() {
            return;
        }
        let identity = FileIdentity::of_stat(&stat);
        self.found.files.push(TranscriptFile {
            path,
            project: project.to_owned(),
            size: identity.size,
            identity,
        });
    }
}

/// `error` with the directory it happened in, which the OS error lacks.
fn about(dir: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", dir.display()))
}

/// A directory held open so that what is under it is looked up from there rather
/// than from `/`: on an unchanged corpus these `stat`s are most of a run's work,
/// and walking a path of eight or ten components was part of each.
struct Anchor<'a> {
    fd: OwnedFd,
    dir: &'a Path,
}

impl<'a> Anchor<'a> {
    /// `None` when `dir` is gone or not a directory. `O_PATH`: the handle is only
    /// for lookups.
    fn open(dir: &'a Path) -> io::Result<Option<Anchor<'a>>> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(dir, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Anchor { fd, dir })),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(errno) => Err(about(dir, errno.into())),
        }
    }

    /// `stat` of `path`, the anchor's directory or a path under it, following
    /// symlinks.
    fn stat(&self, path: &Path) -> Result<Stat, Errno> {
        let path = path.as_os_str().as_bytes();
        let dir = self.dir.as_os_str().as_bytes();
        match path.strip_prefix(dir) {
            Some([]) => rustix::fs::fstat(&self.fd),
            Some([b'/', relative @ ..]) if !relative.is_empty() => {
                rustix::fs::statat(&self.fd, OsStr::from_bytes(relative), AtFlags::empty())
            }
            _ => rustix::fs::stat(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

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

    /// A listing taken this long after now sees today's directories as settled.
    fn later() -> SystemTime {
        SystemTime::now() + 2 * super::super::listing::SETTLE
    }

    fn relative_paths(found: &Discovery, project: &Path) -> Vec<String> {
        found
            .files
            .iter()
            .map(|f| {
                let path = f.path.strip_prefix(project).expect("under project");
                path.display().to_string()
            })
            .collect()
    }

    #[test]
    fn unchanged_directories_are_not_read_again_and_changes_are_seen() {
        let home = tempfile::tempdir().expect("tempdir");
        let roots = default_roots(home.path());
        let project = roots[0].join("projects").join("-p");
        touch(&project.join("s1.jsonl"));
        touch(&project.join("s1/subagents/agent-a1.jsonl"));
        let first = discover_at(&roots, &Listing::default(), later()).expect("list");
        assert_eq!(first.dirs_read, 4, "projects, -p, s1, subagents");
        assert_eq!(first.listing.len(), 4);

        let second = discover_at(&roots, &first.listing, later()).expect("list");
        assert_eq!(second.dirs_read, 0);
        assert_eq!(second.files, first.files);
        assert_eq!(second.listing, first.listing);

        fs::write(project.join("s1.jsonl"), b"{}\n{}\n").expect("append");
        touch(&project.join("s2/subagents/agent-b1.jsonl"));
        let third = discover_at(&roots, &second.listing, later()).expect("list");
        assert_eq!(
            third.dirs_read, 3,
            "-p changed; s2 and its subagents are new"
        );
        assert_eq!(
            relative_paths(&third, &project),
            [
                "s1.jsonl",
                "s1/subagents/agent-a1.jsonl",
                "s2/subagents/agent-b1.jsonl"
            ]
        );
        assert_eq!(
            third.files[0].size, 6,
            "an append is seen without reading the directory"
        );

        fs::remove_dir_all(project.join("s1")).expect("rm");
        let fourth = discover_at(&roots, &third.listing, later()).expect("list");
        assert_eq!(
            relative_paths(&fourth, &project),
            ["s1.jsonl", "s2/subagents/agent-b1.jsonl"]
        );
    }

    #[test]
    fn a_directory_changed_just_before_the_listing_is_read_again_next_time() {
        let home = tempfile::tempdir().expect("tempdir");
        let roots = default_roots(home.path());
        touch(&roots[0].join("projects/-p/s1.jsonl"));
        let first = discover_with(&roots, &Listing::default()).expect("list");
        assert!(first.listing.is_empty(), "nothing is settled yet");
        let second = discover_with(&roots, &first.listing).expect("list");
        assert_eq!(second.dirs_read, 2);
        assert_eq!(second.files, first.files);
    }

    /// An unchanged file is passed over by comparing the listing's identity with the
    /// saved one, taken from the opened file: both `stat`s must agree.
    #[test]
    fn a_listed_identity_equals_the_open_files_and_follows_symlinks() {
        let home = tempfile::tempdir().expect("tempdir");
        let project = home.path().join(".claude/projects/-p");
        touch(&project.join("s1.jsonl"));
        std::os::unix::fs::symlink(project.join("s1.jsonl"), project.join("link.jsonl"))
            .expect("symlink");
        std::os::unix::fs::symlink(project.join("gone"), project.join("dangling.jsonl"))
            .expect("symlink");
        let files = discover(&default_roots(home.path())).expect("discover");
        let opened = fs::File::open(project.join("s1.jsonl")).expect("open");
        let identity = FileIdentity::of(&opened.metadata().expect("metadata"));
        assert_eq!(
            files.len(),
            1,
            "the link is the same file; the dangling one is skipped"
        );
        assert_eq!(files[0].identity, identity);
        assert_eq!(files[0].size, 3);
    }

    #[test]
    fn a_directory_that_cannot_be_opened_is_named_in_the_error() {
        let home = tempfile::tempdir().expect("tempdir");
        let roots = default_roots(home.path());
        let projects = roots[0].join("projects");
        fs::create_dir_all(&roots[0]).expect("mkdir");
        std::os::unix::fs::symlink(&projects, &projects).expect("symlink loop");
        let error = discover(&roots).expect_err("a symlink loop cannot be listed");
        let message = error.to_string();
        assert!(message.contains(&*projects.to_string_lossy()), "{message}");
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
