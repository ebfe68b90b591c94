//! What a rerun compares its listing with: the saved manifest's files as a
//! digest, whole, by project and by block of entries, and the few files it saw
//! written last. Taken on the loading thread while the transcripts are listed
//! (see `ingest`): an unchanged listing is then told by one comparison, and a
//! changed one compared with the manifest only where the digests differ.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{Entries, EntriesAt, Entry, SavedManifest};
use crate::source::identity::FileIdentity;
use crate::source::listed::{FileHash, ListingDigest};

impl SavedManifest {
    /// The digest of the manifest's files, by path and identity: equal to a
    /// listing's (see [`ListedFiles::digest`](crate::source::ListedFiles::digest)) when it lists exactly these
    /// files, none changed since. With it, each project's files, sorted by
    /// project name, with their digest and their blocks' (see
    /// [`ProjectEntries`]), to compare with a listing's
    /// ([`ListedFiles::projects`](crate::source::ListedFiles::projects)) when the
    /// whole digests differ.
    pub fn listing_digest(&self) -> ManifestDigest {
        let mut projects: Vec<ProjectEntries> = Vec::new();
        let mut written_last = WrittenLast::default();
        let mut entries = self.entries();
        loop {
            let at = entries.at();
            let Some(entry) = entries.next() else { break };
            written_last.offer(entry.path, &entry.identity);
            let hash = FileHash::of(entry.path, &entry.identity);
            let same = projects
                .last()
                .is_some_and(|last| *last.project == *entry.project());
            if !same {
                projects.push(ProjectEntries {
                    project: entry.project().into(),
                    digest: ListingDigest::default(),
                    blocks: Vec::new(),
                });
            }
            if let Some(last) = projects.last_mut() {
                last.add(hash, at, entry.path);
            }
        }
        // The whole digest is the projects' together: each file is hashed once.
        let mut whole = ListingDigest::default();
        for project in &projects {
            whole.merge(project.digest);
        }
        // Stable: a project in two roots keeps its runs in path order.
        projects.sort_by(|a, b| a.project.cmp(&b.project));
        ManifestDigest {
            whole,
            projects,
            written_last,
        }
    }

    /// The entries of one block of a project's run, in path order.
    pub fn block_entries<'a>(&'a self, block: &'a EntriesBlock) -> impl Iterator<Item = Entry<'a>> {
        Entries::resume(&self.base, &self.changed, block.at, &block.first_path).take(block.len())
    }
}

/// A manifest's files' digest, whole and by project (see
/// [`SavedManifest::listing_digest`]), and the files it saw written last.
#[derive(Debug)]
pub struct ManifestDigest {
    pub whole: ListingDigest,
    /// Sorted by project name.
    pub projects: Vec<ProjectEntries>,
    pub written_last: WrittenLast,
}

/// The files whose last change a manifest recorded latest, up to
/// [`WrittenLast::FILES`] of them: where Claude Code is likeliest to be
/// writing still. A rerun looks at them first, while it lists the rest, to
/// know early that it will read something. Only a hint: a file whose mtime was
/// set in the future keeps its place, which makes the hint miss more often,
/// never the run wrong.
#[derive(Debug, Default)]
pub struct WrittenLast {
    /// Newest first.
    files: Vec<(PathBuf, FileIdentity)>,
}

impl WrittenLast {
    /// A few sessions at once; each is one `stat`.
    pub const FILES: usize = 8;

    fn offer(&mut self, path: &[u8], identity: &FileIdentity) {
        let full = self.files.len() == Self::FILES;
        if full
            && self
                .files
                .last()
                .is_some_and(|(_, last)| last.mtime_ns >= identity.mtime_ns)
        {
            return;
        }
        let newer = |(_, kept): &(PathBuf, FileIdentity)| kept.mtime_ns >= identity.mtime_ns;
        let at = self.files.partition_point(newer);
        if at < Self::FILES {
            let path = PathBuf::from(OsString::from_vec(path.to_vec()));
            self.files.insert(at, (path, *identity));
            self.files.truncate(Self::FILES);
        }
    }

    /// Whether any of them was written, replaced or deleted since the manifest
    /// recorded it.
    pub fn any_changed(&self) -> bool {
        self.files
            .iter()
            .any(|(path, recorded)| match rustix::fs::stat(path) {
                Ok(stat) => !FileIdentity::of_stat(&stat).unchanged_since(recorded),
                Err(_) => true,
            })
    }

    /// The files, newest first.
    #[cfg(test)]
    fn paths(&self) -> impl Iterator<Item = &std::path::Path> {
        self.files.iter().map(|(path, _)| path.as_path())
    }
}

/// One project's entries as they follow each other in a manifest (a project
/// found in two roots has two runs), with their digest, and in blocks of up to
/// [`ENTRIES_PER_BLOCK`], each with its own digest and where it begins: a run
/// that finds the project changed compares the listing with it block by
/// block, and decodes the entries of only the blocks whose digests differ.
#[derive(Debug)]
pub struct ProjectEntries {
    pub project: Box<[u8]>,
    pub digest: ListingDigest,
    pub blocks: Vec<EntriesBlock>,
}

/// How many entries of a project a block holds at most. Claude Code keeps
/// every session of a directory in one project: on the 10,000-file corpus one
/// holds 3,988 files, and comparing them all with the manifest, entry by entry,
/// was 0.2 ms of a run that read 1 MB into ten of them.
pub const ENTRIES_PER_BLOCK: usize = 32;

impl ProjectEntries {
    /// Adds the entry at `path`, `at` where the entries stood before it.
    fn add(&mut self, hash: FileHash, at: EntriesAt, path: &[u8]) {
        self.digest.add_hash(hash);
        let full = self
            .blocks
            .last()
            .is_none_or(|block| block.len() == ENTRIES_PER_BLOCK);
        if full {
            self.blocks.push(EntriesBlock {
                digest: ListingDigest::default(),
                first_path: path.into(),
                at,
            });
        }
        if let Some(block) = self.blocks.last_mut() {
            block.digest.add_hash(hash);
        }
    }
}

/// A run of a project's entries (see [`ProjectEntries`]), with their digest,
/// and where they begin.
#[derive(Debug)]
pub struct EntriesBlock {
    pub digest: ListingDigest,
    first_path: Box<[u8]>,
    at: EntriesAt,
}

impl EntriesBlock {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.digest.files() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::super::tests::{load, sample_state};
    use super::super::{FileChange, FileState, Manifest, StateDir};
    use super::*;

    /// The files written last are the ones with the latest mtimes the manifest
    /// recorded, newest first, the first of equal ones kept; a file written,
    /// replaced or deleted since makes them changed.
    #[test]
    fn the_files_written_last_are_kept_newest_first_and_looked_at_again() {
        let mut last = WrittenLast::default();
        let identity = |mtime_ns: i64| FileIdentity {
            mtime_ns,
            ..sample_state().identity
        };
        // mtimes 0..20 in the order 7i mod 20: the newest, 19 down to 12, are
        // files 3m mod 20 (7 × 3 = 21).
        for i in 0..20i64 {
            last.offer(format!("/f{i}").as_bytes(), &identity(i * 7 % 20));
        }
        last.offer(b"/tied", &identity(12));
        let names: Vec<String> = last
            .paths()
            .map(|path| path.display().to_string())
            .collect();
        assert_eq!(
            names,
            ["/f17", "/f14", "/f11", "/f8", "/f5", "/f2", "/f19", "/f16"]
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.jsonl");
        fs::write(&path, b"{}\n").expect("write");
        let recorded = |path: &Path| {
            let mut last = WrittenLast::default();
            let stat = rustix::fs::stat(path).expect("stat");
            last.offer(path.as_os_str().as_bytes(), &FileIdentity::of_stat(&stat));
            last
        };
        let before = recorded(&path);
        assert!(!before.any_changed());
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"{}\n"))
            .expect("append");
        assert!(before.any_changed(), "written since");
        let before = recorded(&path);
        fs::remove_file(&path).expect("delete");
        assert!(before.any_changed(), "deleted since");
    }

    /// Each block of a project's run of entries, walked again from where the
    /// digest saw it begin, is that project's entries, also when the journal
    /// removed, replaced or added entries at the runs' and the blocks' edges;
    /// the runs come sorted by project, a project in two roots as two runs,
    /// each block has the digest of its entries, and the whole digest is
    /// theirs together.
    #[test]
    fn each_block_of_a_project_run_walks_again_as_the_entries_it_began_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let project_of = |path: &[u8]| -> Vec<u8> {
            path.split(|&byte| byte == b'/')
                .nth(3)
                .unwrap_or_default()
                .to_vec()
        };
        let file = |path: &str, offset: u64| -> FileChange {
            let project = String::from_utf8(project_of(path.as_bytes())).expect("utf-8");
            let state = FileState {
                offset,
                project,
                ..sample_state()
            };
            (PathBuf::from(path), Some(state))
        };
        let base = [
            "/r/p/a/1.jsonl",
            "/r/p/a/2.jsonl",
            "/r/p/b/1.jsonl",
            "/r/p/b/2.jsonl",
            "/r/p/b/x/sub.jsonl",
            "/r/p/c/1.jsonl",
            "/r/p/e/1.jsonl",
            "/s/p/a/9.jsonl",
        ];
        // A project of three blocks, after the changes below.
        let big: Vec<String> = (0..70).map(|i| format!("/r/p/big/{i:03}.jsonl")).collect();
        let files = base
            .iter()
            .copied()
            .chain(big.iter().map(String::as_str))
            .filter_map(|path| match file(path, 1) {
                (path, Some(state)) => Some((path, state)),
                (_, None) => None,
            })
            .collect();
        state.save(&Manifest { files }, b"base").expect("save");
        let (saved, _) = load(&state);
        let changes = [
            file("/r/p/a/2.jsonl", 5),
            (PathBuf::from("/r/p/b/1.jsonl"), None),
            (PathBuf::from("/r/p/c/1.jsonl"), None),
            file("/r/p/d/1.jsonl", 3),
            (PathBuf::from("/r/p/e/1.jsonl"), None),
            file("/r/p/e/2.jsonl", 4),
            (PathBuf::from(&big[31]), None),
            file("/r/p/big/031a.jsonl", 6),
            file("/r/p/big/032.jsonl", 7),
            (PathBuf::from(&big[64]), None),
            file("/r/p/big/069a.jsonl", 8),
        ];
        state
            .append(&changes, saved.session_state(), b"one")
            .expect("append");
        let (saved, _) = load(&state);
        let digest = saved.listing_digest();
        let names: Vec<&[u8]> = digest.projects.iter().map(|run| &*run.project).collect();
        assert_eq!(names, [&b"a"[..], b"a", b"b", b"big", b"d", b"e"]);
        let mut walked = Vec::new();
        let mut whole = ListingDigest::default();
        for run in &digest.projects {
            let mut run_digest = ListingDigest::default();
            for (index, block) in run.blocks.iter().enumerate() {
                let mut block_digest = ListingDigest::default();
                for entry in saved.block_entries(block) {
                    assert_eq!(project_of(entry.path), *run.project);
                    block_digest.add(entry.path, &entry.identity);
                    walked.push((entry.path.to_vec(), entry.to_state().offset));
                }
                assert_eq!(block_digest, block.digest);
                let last = index + 1 == run.blocks.len();
                assert!(last || block.len() == ENTRIES_PER_BLOCK);
                run_digest.merge(block_digest);
            }
            assert_eq!(run_digest, run.digest);
            whole.merge(run.digest);
        }
        let blocks: Vec<usize> = digest.projects[3]
            .blocks
            .iter()
            .map(EntriesBlock::len)
            .collect();
        assert_eq!(blocks, [32, 32, 6]);
        walked.sort();
        let all: Vec<(Vec<u8>, u64)> = saved
            .entries()
            .map(|entry| (entry.path.to_vec(), entry.to_state().offset))
            .collect();
        assert_eq!(walked, all);
        assert_eq!(all.len(), 7 + 70);
        assert_eq!(whole, digest.whole);
        assert_eq!(digest.whole.files(), 7 + 70);
    }
}
