//! Finding transcripts: the config roots (`CLAUDE_CONFIG_DIR`, else `~/.claude` and
//! `~/.config/claude`) and every `*.jsonl` under each root's `projects/`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::identity::FileIdentity;
use super::listed::{FileHash, ListedFiles, ListingDigest, Visited, WalkerFiles};
use super::listing::{DirEntries, DirEntriesRef, DirEntry, DirListing, DirStamp, Listing};

/// One transcript file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptFile {
    pub path: PathBuf,
    /// The project directory name under `projects/` (Claude Code's encoded cwd),
    /// shared by its files.
    pub project: Arc<str>,
    pub size: u64,
    /// What `stat` said while listing; lets an unchanged file be passed over
    /// without opening it.
    pub identity: FileIdentity,
}

/// Sorts `files` by path bytes: as deterministic as component order, and much
/// cheaper. A walk descends in that order, so only files from several roots, or
/// listed some other way, are sorted here.
pub fn sort_by_path<F: std::borrow::Borrow<TranscriptFile>>(files: &mut [F]) {
    let by_path = |a: &F, b: &F| {
        let (a, b) = (a.borrow(), b.borrow());
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    };
    if !files.is_sorted_by(|a, b| by_path(a, b).is_le()) {
        files.sort_unstable_by(by_path);
    }
}

/// A `*.jsonl` entry that was not listed: it is not a file ccotel can read.
#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// Why a `*.jsonl` entry was not listed.
#[derive(Debug)]
pub enum SkipReason {
    /// A FIFO, socket or device: reading one could block, or never end.
    NotAFile,
    /// A symlink whose target does not exist.
    DanglingLink,
    /// `stat` failed (permission denied, a symlink loop, …).
    Unreadable(Errno),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotAFile => f.write_str("not a regular file"),
            SkipReason::DanglingLink => f.write_str("a symlink to nothing"),
            SkipReason::Unreadable(errno) => write!(f, "{}", io::Error::from(*errno)),
        }
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
    Ok(discover_with(roots, &Listing::default())?
        .files
        .into_sorted())
}

/// What a listing found, and what it learned for the next one.
#[derive(Debug)]
pub struct Discovery<'a> {
    /// The files found, as the walkers left them, with their digest; in one
    /// sorted list, each file once, from [`ListedFiles::into_sorted`].
    pub files: ListedFiles,
    /// `*.jsonl` entries that are not files ccotel can read.
    pub skipped: Vec<Skipped>,
    /// Directories whose entries were read (the others were unchanged).
    pub dirs_read: usize,
    /// The listing this one started from.
    previous: &'a Listing,
    /// The settled directories among those read, with their entries.
    read: Listing,
    /// The directories whose entries came unchanged from `previous`: recorded
    /// by reference, as on a rerun they are nearly all of them and the listing
    /// learned is then `previous` again.
    kept: Vec<&'a OsStr>,
}

impl<'a> Discovery<'a> {
    fn new(previous: &'a Listing) -> Self {
        Discovery {
            files: ListedFiles::default(),
            skipped: Vec::new(),
            dirs_read: 0,
            previous,
            read: Listing::default(),
            kept: Vec::new(),
        }
    }

    /// Warns when nothing was found, naming the folders searched, and when
    /// `*.jsonl` entries were passed over: their count, and each with why at `-v`.
    pub fn warn(&self, roots: &[PathBuf]) {
        if self.files.is_empty() {
            let searched: Vec<String> = roots
                .iter()
                .map(|r| r.join("projects").display().to_string())
                .collect();
            tracing::warn!("no transcripts found under {}", searched.join(", "));
        }
        if self.skipped.is_empty() {
            return;
        }
        for entry in &self.skipped {
            tracing::info!("{}: not read: {}", entry.path.display(), entry.reason);
        }
        tracing::warn!(
            "passed over {} *.jsonl entries that are not readable files (-v lists them)",
            self.skipped.len()
        );
    }

    /// What was found, and the listing learned for the next call: `None` when it
    /// is the one this call started from.
    pub fn into_parts(mut self) -> (ListedFiles, Option<Listing>) {
        let files = std::mem::take(&mut self.files);
        (files, self.changed_listing())
    }

    /// With no directory read, every entry came unchanged from the listing this
    /// call started from, so the counts tell whether the learned one differs.
    fn changed_listing(self) -> Option<Listing> {
        if self.dirs_read == 0 && self.kept.len() == self.previous.len() {
            return None;
        }
        let mut listing = self.read;
        listing.keep(self.previous, &self.kept);
        Some(listing)
    }
}

/// Like [`discover`], reusing `previous` entries of directories unchanged since
/// (see [`super::listing`]): each directory is `stat`ed and only the changed ones
/// are read. Transcripts are `stat`ed either way, which catches appends.
///
/// Project directories are visited on several threads: on an unchanged corpus,
/// these `stat` calls are most of what a run does.
pub fn discover_with<'a>(roots: &[PathBuf], previous: &'a Listing) -> io::Result<Discovery<'a>> {
    discover_at(roots, previous, SystemTime::now())
}

/// [`discover_with`] as if it ran at `listed_at`, which decides what is settled.
fn discover_at<'a>(
    roots: &[PathBuf],
    previous: &'a Listing,
    listed_at: SystemTime,
) -> io::Result<Discovery<'a>> {
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
        for name in entries.borrow().transcripts() {
            let project: Arc<str> = name.to_string_lossy().into();
            walk.push_if_transcript(&anchor, child(&projects, name), &project);
        }
        for name in entries.borrow().subdirs() {
            let project: Arc<str> = name.to_string_lossy().into();
            project_dirs.push((child(&projects, name), project));
        }
    }
    let parts = visit_in_parallel(&project_dirs, previous, listed_at)?;
    let mut digest = walk.digest;
    let mut found = walk.found;
    let mut walkers = Vec::with_capacity(parts.len());
    for part in parts {
        found.read.extend(part.walk.found.read);
        found.kept.extend(part.walk.found.kept);
        found.dirs_read += part.walk.found.dirs_read;
        found.skipped.extend(part.walk.found.skipped);
        digest.merge(part.walk.digest);
        walkers.push(WalkerFiles {
            files: part.walk.files,
            hashes: part.walk.hashes,
            visited: part.visited,
        });
    }
    found.files = ListedFiles::new((walk.files, walk.hashes), walkers, digest);
    Ok(found)
}

/// One walker's findings, with the project directories it visited, in
/// increasing order.
struct Part<'a> {
    walk: Walk<'a>,
    visited: Vec<Visited>,
}

/// Visits the project directories on up to as many threads as there are cores,
/// this one among them, each taking the next unvisited directory.
fn visit_in_parallel<'a>(
    project_dirs: &[(PathBuf, Arc<str>)],
    previous: &'a Listing,
    listed_at: SystemTime,
) -> io::Result<Vec<Part<'a>>> {
    let threads = cpus_allowed().clamp(1, 8).min(project_dirs.len().max(1));
    // Room for every transcript of the last listing, so a walker that takes more
    // than its share does not copy its list as it grows. Capacity a walker does
    // not fill is never touched, so it costs no memory.
    let expected_files = previous.transcripts() + 16;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> io::Result<Part<'a>> {
        let mut walk = Walk::new(previous, listed_at);
        walk.files.reserve(expected_files);
        walk.hashes.reserve(expected_files);
        let mut visited = Vec::new();
        loop {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((dir, project)) = project_dirs.get(at) else {
                return Ok(Part { walk, visited });
            };
            let (files_before, digest_before) = (walk.files.len(), walk.digest);
            if let Some(anchor) = Anchor::open(dir)? {
                walk.visit(&anchor, dir, project)?;
            }
            visited.push(Visited {
                at,
                files: walk.files.len() - files_before,
                digest: walk.digest.since(digest_before),
            });
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        for helper in helpers {
            let part = helper
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("listing thread failed")));
            parts.push(part);
        }
        parts.into_iter().collect()
    })
}

/// The CPUs this process may run on. Not `available_parallelism`, which also reads
/// the cgroup's CPU quota from three files: that took about a tenth of a
/// millisecond before the walk could start, a cost an unchanged rerun notices.
/// Under a quota smaller than this count, the extra walkers cost a spawn each, not
/// more work.
pub fn cpus_allowed() -> usize {
    rustix::thread::sched_getaffinity(None)
        .ok()
        .and_then(|set| usize::try_from(set.count()).ok())
        .unwrap_or(1)
}

/// A directory's entries: kept from the previous listing, or read now.
enum Entries<'a> {
    Kept(DirEntriesRef<'a>),
    Read(Arc<DirEntries>),
}

impl Entries<'_> {
    fn borrow(&self) -> DirEntriesRef<'_> {
        match self {
            Entries::Kept(entries) => *entries,
            Entries::Read(entries) => entries.borrow(),
        }
    }
}

/// One thread's share of a listing.
struct Walk<'a> {
    listed_at: SystemTime,
    /// What was found besides the files.
    found: Discovery<'a>,
    files: Vec<TranscriptFile>,
    /// Each file's part of `digest`, kept for a plan to compare the files of a
    /// project with the manifest's a few at a time.
    hashes: Vec<FileHash>,
    digest: ListingDigest,
}

impl<'a> Walk<'a> {
    fn new(previous: &'a Listing, listed_at: SystemTime) -> Self {
        Walk {
            listed_at,
            found: Discovery::new(previous),
            files: Vec::new(),
            hashes: Vec::new(),
            digest: ListingDigest::default(),
        }
    }

    /// Lists `dir`, which is `anchor`'s or under it, and what is under it.
    fn visit(&mut self, anchor: &Anchor<'_>, dir: &Path, project: &Arc<str>) -> io::Result<()> {
        let Some(entries) = self.entries(anchor, dir)? else {
            return Ok(());
        };
        for entry in entries.borrow().in_path_order() {
            match entry {
                DirEntry::Transcript(name) => {
                    self.push_if_transcript(anchor, child(dir, name), project)
                }
                DirEntry::Subdir(name) => self.visit(anchor, &child(dir, name), project)?,
            }
        }
        Ok(())
    }

    /// The entries of `dir`, kept when it is unchanged since the last listing;
    /// `None` when it is gone (deleted by Claude Code's cleanup while we walk).
    fn entries(&mut self, anchor: &Anchor<'_>, dir: &Path) -> io::Result<Option<Entries<'a>>> {
        // Taken before reading: a change while we read shows as a different stamp.
        let stamp = match anchor.stat(dir) {
            Ok(stat) => DirStamp::of(&stat),
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(about(dir, errno.into())),
        };
        // Kept entries were settled when recorded and their stamp has not moved
        // since, so they are still settled.
        if let Some((key, entries)) = self.found.previous.unchanged(dir, &stamp) {
            self.found.kept.push(key);
            return Ok(Some(Entries::Kept(entries)));
        }
        self.found.dirs_read += 1;
        let entries = match DirEntries::read(dir) {
            Ok(entries) => Arc::new(entries),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(about(dir, error)),
        };
        if stamp.settled(self.listed_at) {
            let listing = DirListing {
                stamp,
                entries: Arc::clone(&entries),
            };
            self.found.read.insert(dir, listing);
        }
        Ok(Some(Entries::Read(entries)))
    }

    /// Follows a symlinked file. What is not a regular file is recorded as
    /// skipped, except a file gone since its directory was read (Claude Code's
    /// cleanup).
    fn push_if_transcript(&mut self, anchor: &Anchor<'_>, path: PathBuf, project: &Arc<str>) {
        let stat = match anchor.stat(&path) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => {
                if anchor.is_symlink(&path) {
                    self.skip(path, SkipReason::DanglingLink);
                }
                return;
            }
            Err(errno) => return self.skip(path, SkipReason::Unreadable(errno)),
        };
        if !FileType::from_raw_mode(stat.st_mode).is_file() {
            return self.skip(path, SkipReason::NotAFile);
        }
        let identity = FileIdentity::of_stat(&stat);
        let hash = FileHash::of(path.as_os_str().as_bytes(), &identity);
        self.digest.add_hash(hash);
        self.hashes.push(hash);
        self.files.push(TranscriptFile {
            path,
            project: Arc::clone(project),
            size: identity.size,
            identity,
        });
    }

    fn skip(&mut self, path: PathBuf, reason: SkipReason) {
        self.found.skipped.push(Skipped { path, reason });
    }
}

/// `dir/name`, allocated once: `Path::join` sizes the new path for `dir` alone and
/// grows it for `name`, and that second allocation was a tenth of a listing's
/// work.
fn child(dir: &Path, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
    path.push(dir);
    path.push(name);
    path
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
        self.stat_with(path, AtFlags::empty())
    }

    /// Whether `path`, a path under the anchor's directory, is a symlink.
    fn is_symlink(&self, path: &Path) -> bool {
        self.stat_with(path, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
    }

    /// `stat` of `path` with `flags`, looked up from the anchor when it is under
    /// it. The anchor's directory itself was opened through any symlink to it.
    fn stat_with(&self, path: &Path, flags: AtFlags) -> Result<Stat, Errno> {
        let path = path.as_os_str().as_bytes();
        let dir = self.dir.as_os_str().as_bytes();
        match path.strip_prefix(dir) {
            Some([]) => rustix::fs::fstat(&self.fd),
            Some([b'/', relative @ ..]) if !relative.is_empty() => {
                rustix::fs::statat(&self.fd, OsStr::from_bytes(relative), flags)
            }
            _ => rustix::fs::statat(rustix::fs::CWD, path, flags),
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
        assert!(files.iter().all(|f| &*f.project == "-home-dev-app"));
    }

    /// A listing taken this long after now sees today's directories as settled.
    fn later() -> SystemTime {
        SystemTime::now() + 2 * super::super::listing::SETTLE
    }

    /// The files found, sorted, taken out of `found`.
    fn take_sorted(found: &mut Discovery<'_>) -> Vec<TranscriptFile> {
        std::mem::take(&mut found.files).into_sorted()
    }

    fn relative_paths(files: &[TranscriptFile], project: &Path) -> Vec<String> {
        files
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
        let empty = Listing::default();
        let first = discover_at(&roots, &empty, later()).expect("list");
        assert_eq!(first.dirs_read, 4, "projects, -p, s1, subagents");
        let (first_files, first_listing) = first.into_parts();
        let first_digest = first_files.digest();
        let first_files = first_files.into_sorted();
        assert_eq!(
            ListedFiles::from(first_files.clone()).digest(),
            first_digest
        );
        let first_listing = first_listing.expect("every directory is new");
        assert_eq!(first_listing.len(), 4);

        // Kept in memory (as `run` keeps it), and saved then looked up in place
        // (as a report loads it).
        let state = tempfile::tempdir().expect("tempdir");
        first_listing.save(state.path()).expect("save");
        let saved = Listing::load(state.path());
        assert_eq!(saved.len(), 4);
        for previous in [&first_listing, &saved] {
            let mut second = discover_at(&roots, previous, later()).expect("list");
            assert_eq!(second.dirs_read, 0);
            assert_eq!(second.files.digest(), first_digest);
            assert_eq!(take_sorted(&mut second), first_files);
            assert!(second.changed_listing().is_none(), "nothing changed");
        }

        fs::write(project.join("s1.jsonl"), b"{}\n{}\n").expect("append");
        touch(&project.join("s2/subagents/agent-b1.jsonl"));
        let mut third = discover_at(&roots, &saved, later()).expect("list");
        assert_eq!(
            third.dirs_read, 3,
            "-p changed; s2 and its subagents are new"
        );
        assert_ne!(third.files.digest(), first_digest);
        let third_files = take_sorted(&mut third);
        assert_eq!(
            relative_paths(&third_files, &project),
            [
                "s1.jsonl",
                "s1/subagents/agent-a1.jsonl",
                "s2/subagents/agent-b1.jsonl"
            ]
        );
        assert_eq!(
            third_files[0].size, 6,
            "an append is seen without reading the directory"
        );
        let third_listing = third.changed_listing().expect("-p changed");
        drop(saved);
        assert_eq!(third_listing.len(), 6, "s2 and its subagents added");
        assert_eq!(
            third_listing.transcripts(),
            3,
            "kept and read entries alike"
        );

        fs::remove_dir_all(project.join("s1")).expect("rm");
        let mut fourth = discover_at(&roots, &third_listing, later()).expect("list");
        assert_eq!(
            relative_paths(&take_sorted(&mut fourth), &project),
            ["s1.jsonl", "s2/subagents/agent-b1.jsonl"]
        );
        let fourth_listing = fourth.changed_listing().expect("s1 is gone");
        assert_eq!(fourth_listing.len(), 4, "s1 and its subagents dropped");
    }

    #[test]
    fn a_directory_changed_just_before_the_listing_is_read_again_next_time() {
        let home = tempfile::tempdir().expect("tempdir");
        let roots = default_roots(home.path());
        touch(&roots[0].join("projects/-p/s1.jsonl"));
        let empty = Listing::default();
        let first = discover_with(&roots, &empty).expect("list");
        let (first_files, first_listing) = first.into_parts();
        let first_listing = first_listing.expect("directories were read");
        assert!(first_listing.is_empty(), "nothing is settled yet");
        let second = discover_with(&roots, &first_listing).expect("list");
        assert_eq!(second.dirs_read, 2);
        assert_eq!(second.files.into_sorted(), first_files.into_sorted());
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

    /// A FIFO would block a reader, and a dangling link or a loop cannot be
    /// read: each is passed over and named with why, never opened.
    #[test]
    fn entries_that_are_not_readable_files_are_skipped_with_a_reason() {
        let home = tempfile::tempdir().expect("tempdir");
        let project = home.path().join(".claude/projects/-p");
        touch(&project.join("s1.jsonl"));
        touch(&project.join("s1/subagents/agent-a1.jsonl"));
        let dir = fs::File::open(&project).expect("open project");
        rustix::fs::mknodat(
            &dir,
            "fifo.jsonl",
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink(
            project.join("gone"),
            project.join("s1/subagents/agent-dangling.jsonl"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink("loop.jsonl", project.join("loop.jsonl")).expect("symlink");
        let projects = project.parent().expect("projects");
        // Beside the project directories, where the main thread lists.
        std::os::unix::fs::symlink("gone", projects.join("top.jsonl")).expect("symlink");

        let empty = Listing::default();
        let mut found = discover_with(&default_roots(home.path()), &empty).expect("discover");

        let files = take_sorted(&mut found);
        let listed: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(
            listed,
            [
                project.join("s1.jsonl"),
                project.join("s1/subagents/agent-a1.jsonl")
            ]
        );
        let mut skipped: Vec<(String, String)> = found
            .skipped
            .iter()
            .map(|entry| {
                let name = entry.path.strip_prefix(projects).expect("under projects/");
                (name.display().to_string(), entry.reason.to_string())
            })
            .collect();
        skipped.sort();
        let loop_reason = io::Error::from(Errno::LOOP).to_string();
        assert_eq!(
            skipped,
            [
                ("-p/fifo.jsonl".to_owned(), "not a regular file".to_owned()),
                ("-p/loop.jsonl".to_owned(), loop_reason),
                (
                    "-p/s1/subagents/agent-dangling.jsonl".to_owned(),
                    "a symlink to nothing".to_owned()
                ),
                ("top.jsonl".to_owned(), "a symlink to nothing".to_owned()),
            ]
        );
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
