//! Which listed files to read, and from where: each paired with its state in
//! the manifest, following renames, and what the manifest holds that is no
//! longer listed. Two ways to the same plan: from the projects whose digests
//! changed ([`plan_changed_projects`], a rerun's usual case), or from the whole
//! listing ([`plan_all`]).

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::source::{
    EntriesBlock, FileHash, FileState, ListedFiles, ListedProject, ListedRun, ListingDigest,
    ManifestDigest, ProjectEntries, SavedManifest, TranscriptFile,
};

/// A file to read, from its state in the manifest if it has one.
pub(super) struct Job<'f> {
    pub file: &'f TranscriptFile,
    pub previous: Option<FileState>,
    /// `previous` is the state of a file gone from another path.
    pub renamed: bool,
}

/// The files to read, and what needs no reading.
pub(super) struct Plan<'f> {
    /// How many files are listed, each counted once.
    pub files: usize,
    pub jobs: Vec<Job<'f>>,
    /// How many files' manifest state still matches them.
    pub unchanged: usize,
    /// Paths in the manifest that are not listed any more.
    pub gone: Vec<PathBuf>,
    /// How many of those were renamed (their state goes on under the new path).
    pub renamed: usize,
    /// How the plan was made: from the changed projects, with how many blocks
    /// of entries compared file by file, or from the whole listing.
    pub made: Made,
}

/// How a [`Plan`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Made {
    FromChangedProjects { blocks_compared: usize },
    FromWholeListing,
}

/// The plan for `listed` against `against`, the saved manifest and its digest
/// (none on a first run, or when the state was discarded): from the changed
/// projects when that can be done, else from the whole listing. Debug builds
/// make both and check that they agree. `started` times the debug events.
pub(super) fn plan<'f>(
    listed: &'f ListedFiles,
    against: Option<(&SavedManifest, &ManifestDigest)>,
    started: Instant,
) -> Plan<'f> {
    let saved = against.map(|(saved, _)| saved);
    if let Some(plan) =
        against.and_then(|(saved, digest)| plan_changed_projects(listed, saved, &digest.projects))
    {
        tracing::debug!(elapsed = ?started.elapsed(), jobs = plan.jobs.len(), made = ?plan.made, "changed projects planned");
        #[cfg(debug_assertions)]
        assert_plans_agree(&plan, &plan_all(&listed.sorted(), saved));
        return plan;
    }
    let sorted = listed.sorted();
    tracing::debug!(elapsed = ?started.elapsed(), "listing sorted");
    let plan = plan_all(&sorted, saved);
    tracing::debug!(elapsed = ?started.elapsed(), jobs = plan.jobs.len(), "planned");
    plan
}

/// [`plan_all`] for a listing whose projects are the manifest's, with the same
/// files at the same paths, some of them written since: the usual rerun, in
/// which the projects whose digests differ from the manifest's are the only
/// ones compared with it, a block of entries at a time, and only the blocks
/// whose digests differ file by file. `None` when that is not so (a file new,
/// gone, renamed or replaced by another at its path, a project new or gone),
/// for [`plan_all`] to follow.
///
/// The work is in proportion to the projects and blocks written to, not to the
/// listing: on 10,000 files, sorting the whole listing and comparing it with
/// the manifest took about 0.6 ms of a rerun that read 1 MB into ten files;
/// comparing the changed projects file by file (one holds 3,988 files),
/// 0.26–0.4 ms; a block at a time, 0.1 ms, half of it grouping the listing by
/// project.
fn plan_changed_projects<'f>(
    listed: &'f ListedFiles,
    saved: &SavedManifest,
    manifest: &[ProjectEntries],
) -> Option<Plan<'f>> {
    let mut jobs: Vec<Job<'f>> = Vec::new();
    let mut blocks_compared = 0;
    let mut saved_projects = manifest.iter().peekable();
    for project in listed.projects() {
        let mut runs: Vec<&ProjectEntries> = Vec::new();
        let mut saved_digest = ListingDigest::default();
        while let Some(run) = saved_projects.next_if(|run| *run.project <= *project.project) {
            if *run.project != *project.project {
                return None; // a project not listed any more
            }
            saved_digest.merge(run.digest);
            runs.push(run);
        }
        if saved_digest == project.digest {
            continue;
        }
        let files = ProjectFiles::of(project);
        let mut compared = 0;
        for block in runs.iter().flat_map(|run| &run.blocks) {
            let listed_block = compared..compared + block.len();
            if listed_block.end > files.len() {
                return None; // a file not listed any more
            }
            compared = listed_block.end;
            if plan_block(&files, listed_block, block, saved, &mut jobs)? {
                blocks_compared += 1;
            }
        }
        if compared != files.len() {
            return None; // a file new since
        }
    }
    if saved_projects.next().is_some() {
        return None;
    }
    jobs.sort_unstable_by(|a, b| {
        a.file
            .path
            .as_os_str()
            .as_bytes()
            .cmp(b.file.path.as_os_str().as_bytes())
    });
    let files = listed.len();
    Some(Plan {
        files,
        unchanged: files - jobs.len(),
        jobs,
        gone: Vec::new(),
        renamed: 0,
        made: Made::FromChangedProjects { blocks_compared },
    })
}

/// A changed project's listed files in path order, each with its hash.
enum ProjectFiles<'f> {
    /// Found in one directory, which a walk lists in path order: the usual
    /// case, compared where the walk left them.
    InOneDirectory(ListedRun<'f>),
    /// Found in several (one per root), sorted together.
    Sorted(Vec<(&'f TranscriptFile, FileHash)>),
}

impl<'f> ProjectFiles<'f> {
    fn of(project: ListedProject<'f>) -> ProjectFiles<'f> {
        if let [run] = project.runs[..] {
            debug_assert!(run.files.is_sorted_by(
                |a, b| a.path.as_os_str().as_bytes() <= b.path.as_os_str().as_bytes()
            ));
            return ProjectFiles::InOneDirectory(run);
        }
        let mut files: Vec<(&TranscriptFile, FileHash)> = project
            .runs
            .iter()
            .flat_map(|run| run.files.iter().zip(run.hashes.iter().copied()))
            .collect();
        files.sort_by(|a, b| {
            a.0.path
                .as_os_str()
                .as_bytes()
                .cmp(b.0.path.as_os_str().as_bytes())
        });
        ProjectFiles::Sorted(files)
    }

    fn len(&self) -> usize {
        match self {
            ProjectFiles::InOneDirectory(run) => run.files.len(),
            ProjectFiles::Sorted(files) => files.len(),
        }
    }

    /// The file `at` in path order, with its hash.
    fn get(&self, at: usize) -> Option<(&'f TranscriptFile, FileHash)> {
        match self {
            ProjectFiles::InOneDirectory(run) => Some((run.files.get(at)?, *run.hashes.get(at)?)),
            ProjectFiles::Sorted(files) => files.get(at).copied(),
        }
    }
}

/// Plans the listed files `at` those positions, which stand where `block`'s
/// entries do: nothing if their digests agree; else each file compared with
/// its entry, `None` if one is not the same file at the same path. Says
/// whether the entries were compared.
fn plan_block<'f>(
    files: &ProjectFiles<'f>,
    at: Range<usize>,
    block: &EntriesBlock,
    saved: &SavedManifest,
    jobs: &mut Vec<Job<'f>>,
) -> Option<bool> {
    let mut digest = ListingDigest::default();
    for index in at.clone() {
        digest.add_hash(files.get(index)?.1);
    }
    if digest == block.digest {
        return Some(false);
    }
    let mut entries = saved.block_entries(block);
    for index in at {
        let (file, _) = files.get(index)?;
        let entry = entries.next()?;
        let same_path = entry.path == file.path.as_os_str().as_bytes();
        if !same_path || !file.identity.same_file(&entry.identity) {
            return None;
        }
        if !file.identity.unchanged_since(&entry.identity) {
            jobs.push(Job {
                file,
                previous: Some(entry.to_state()),
                renamed: false,
            });
        }
    }
    Some(true)
}

/// Checks, in debug builds (the tests), that [`plan_changed_projects`] planned
/// what [`plan_all`] does.
#[cfg(debug_assertions)]
fn assert_plans_agree(in_place: &Plan<'_>, all: &Plan<'_>) {
    let jobs = |plan: &Plan<'_>| -> Vec<(PathBuf, Option<FileState>, bool)> {
        plan.jobs
            .iter()
            .map(|job| (job.file.path.clone(), job.previous.clone(), job.renamed))
            .collect()
    };
    assert_eq!(jobs(in_place), jobs(all));
    assert_eq!(
        (
            in_place.files,
            in_place.unchanged,
            &in_place.gone,
            in_place.renamed
        ),
        (all.files, all.unchanged, &all.gone, all.renamed)
    );
}

/// Pairs each file with its manifest state, following renames: a file at a new
/// path with the device and inode of one gone from the manifest resumes from its
/// state. Walks `files`, sorted by path as [`ListedFiles::sorted`] leaves
/// them, and the manifest side by side, so that only changed files' states are
/// copied.
pub(super) fn plan_all<'f>(
    files: &[&'f TranscriptFile],
    previous: Option<&SavedManifest>,
) -> Plan<'f> {
    debug_assert!(
        previous.is_none()
            || files.is_sorted_by(|a, b| a.path.as_os_str().as_bytes()
                <= b.path.as_os_str().as_bytes())
    );
    let mut saved = previous
        .map(SavedManifest::entries)
        .into_iter()
        .flatten()
        .peekable();
    let mut jobs: Vec<Job> = Vec::new();
    let mut unchanged = 0;
    let mut gone: Vec<(PathBuf, FileState)> = Vec::new();
    for &file in files {
        let path = file.path.as_os_str().as_bytes();
        while let Some(entry) = saved.next_if(|entry| entry.path < path) {
            gone.push((entry.path_buf(), entry.to_state()));
        }
        match saved.next_if(|entry| entry.path == path) {
            Some(entry) if file.identity.unchanged_since(&entry.identity) => unchanged += 1,
            entry => jobs.push(Job {
                file,
                previous: entry.map(|entry| entry.to_state()),
                renamed: false,
            }),
        }
    }
    gone.extend(saved.map(|entry| (entry.path_buf(), entry.to_state())));
    let mut vanished: FxHashMap<(u64, u64), usize> = gone
        .iter()
        .enumerate()
        .map(|(index, (_, state))| ((state.identity.dev, state.identity.ino), index))
        .collect();
    let mut renamed = 0;
    for job in jobs.iter_mut().filter(|job| job.previous.is_none()) {
        let identity = job.file.identity;
        if let Some(index) = vanished.remove(&(identity.dev, identity.ino)) {
            job.previous = Some(gone[index].1.clone());
            job.renamed = true;
            renamed += 1;
        }
    }
    Plan {
        files: files.len(),
        jobs,
        unchanged,
        gone: gone.into_iter().map(|(path, _)| path).collect(),
        renamed,
        made: Made::FromWholeListing,
    }
}

impl Plan<'_> {
    /// Every listed file is the manifest's, unchanged, and every manifest entry
    /// is listed.
    pub(super) fn reads_nothing(&self) -> bool {
        self.jobs.is_empty() && self.gone.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::ingest::{ingest_incremental, IngestOptions, Progress};
    use crate::source::{discover_with, Listing, StateDir, ENTRIES_PER_BLOCK};

    fn listing(root: &Path) -> ListedFiles {
        discover_with(&[root.to_owned()], &Listing::default())
            .expect("listing")
            .files
    }

    fn append(path: &Path, bytes: &[u8]) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(bytes))
            .expect("append");
    }

    /// The plan of the usual rerun, an append to one file of a project of
    /// several blocks, is made from the changed projects and decodes one block;
    /// a new file makes it fall back to the whole listing. (That both plans
    /// agree is checked in every debug run; this checks the fast one is taken.)
    #[test]
    fn an_append_compares_one_block_and_a_new_file_the_whole_listing() {
        let root = tempfile::tempdir().expect("root");
        let state_dir = tempfile::tempdir().expect("state");
        let project = root.path().join("projects").join("-big");
        fs::create_dir_all(&project).expect("mkdir");
        let files = 3 * ENTRIES_PER_BLOCK;
        for i in 0..files {
            append(&project.join(format!("s{i:03}.jsonl")), b"{}\n");
        }
        let state = StateDir::open(state_dir.path()).expect("state dir");
        let scan = || {
            let options = IngestOptions::default();
            ingest_incremental(
                &state,
                || Ok(listing(root.path())),
                &options,
                &Progress::default(),
            )
            .expect("scan")
        };
        scan();
        let planned = |listed: &ListedFiles| -> (Made, Vec<PathBuf>) {
            let (saved, _) = state.load_manifest().expect("load").expect("a manifest");
            let digest = saved.listing_digest();
            let plan = plan(listed, Some((&saved, &digest)), Instant::now());
            let jobs = plan.jobs.iter().map(|job| job.file.path.clone()).collect();
            (plan.made, jobs)
        };

        let written = project.join(format!("s{:03}.jsonl", ENTRIES_PER_BLOCK + 1));
        append(&written, b"{}\n");
        let (made, jobs) = planned(&listing(root.path()));
        assert_eq!(made, Made::FromChangedProjects { blocks_compared: 1 });
        assert_eq!(jobs, [written]);

        scan();
        let new = project.join("s050a.jsonl");
        append(&new, b"{}\n");
        let (made, jobs) = planned(&listing(root.path()));
        assert_eq!(made, Made::FromWholeListing);
        assert_eq!(jobs, [new]);
    }
}
