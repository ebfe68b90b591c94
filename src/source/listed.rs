//! The transcripts a listing found, kept as its walkers left them, with a digest
//! of them all.
//!
//! An unchanged rerun needs to know only that the listing equals the manifest's
//! files. The digest answers that without putting the walkers' findings into one
//! sorted list, deduplicating it and comparing it file by file with the
//! manifest: on the 2,500-file corpus those three steps took about 0.4 ms, on
//! one thread, after the walk. They are done only when the digests differ.

use std::borrow::Borrow;
use std::os::unix::ffi::OsStrExt;

use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64};

use super::discover::{sort_by_path, TranscriptFile};
use super::identity::FileIdentity;

/// A digest of a set of files, each by path and identity, that does not depend on
/// the order they were added in: walkers can each add what they find, and the
/// manifest what it records, in whatever order they go.
///
/// Each file's hash binds its path to its identity (so two files trading
/// identities change it), and the hashes are summed, with the count beside them.
/// Two different sets have the same digest with odds of about 2^-128.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListingDigest {
    files: u64,
    sum: u128,
}

impl ListingDigest {
    pub fn add(&mut self, path: &[u8], identity: &FileIdentity) {
        self.add_hash(FileHash::of(path, identity));
    }

    /// Adds a file by its hash, taken once for this digest and others.
    pub fn add_hash(&mut self, hash: FileHash) {
        self.files += 1;
        self.sum = self.sum.wrapping_add(hash.0);
    }

    pub fn merge(&mut self, other: ListingDigest) {
        self.files += other.files;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// How many files were added.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// The digest of what was added after `earlier` was taken.
    pub fn since(self, earlier: ListingDigest) -> ListingDigest {
        ListingDigest {
            files: self.files - earlier.files,
            sum: self.sum.wrapping_sub(earlier.sum),
        }
    }
}

/// A file's part of a [`ListingDigest`]: its path and identity, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHash(u128);

impl FileHash {
    pub fn of(path: &[u8], identity: &FileIdentity) -> FileHash {
        FileHash(file_hash(path, identity))
    }

    fn of_file(file: &TranscriptFile) -> FileHash {
        FileHash::of(file.path.as_os_str().as_bytes(), &file.identity)
    }
}

fn file_hash(path: &[u8], identity: &FileIdentity) -> u128 {
    let mut fields = [0u8; 40];
    let values = [
        identity.dev,
        identity.ino,
        identity.size,
        identity.mtime_ns as u64,
        identity.ctime_ns as u64,
    ];
    for (chunk, value) in fields.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    xxh3_128_with_seed(path, xxh3_64(&fields))
}

/// One walker's files, with the project directories it visited, in the order
/// it visited them.
#[derive(Debug)]
pub(super) struct WalkerFiles {
    pub files: Vec<TranscriptFile>,
    /// Each file's hash, as its walker added it to the digest.
    pub hashes: Vec<FileHash>,
    pub visited: Vec<Visited>,
}

/// A project directory as a walker visited it: its index in the walk
/// (increasing along one walker), and how many files it added, with their
/// digest.
#[derive(Debug, Clone, Copy)]
pub(super) struct Visited {
    pub at: usize,
    pub files: usize,
    pub digest: ListingDigest,
}

/// A project's listed files, with their digest: what a run compares with the
/// manifest's files of the same project (see
/// [`ProjectEntries`](super::manifest::ProjectEntries)) to find which
/// projects changed without comparing every file.
#[derive(Debug)]
pub struct ListedProject<'a> {
    pub project: &'a [u8],
    pub digest: ListingDigest,
    /// The files, as runs each sorted by path: one per directory the project
    /// was found in (one per root holding it).
    pub runs: Vec<ListedRun<'a>>,
}

/// The files a walker found in one project directory, in path order, each
/// with its hash.
#[derive(Debug, Clone, Copy)]
pub struct ListedRun<'a> {
    pub files: &'a [TranscriptFile],
    pub hashes: &'a [FileHash],
}

/// The transcripts a listing found: those found before the walk, then each
/// walker's. [`ListedFiles::into_sorted`] makes them one list.
#[derive(Debug, Default)]
pub struct ListedFiles {
    before_walk: Vec<TranscriptFile>,
    /// Each of `before_walk`'s hashes.
    before_walk_hashes: Vec<FileHash>,
    walkers: Vec<WalkerFiles>,
    digest: ListingDigest,
}

impl ListedFiles {
    /// The files found before the walk, each with its hash, and each
    /// walker's; `digest` is of them all.
    pub(super) fn new(
        (before_walk, before_walk_hashes): (Vec<TranscriptFile>, Vec<FileHash>),
        walkers: Vec<WalkerFiles>,
        digest: ListingDigest,
    ) -> Self {
        debug_assert_eq!(before_walk.len(), before_walk_hashes.len());
        debug_assert!(walkers
            .iter()
            .all(|walker| walker.files.len() == walker.hashes.len()));
        ListedFiles {
            before_walk,
            before_walk_hashes,
            walkers,
            digest,
        }
    }

    /// Every file found, the same file reached by two paths included.
    pub fn len(&self) -> usize {
        self.before_walk.len()
            + self
                .walkers
                .iter()
                .map(|walker| walker.files.len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest of every file found, by path and identity.
    pub fn digest(&self) -> ListingDigest {
        self.digest
    }

    /// The files sorted by path, each file once: the same file reached by two
    /// paths (a symlinked config dir) keeps the first path.
    pub fn into_sorted(self) -> Vec<TranscriptFile> {
        let runs = visiting_order(&self.walkers);
        let mut walkers: Vec<_> = self
            .walkers
            .into_iter()
            .map(|walker| walker.files.into_iter())
            .collect();
        let mut files = self.before_walk;
        files.reserve(walkers.iter().map(ExactSizeIterator::len).sum());
        for (walker, count) in runs {
            files.extend(walkers[walker].by_ref().take(count));
        }
        sort_and_deduplicate(&mut files);
        files
    }

    /// [`ListedFiles::into_sorted`], borrowed: to compare the listing with a
    /// manifest, a run only walks it, and moving 10,000 files into a new list
    /// took longer than the walk (0.3 ms, mostly faulting in its pages).
    pub fn sorted(&self) -> Vec<&TranscriptFile> {
        let mut files: Vec<&TranscriptFile> = Vec::with_capacity(self.len());
        files.extend(&self.before_walk);
        let mut taken = vec![0; self.walkers.len()];
        for (walker, count) in visiting_order(&self.walkers) {
            let from = taken[walker];
            taken[walker] += count;
            let found = self.walkers[walker].files.get(from..).unwrap_or_default();
            files.extend(found.iter().take(count));
        }
        sort_and_deduplicate(&mut files);
        files
    }

    /// The files by project, sorted by project name: each walker's directory
    /// visits, and each file found before the walk, which is its own project
    /// (a transcript directly under `projects/`).
    pub fn projects(&self) -> Vec<ListedProject<'_>> {
        let mut runs: Vec<(&[u8], ListingDigest, ListedRun<'_>)> = Vec::new();
        let before_walk = self.before_walk.iter().zip(&self.before_walk_hashes);
        for (file, hash) in before_walk {
            let mut digest = ListingDigest::default();
            digest.add_hash(*hash);
            let run = ListedRun {
                files: std::slice::from_ref(file),
                hashes: std::slice::from_ref(hash),
            };
            runs.push((file.project.as_bytes(), digest, run));
        }
        for walker in &self.walkers {
            let mut from = 0;
            for visit in &walker.visited {
                let within = from..from + visit.files;
                from += visit.files;
                let run = ListedRun {
                    files: walker.files.get(within.clone()).unwrap_or_default(),
                    hashes: walker.hashes.get(within).unwrap_or_default(),
                };
                if let Some(first) = run.files.first() {
                    runs.push((first.project.as_bytes(), visit.digest, run));
                }
            }
        }
        runs.sort_by(|a, b| a.0.cmp(b.0));
        let mut projects: Vec<ListedProject<'_>> = Vec::new();
        for (project, digest, run) in runs {
            match projects.last_mut() {
                Some(last) if last.project == project => {
                    last.digest.merge(digest);
                    last.runs.push(run);
                }
                _ => projects.push(ListedProject {
                    project,
                    digest,
                    runs: vec![run],
                }),
            }
        }
        projects
    }
}

/// Files listed some other way, as one walker's.
impl From<Vec<TranscriptFile>> for ListedFiles {
    fn from(files: Vec<TranscriptFile>) -> Self {
        let hashes: Vec<FileHash> = files.iter().map(FileHash::of_file).collect();
        let mut digest = ListingDigest::default();
        for hash in &hashes {
            digest.add_hash(*hash);
        }
        ListedFiles::new((files, hashes), Vec::new(), digest)
    }
}

/// Which walker's files come next, and how many, in the order of the project
/// directories they came from: each walker's files are in the order it visited
/// its directories.
fn visiting_order(walkers: &[WalkerFiles]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = walkers
        .iter()
        .enumerate()
        .flat_map(|(walker, found)| {
            found
                .visited
                .iter()
                .map(move |visit| (visit.at, walker, visit.files))
        })
        .collect();
    runs.sort_unstable();
    runs.into_iter()
        .map(|(_, walker, count)| (walker, count))
        .collect()
}

/// Sorts `files` by path and keeps the first path of each file (device and
/// inode).
fn sort_and_deduplicate<F: Borrow<TranscriptFile>>(files: &mut Vec<F>) {
    sort_by_path(files);
    let mut seen = FxHashSet::with_capacity_and_hasher(files.len(), Default::default());
    files.retain(|file| {
        let identity = &file.borrow().identity;
        seen.insert((identity.dev, identity.ino))
    });
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;

    fn file(path: &str, ino: u64, size: u64) -> TranscriptFile {
        let identity = FileIdentity {
            dev: 1,
            ino,
            size,
            mtime_ns: 1_700_000_000_000_000_000 + size as i64,
            ctime_ns: 1_700_000_000_000_000_000,
        };
        TranscriptFile {
            path: PathBuf::from(path),
            project: Arc::from("p"),
            size,
            identity,
        }
    }

    fn hashes_of(files: &[&TranscriptFile]) -> Vec<FileHash> {
        files.iter().map(|file| FileHash::of_file(file)).collect()
    }

    fn digest_of(files: &[TranscriptFile]) -> ListingDigest {
        ListedFiles::from(files.to_vec()).digest()
    }

    #[test]
    fn the_digest_is_of_the_set_whatever_the_order() {
        let a = file("/p/a.jsonl", 1, 10);
        let b = file("/p/b.jsonl", 2, 20);
        let c = file("/p/c.jsonl", 3, 30);
        let mut split = ListingDigest::default();
        split.merge(digest_of(&[c.clone(), a.clone()]));
        split.merge(digest_of(std::slice::from_ref(&b)));
        assert_eq!(split, digest_of(&[a, b, c]));
        assert_eq!(split.files(), 3);
    }

    #[test]
    fn any_change_to_a_file_or_the_set_changes_the_digest() {
        let a = file("/p/a.jsonl", 1, 10);
        let b = file("/p/b.jsonl", 2, 20);
        let listed = digest_of(&[a.clone(), b.clone()]);
        let appended = file("/p/b.jsonl", 2, 21);
        assert_ne!(digest_of(&[a.clone(), appended]), listed);
        let renamed = TranscriptFile {
            path: PathBuf::from("/p/c.jsonl"),
            ..b.clone()
        };
        assert_ne!(digest_of(&[a.clone(), renamed]), listed);
        let mut touched = b.clone();
        touched.identity.ctime_ns += 1;
        assert_ne!(digest_of(&[a.clone(), touched]), listed);
        assert_ne!(digest_of(std::slice::from_ref(&a)), listed);
        assert_ne!(digest_of(&[a.clone(), b.clone(), b.clone()]), listed);
        // Two files trading identities (renamed over each other).
        let traded = [
            TranscriptFile {
                identity: b.identity,
                ..a.clone()
            },
            TranscriptFile {
                identity: a.identity,
                ..b.clone()
            },
        ];
        assert_ne!(digest_of(&traded), listed);
    }

    #[test]
    fn sorted_merges_walkers_in_visiting_order_and_keeps_each_file_once() {
        let files: Vec<TranscriptFile> = (0..6)
            .map(|i| file(&format!("/p/{i}/s.jsonl"), i, 10))
            .collect();
        // Walker 0 visited directories 0, 2 and 3 (3 found nothing), walker 1
        // visited 1 and 4; directory 4's file is directory 0's through a link.
        let linked = TranscriptFile {
            path: PathBuf::from("/p/4/s.jsonl"),
            ..files[0].clone()
        };
        let visits = |runs: &[(usize, usize)]| -> Vec<Visited> {
            runs.iter()
                .map(|&(at, files)| Visited {
                    at,
                    files,
                    digest: ListingDigest::default(),
                })
                .collect()
        };
        let walkers = vec![
            WalkerFiles {
                files: vec![files[0].clone(), files[2].clone()],
                hashes: hashes_of(&[&files[0], &files[2]]),
                visited: visits(&[(0, 1), (2, 1), (3, 0)]),
            },
            WalkerFiles {
                files: vec![files[1].clone(), linked.clone()],
                hashes: hashes_of(&[&files[1], &linked]),
                visited: visits(&[(1, 1), (4, 1)]),
            },
        ];
        let listed = ListedFiles::new((Vec::new(), Vec::new()), walkers, ListingDigest::default());
        assert_eq!(listed.len(), 4);
        let borrowed: Vec<TranscriptFile> = listed.sorted().into_iter().cloned().collect();
        assert_eq!(borrowed, files[..3].to_vec());
        assert_eq!(listed.into_sorted(), files[..3].to_vec());
    }

    #[test]
    fn files_listed_some_other_way_are_sorted_and_kept_once_alike() {
        let a = file("/p/a.jsonl", 1, 10);
        let b = file("/p/b.jsonl", 2, 20);
        let b_again = TranscriptFile {
            path: PathBuf::from("/p/c.jsonl"),
            ..b.clone()
        };
        let listed = ListedFiles::from(vec![b_again, b.clone(), a.clone()]);
        let borrowed: Vec<TranscriptFile> = listed.sorted().into_iter().cloned().collect();
        assert_eq!(borrowed, vec![a.clone(), b.clone()]);
        assert_eq!(listed.into_sorted(), vec![a, b]);
    }
}
