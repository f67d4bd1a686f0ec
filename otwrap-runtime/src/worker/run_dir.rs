//! The run directory of one batch, on a filesystem the driver and the
//! compute nodes share, and every file in it:
//!
//! ```text
//! <run_dir>/<model>-<hash>/        0700; <hash> identifies (model, inputs)
//!   inputs.bin                     every input of the batch, written once
//!   submission-<s>.tasks           the points of each array task of submission s
//!   submission-<s>.sh              the job script of submission s
//!   jobs                           one line per sbatch: submission, job id, tasks, attempt
//!   results/s<s>-t<k>-r<r>.log     append-only records of array task k (SLURM restart r)
//!   logs/<job>_<task>.out|.err     the tasks' output (unless `log_dir` moves them)
//!   driver.lock                    held by the driver working on the run
//!   driver.log                     one line per driver session (calls made, outcome)
//! ```
//!
//! The number of files grows with array tasks, never with points. Result
//! records are framed and checksummed; each is written with one `write`
//! call on a file opened for appending, so a task killed mid-write leaves at
//! worst a torn last record, which readers detect and ignore.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::core::Failed;

/// The version of the run directory's formats; a task refuses a run dir of
/// another version.
pub(crate) const FORMAT: u32 = 1;
const INPUTS_MAGIC: &[u8; 8] = b"OTWRAPIN";
/// `count u64 | table offset u64 | format u32 | magic`.
const FOOTER_LEN: u64 = 8 + 8 + 4 + 8;
/// The largest record accepted (a larger length is corrupt data).
const MAX_RECORD: usize = crate::worker::protocol::MAX_FRAME;
/// `payload length u32 | xxh3-64 of the payload u64`.
const RECORD_HEADER: usize = 12;

pub(crate) const INPUTS: &str = "inputs.bin";
pub(crate) const JOBS: &str = "jobs";
pub(crate) const RESULTS: &str = "results";
pub(crate) const LOGS: &str = "logs";
const LOCK: &str = "driver.lock";
const DRIVER_LOG: &str = "driver.log";

/// The tasks file of submission `seq`.
pub(crate) fn tasks_file(run: &Path, seq: u32) -> PathBuf {
    run.join(format!("submission-{seq}.tasks"))
}

/// The job script of submission `seq`.
pub(crate) fn script_file(run: &Path, seq: u32) -> PathBuf {
    run.join(format!("submission-{seq}.sh"))
}

/// The result log of array task `task` of submission `seq`, in its
/// `restart`-th run (SLURM may requeue a task).
pub(crate) fn result_file(run: &Path, seq: u32, task: u32, restart: u32) -> PathBuf {
    run.join(RESULTS)
        .join(format!("s{seq}-t{task}-r{restart}.log"))
}

/// `(submission, task, restart)` of a result log's file name.
pub(crate) fn parse_result_name(name: &str) -> Option<(u32, u32, u32)> {
    let rest = name.strip_prefix('s')?.strip_suffix(".log")?;
    let (seq, rest) = rest.split_once("-t")?;
    let (task, restart) = rest.split_once("-r")?;
    Some((seq.parse().ok()?, task.parse().ok()?, restart.parse().ok()?))
}

/// Creates a directory (and its missing parents) readable by its owner
/// only; an existing one that another user owns, or a symlink of another
/// user's on the way, is refused (see `crate::secure_fs`).
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use crate::secure_fs::Refused;
    crate::secure_fs::create_private_dir(path, 1).map_err(|refused| match refused {
        Refused::Io { source, .. } => source,
        other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees a partial file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------- inputs

/// Encodes every input of a batch once: hashes them (with the model id and
/// `salt`) to name the run, and, when `out` is given, writes them as an
/// inputs file there.
///
/// The file is the encoded inputs one after the other, then a table of
/// `count + 1` offsets and a footer, so that a task reads only its points.
pub(crate) fn encode_inputs<T: Serialize>(
    model_id: &str,
    salt: &[u8],
    inputs: &[T],
    out: Option<&Path>,
) -> Result<u128, String> {
    let mut hasher = Xxh3::new();
    hasher.update(&FORMAT.to_le_bytes());
    hasher.update(&(model_id.len() as u64).to_le_bytes());
    hasher.update(model_id.as_bytes());
    hasher.update(&(salt.len() as u64).to_le_bytes());
    hasher.update(salt);
    hasher.update(&(inputs.len() as u64).to_le_bytes());
    let mut file = match out {
        Some(path) => {
            Some(BufWriter::new(File::create(path).map_err(|e| {
                format!("cannot create {}: {e}", path.display())
            })?))
        }
        None => None,
    };
    let mut offsets: Vec<u64> =
        Vec::with_capacity(if out.is_some() { inputs.len() + 1 } else { 0 });
    let mut position = 0u64;
    let mut buf = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        buf.clear();
        crate::codec::encode_into(input, &mut buf)
            .map_err(|e| format!("cannot encode the input of point {index}: {e}"))?;
        hasher.update(&(buf.len() as u64).to_le_bytes());
        hasher.update(&buf);
        if let Some(file) = file.as_mut() {
            offsets.push(position);
            file.write_all(&buf)
                .map_err(|e| format!("cannot write the inputs file: {e}"))?;
            position += buf.len() as u64;
        }
    }
    if let (Some(mut file), Some(path)) = (file, out) {
        offsets.push(position);
        let mut write = || -> io::Result<()> {
            for offset in &offsets {
                file.write_all(&offset.to_le_bytes())?;
            }
            file.write_all(&(inputs.len() as u64).to_le_bytes())?;
            file.write_all(&position.to_le_bytes())?;
            file.write_all(&FORMAT.to_le_bytes())?;
            file.write_all(INPUTS_MAGIC)?;
            file.flush()?;
            file.get_ref().sync_all()
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(hasher.digest128())
}

/// An inputs file opened for reading single points.
pub(crate) struct InputsFile {
    file: File,
    count: u64,
    table: u64,
}

impl InputsFile {
    pub(crate) fn open(path: &Path) -> Result<InputsFile, String> {
        let mut file =
            File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let damaged = |what: &str| format!("{} is damaged ({what})", path.display());
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if len < FOOTER_LEN {
            return Err(damaged("too short"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::Start(len - FOOTER_LEN))
            .and_then(|_| file.read_exact(&mut footer))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (count, rest) = footer.split_at(8);
        let (table, rest) = rest.split_at(8);
        let (format, magic) = rest.split_at(4);
        if magic != INPUTS_MAGIC {
            return Err(damaged("no otwrap inputs footer"));
        }
        let format = u32::from_le_bytes(format.try_into().unwrap_or_default());
        if format != FORMAT {
            return Err(format!(
                "{} was written in run format {format}, this program reads format {FORMAT}: \
                 the driver and the worker binary come from different otwrap versions",
                path.display()
            ));
        }
        let count = u64::from_le_bytes(count.try_into().unwrap_or_default());
        let table = u64::from_le_bytes(table.try_into().unwrap_or_default());
        let expected = count
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(table))
            .and_then(|n| n.checked_add(FOOTER_LEN));
        if expected != Some(len) {
            return Err(damaged("its size does not match its table"));
        }
        Ok(InputsFile { file, count, table })
    }

    /// The number of points in the file.
    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    /// The encoded input of point `index`.
    pub(crate) fn get(&mut self, index: u64) -> Result<Vec<u8>, String> {
        if index >= self.count {
            return Err(format!(
                "point {index} is not in the inputs file ({} points)",
                self.count
            ));
        }
        let mut pair = [0u8; 16];
        self.file
            .seek(SeekFrom::Start(self.table + 8 * index))
            .and_then(|_| self.file.read_exact(&mut pair))
            .map_err(|e| format!("cannot read the offsets of point {index}: {e}"))?;
        let start = u64::from_le_bytes(pair[..8].try_into().unwrap_or_default());
        let end = u64::from_le_bytes(pair[8..].try_into().unwrap_or_default());
        if start > end || end > self.table || end - start > MAX_RECORD as u64 {
            return Err(format!("the offsets of point {index} are damaged"));
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| format!("cannot read the input of point {index}: {e}"))?;
        Ok(bytes)
    }
}

// ---------------------------------------------------------------- tasks

/// The points of each array task of one submission, as runs of consecutive
/// indices (a contiguous slice is one run, whatever its length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TasksFile {
    format: u32,
    tasks: Vec<Vec<(u64, u64)>>,
}

fn to_runs(points: &[usize]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &p in points {
        let p = p as u64;
        match runs.last_mut() {
            Some((start, len)) if *start + *len == p => *len += 1,
            _ => runs.push((p, 1)),
        }
    }
    runs
}

/// Writes the tasks file of a submission.
pub(crate) fn write_tasks(path: &Path, tasks: &[Vec<usize>]) -> Result<(), String> {
    let file = TasksFile {
        format: FORMAT,
        tasks: tasks.iter().map(|t| to_runs(t)).collect(),
    };
    let bytes = crate::codec::encode(&file)?;
    write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_tasks_file(path: &Path) -> Result<TasksFile, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: TasksFile =
        crate::codec::decode(&bytes).map_err(|e| format!("{} is damaged: {e}", path.display()))?;
    if file.format != FORMAT {
        return Err(format!(
            "{} has run format {}, this program reads {FORMAT}",
            path.display(),
            file.format
        ));
    }
    Ok(file)
}

/// The points of `runs`, which must all be below `points` (the batch's
/// size): a damaged run of 2^64 points is an error, not an allocation.
fn from_runs(path: &Path, runs: &[(u64, u64)], points: u64) -> Result<Vec<u64>, String> {
    let mut total = 0u64;
    for &(start, len) in runs {
        total = total.saturating_add(len);
        if start.checked_add(len).is_none_or(|end| end > points) || total > points {
            return Err(format!(
                "{} is damaged: it lists points beyond the {points} of the batch",
                path.display()
            ));
        }
    }
    Ok(runs
        .iter()
        .flat_map(|&(start, len)| start..start + len)
        .collect())
}

/// The points of array task `task` in a tasks file, in evaluation order;
/// every one below `points`.
pub(crate) fn read_task(path: &Path, task: u32, points: u64) -> Result<Vec<u64>, String> {
    let file = read_tasks_file(path)?;
    let runs = file.tasks.get(task as usize).ok_or_else(|| {
        format!(
            "{} has {} tasks, not task {task}",
            path.display(),
            file.tasks.len()
        )
    })?;
    from_runs(path, runs, points)
}

/// The points of every array task in a tasks file; every one below `points`.
pub(crate) fn read_all_tasks(path: &Path, points: u64) -> Result<Vec<Vec<u64>>, String> {
    read_tasks_file(path)?
        .tasks
        .iter()
        .map(|runs| from_runs(path, runs, points))
        .collect()
}

// ---------------------------------------------------------------- jobs

/// One line of the `jobs` file: a submitted array job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobLine {
    pub(crate) seq: u32,
    pub(crate) job_id: String,
    pub(crate) tasks: u32,
    pub(crate) attempt: u32,
}

/// Appends a submitted job to the `jobs` file.
pub(crate) fn append_job(run: &Path, job: &JobLine) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join(JOBS))?;
    file.write_all(
        format!(
            "submission={} job={} tasks={} attempt={}\n",
            job.seq, job.job_id, job.tasks, job.attempt
        )
        .as_bytes(),
    )
}

/// Every job of the `jobs` file (a damaged line is skipped).
pub(crate) fn read_jobs(run: &Path) -> Vec<JobLine> {
    let Ok(text) = fs::read_to_string(run.join(JOBS)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut seq = None;
            let mut job_id = None;
            let mut tasks = None;
            let mut attempt = None;
            for field in line.split_whitespace() {
                match field.split_once('=')? {
                    ("submission", v) => seq = v.parse().ok(),
                    ("job", v) if v.chars().all(|c| c.is_ascii_digit()) => {
                        job_id = Some(v.to_string())
                    }
                    ("tasks", v) => tasks = v.parse().ok(),
                    ("attempt", v) => attempt = v.parse().ok(),
                    _ => {}
                }
            }
            Some(JobLine {
                seq: seq?,
                job_id: job_id?,
                tasks: tasks?,
                attempt: attempt.unwrap_or(0),
            })
        })
        .collect()
}

/// The next free submission number (one past every tasks file present).
pub(crate) fn next_submission(run: &Path) -> u32 {
    fs::read_dir(run)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name();
                    let name = name.to_str()?;
                    name.strip_prefix("submission-")?
                        .strip_suffix(".tasks")?
                        .parse::<u32>()
                        .ok()
                })
                .map(|s| s + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Appends one line to `driver.log` (best effort: it is for people).
pub(crate) fn log_driver(run: &Path, line: &str) {
    let result = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join(DRIVER_LOG))
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = result {
        tracing::warn!(run = %run.display(), "cannot write driver.log: {e}");
    }
}

// ---------------------------------------------------------------- lock

/// The exclusive lock of the driver working on a run (released by the
/// kernel when the driver dies, however it dies).
pub(crate) struct DriverLock {
    _file: File,
}

impl DriverLock {
    /// Takes the lock, or says which process holds it.
    pub(crate) fn take(run: &Path) -> Result<DriverLock, String> {
        let path = run.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if let Err(refused) = file.try_lock() {
            if let std::fs::TryLockError::Error(e) = refused {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(format!(
                "another driver ({}) is already running this batch in {}; wait for it or stop it",
                match holder.trim() {
                    "" => "unknown process".to_string(),
                    h => h.to_string(),
                },
                run.display()
            ));
        }
        let _ = file.set_len(0).and_then(|()| {
            file.write_all(
                format!("pid {} on {}", std::process::id(), crate::host::hostname()).as_bytes(),
            )
        });
        Ok(DriverLock { _file: file })
    }
}

// ---------------------------------------------------------------- records

/// One record of an array task's result log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum TaskRecord {
    /// The task started.
    Start {
        host: String,
        pid: u32,
        /// `JOB_TASK`, as SLURM names it.
        slurm_id: String,
    },
    /// One point finished.
    Point {
        index: u64,
        outcome: Result<Vec<u8>, Failed>,
    },
    /// The task ended by itself: every point of its list has a record, or
    /// it was asked to stop (`stopped`).
    End { evaluated: u64, stopped: bool },
}

/// Frames a record: `len u32 | xxh3-64 u64 | payload`.
pub(crate) fn frame_record(record: &TaskRecord) -> Result<Vec<u8>, String> {
    let payload = crate::codec::encode(record)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_RECORD)
        .ok_or_else(|| format!("a record of {} bytes is too large", payload.len()))?;
    let mut frame = Vec::with_capacity(RECORD_HEADER + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// What a buffer of result-log bytes holds.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) records: Vec<TaskRecord>,
    /// Bytes of whole records consumed.
    pub(crate) consumed: usize,
    /// Set when a whole record fails its checksum or does not decode: the
    /// rest of the file cannot be trusted.
    pub(crate) corrupt: Option<String>,
}

/// Parses whole records; a torn last record is left unconsumed.
pub(crate) fn parse_records(buf: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut at = 0;
    while buf.len() - at >= RECORD_HEADER {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len > MAX_RECORD {
            parsed.corrupt = Some(format!("a record announces {len} bytes"));
            break;
        }
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&buf[at + 4..at + RECORD_HEADER]);
        let start = at + RECORD_HEADER;
        let Some(payload) = buf.get(start..start + len) else {
            break;
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != u64::from_le_bytes(sum) {
            parsed.corrupt = Some(format!("the record at byte {at} fails its checksum"));
            break;
        }
        match crate::codec::decode::<TaskRecord>(payload) {
            Ok(record) => parsed.records.push(record),
            Err(e) => {
                parsed.corrupt = Some(format!("the record at byte {at} does not decode: {e}"));
                break;
            }
        }
        at = start + len;
        parsed.consumed = at;
    }
    parsed
}

/// Reads a result log incrementally: each call returns the records
/// appended since the last one. The file is reopened every time (on NFS,
/// opening is what makes other hosts' writes visible).
#[derive(Debug)]
pub(crate) struct RecordReader {
    pub(crate) path: PathBuf,
    offset: u64,
    seen_len: u64,
    /// Set once the file turned out damaged; it is not read further.
    pub(crate) corrupt: Option<String>,
}

impl RecordReader {
    pub(crate) fn new(path: PathBuf) -> RecordReader {
        RecordReader {
            path,
            offset: 0,
            seen_len: 0,
            corrupt: None,
        }
    }

    /// The records appended since the last call.
    pub(crate) fn read_new(&mut self) -> Vec<TaskRecord> {
        if self.corrupt.is_some() {
            return Vec::new();
        }
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == self.seen_len {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.read_to_end(&mut buf))
            .is_err()
        {
            return Vec::new();
        }
        self.seen_len = self.offset + buf.len() as u64;
        let parsed = parse_records(&buf);
        self.offset += parsed.consumed as u64;
        if let Some(why) = parsed.corrupt {
            tracing::warn!(file = %self.path.display(), "result log damaged: {why}; its later records are ignored");
            self.corrupt = Some(why);
        }
        parsed.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PointFailure;

    #[test]
    fn inputs_round_trip_and_hash_identifies_the_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(INPUTS);
        let inputs: Vec<(f64, String)> = (0..50).map(|i| (i as f64, "x".repeat(i))).collect();
        let h1 = encode_inputs("m::f", b"", &inputs, Some(&path)).expect("write");
        let h2 = encode_inputs("m::f", b"", &inputs, None).expect("hash");
        assert_eq!(h1, h2);
        assert_ne!(h1, encode_inputs("m::g", b"", &inputs, None).expect("hash"));
        assert_ne!(
            h1,
            encode_inputs("m::f", b"v2", &inputs, None).expect("hash")
        );
        assert_ne!(
            h1,
            encode_inputs("m::f", b"", &inputs[1..], None).expect("hash")
        );
        let mut file = InputsFile::open(&path).expect("open");
        assert_eq!(file.len(), 50);
        for i in [0u64, 7, 49] {
            let bytes = file.get(i).expect("get");
            let back: (f64, String) = crate::codec::decode(&bytes).expect("decode");
            assert_eq!(back, inputs[i as usize]);
        }
        assert!(file.get(50).is_err());
        // A truncated file is refused, not misread.
        let bytes = fs::read(&path).expect("read");
        fs::write(&path, &bytes[..bytes.len() - 3]).expect("write");
        assert!(InputsFile::open(&path).is_err());
    }

    #[test]
    fn tasks_are_stored_as_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("submission-0.tasks");
        let tasks = vec![(0..1000).collect::<Vec<_>>(), vec![3, 4, 9, 1000, 1001]];
        write_tasks(&path, &tasks).expect("write");
        assert!(fs::metadata(&path).expect("meta").len() < 64);
        assert_eq!(
            read_task(&path, 0, 1002).expect("task 0"),
            (0..1000).collect::<Vec<u64>>()
        );
        assert_eq!(
            read_task(&path, 1, 1002).expect("task 1"),
            vec![3, 4, 9, 1000, 1001]
        );
        assert!(read_task(&path, 2, 1002).is_err());
        // Points beyond the batch: damaged, refused before any allocation.
        assert!(read_task(&path, 1, 1001).is_err());
        let huge = TasksFile {
            format: FORMAT,
            tasks: vec![vec![(0, u64::MAX)]],
        };
        fs::write(&path, crate::codec::encode(&huge).expect("encode")).expect("write");
        assert!(read_task(&path, 0, 10).is_err());
        assert!(read_all_tasks(&path, 10).is_err());
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_a_damaged_one_stops_reading() {
        let records = vec![
            TaskRecord::Start {
                host: "n1".into(),
                pid: 7,
                slurm_id: "12_3".into(),
            },
            TaskRecord::Point {
                index: 4,
                outcome: Ok(vec![1, 2, 3]),
            },
            TaskRecord::Point {
                index: 5,
                outcome: Err(Failed::from(PointFailure::Model {
                    message: "no".into(),
                })),
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            bytes.extend(frame_record(r).expect("frame"));
        }
        let whole = bytes.len();
        let last = frame_record(&TaskRecord::End {
            evaluated: 2,
            stopped: false,
        })
        .expect("frame");
        for cut in 1..last.len() {
            let mut torn = bytes.clone();
            torn.extend_from_slice(&last[..cut]);
            let parsed = parse_records(&torn);
            assert_eq!(parsed.records, records);
            assert_eq!(parsed.consumed, whole);
            assert!(parsed.corrupt.is_none());
        }
        let mut flipped = bytes.clone();
        flipped[whole - 2] ^= 0xff;
        let parsed = parse_records(&flipped);
        assert_eq!(parsed.records.len(), 2);
        assert!(parsed.corrupt.is_some());

        // Incremental reads through the file.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s0-t0-r0.log");
        let mut reader = RecordReader::new(path.clone());
        assert!(reader.read_new().is_empty());
        fs::write(&path, &bytes[..whole - 1]).expect("write");
        assert_eq!(reader.read_new().len(), 2);
        fs::write(&path, &bytes).expect("write");
        assert_eq!(reader.read_new(), records[2..].to_vec());
        assert!(reader.read_new().is_empty());
    }

    #[test]
    fn names_and_job_lines_parse_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path();
        assert_eq!(parse_result_name("s3-t17-r1.log"), Some((3, 17, 1)));
        assert_eq!(parse_result_name("s3-t17.log"), None);
        let name = result_file(run, 2, 5, 0);
        let name = name.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(parse_result_name(name), Some((2, 5, 0)));
        let job = JobLine {
            seq: 1,
            job_id: "4242".into(),
            tasks: 12,
            attempt: 1,
        };
        append_job(run, &job).expect("append");
        fs::OpenOptions::new()
            .append(true)
            .open(run.join(JOBS))
            .and_then(|mut f| f.write_all(b"garbage line\n"))
            .expect("append");
        assert_eq!(read_jobs(run), vec![job]);
        write_tasks(&tasks_file(run, 4), &[vec![1]]).expect("tasks");
        assert_eq!(next_submission(run), 5);
    }

    #[test]
    fn the_driver_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = DriverLock::take(dir.path()).expect("first");
        let e = DriverLock::take(dir.path()).err().expect("second refused");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(lock);
        DriverLock::take(dir.path()).expect("free again");
    }
}
