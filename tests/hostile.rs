//! Hostile and malformed input: the worker protocol, the SLURM result
//! records, the cache encoding, and the CSV, template and output-file
//! parsers never panic, turn damage into errors naming the file and line,
//! and never allocate much more than the bytes they were given.
//!
//! Random cases are drawn from a fixed seed (`OTWRAP_TEST_HOSTILE_SEED` picks
//! another, `OTWRAP_TEST_HOSTILE_CASES` sets how many), so a failure reproduces.
//! The fuzz targets in `fuzz/` (scripts/fuzz.sh) explore the same decoders
//! for longer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;

use otwrap_runtime::coupling::{CouplingError, ResultFile, Skip, Template};
use otwrap_runtime::fuzzing;
use otwrap_runtime::sample::{CsvOptions, Sample, SampleError};
use otwrap_runtime::worker::protocol::{
    decode_frame, read_frame, read_greeting, write_frame, FrameError, FromWorker, ModelRef,
    ToWorker, MAGIC, MAX_FRAME,
};
use otwrap_runtime::{Failed, PointFailure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------ allocation

/// Counts the bytes allocated by the current thread, so that tests running
/// side by side do not see each other's allocations.
struct CountingAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // `try_with`: the thread's slots may already be gone while it exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counters are plain thread-local cells that never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_dealloc(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result and the most memory this thread held
/// at once during it, beyond what it held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get).saturating_sub(base);
    (out, peak)
}

const MIB: usize = 1 << 20;
/// What decoding a small hostile input may cost at most.
const SMALL_BUDGET: usize = 4 * MIB;

/// `len` as a frame header, followed by `payload`.
fn frame_with_len(len: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// A bincode string length prefix announcing `len` bytes (varint, u32 form).
fn string_len_prefix(len: u32) -> Vec<u8> {
    let mut bytes = vec![0xfc];
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes
}

#[test]
fn a_frame_announcing_200_mib_with_10_bytes_behind_it_allocates_little() {
    let bytes = frame_with_len(200 << 20, &[7u8; 10]);
    let (result, peak) = peak_during(|| read_frame::<FromWorker>(&mut &bytes[..]));
    assert!(
        matches!(
            result,
            Err(FrameError::Truncated {
                got: 10,
                expected: 209_715_200
            })
        ),
        "{result:?}"
    );
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");

    // Same through the in-buffer decoder: it waits for more bytes and
    // allocates nothing meanwhile.
    let (result, peak) = peak_during(|| decode_frame::<FromWorker>(&bytes));
    assert!(matches!(result, Ok(None)), "{result:?}");
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
}

#[test]
fn a_whole_frame_whose_string_announces_200_mib_allocates_little() {
    // FromWorker::Hello { protocol: 1, version: <200 MiB>, .. } in 9 bytes.
    let mut payload = vec![0u8, 1];
    payload.extend_from_slice(&string_len_prefix(200 << 20));
    payload.extend_from_slice(b"abc");
    let bytes = frame_with_len(payload.len() as u32, &payload);
    let (result, peak) = peak_during(|| read_frame::<FromWorker>(&mut &bytes[..]));
    assert!(matches!(result, Err(FrameError::Decode(_))), "{result:?}");
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
    let (result, peak) = peak_during(|| decode_frame::<FromWorker>(&bytes));
    assert!(matches!(result, Err(FrameError::Decode(_))), "{result:?}");
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");

    // ToWorker::Evaluate { index: 0, input: <1 GiB - 1> }: a Vec<u8> too.
    let mut payload = vec![1u8, 0];
    payload.extend_from_slice(&string_len_prefix((1 << 30) - 1));
    payload.extend_from_slice(&[0; 10]);
    let bytes = frame_with_len(payload.len() as u32, &payload);
    let (result, peak) = peak_during(|| read_frame::<ToWorker>(&mut &bytes[..]));
    assert!(matches!(result, Err(FrameError::Decode(_))), "{result:?}");
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
}

#[test]
fn nested_lengths_in_a_failure_allocate_little() {
    // FromWorker::Result { index: 0, outcome: Err(Failed { failure: <variant 0>,
    // .. }) } where the first string of the failure announces 200 MiB.
    let mut payload = vec![3u8, 0, 1, 0];
    payload.extend_from_slice(&string_len_prefix(200 << 20));
    payload.extend_from_slice(b"x");
    let (result, peak) = peak_during(|| otwrap_runtime::codec::decode::<FromWorker>(&payload));
    assert!(result.is_err(), "{result:?}");
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
    // The same bytes as a SLURM result record and as a cached value.
    let (_, peak) = peak_during(|| fuzzing::task_record_payload(&payload));
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
    let (result, peak) =
        peak_during(|| otwrap_runtime::codec::decode::<(u64, String)>(&payload[1..]));
    assert!(result.is_err());
    assert!(peak < SMALL_BUDGET, "peak allocation {peak} bytes");
}

#[test]
fn a_large_frame_costs_about_its_size() {
    // A legitimate 2 MiB input: the buffer grows with the bytes, to at most
    // about twice the frame (vector doubling) plus the decoded copy.
    let msg = ToWorker::Evaluate {
        index: 1,
        input: vec![0xab; 2 * MIB],
    };
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &msg).expect("encode");
    let (result, peak) = peak_during(|| read_frame::<ToWorker>(&mut &bytes[..]));
    assert_eq!(result.expect("decodes"), Some(msg));
    assert!(peak < 4 * 2 * MIB, "peak allocation {peak} bytes");
}

#[test]
fn a_stream_that_trickles_in_grows_with_what_arrived() {
    /// Gives at most 100 bytes per read, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(100).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let bytes = frame_with_len(MAX_FRAME as u32, &vec![1u8; 300_000]);
    let (result, peak) = peak_during(|| read_frame::<ToWorker>(&mut Trickle(&bytes)));
    assert!(
        matches!(result, Err(FrameError::Truncated { got: 300_000, .. })),
        "{result:?}"
    );
    assert!(peak < 2 * MIB, "peak allocation {peak} bytes");
}

// ------------------------------------------------------- protocol frames

fn rng() -> StdRng {
    let seed = std::env::var("OTWRAP_TEST_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x07_0e7a_u64);
    StdRng::seed_from_u64(seed)
}

fn cases() -> usize {
    std::env::var("OTWRAP_TEST_HOSTILE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

fn random_string(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..24);
    (0..len).map(|_| rng.gen::<char>()).collect()
}

fn random_message(rng: &mut StdRng) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let to_worker = rng.gen_bool(0.5);
    if to_worker {
        let msg = match rng.gen_range(0..3) {
            0 => ToWorker::Init {
                protocol: rng.gen(),
                model: if rng.gen_bool(0.5) {
                    ModelRef::Compiled(random_string(rng))
                } else {
                    ModelRef::Described((0..rng.gen_range(0..64)).map(|_| rng.gen()).collect())
                },
            },
            1 => ToWorker::Evaluate {
                index: rng.gen(),
                input: (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
            },
            _ => ToWorker::Shutdown,
        };
        write_frame(&mut bytes, &msg).expect("encode");
    } else {
        let msg = match rng.gen_range(0..4) {
            0 => FromWorker::Hello {
                protocol: rng.gen(),
                version: random_string(rng),
                pid: rng.gen(),
                host: random_string(rng),
            },
            1 => FromWorker::Ready,
            2 => FromWorker::UnknownModel {
                model: random_string(rng),
                known: (0..rng.gen_range(0..4))
                    .map(|_| random_string(rng))
                    .collect(),
            },
            _ => FromWorker::Result {
                index: rng.gen(),
                outcome: if rng.gen_bool(0.5) {
                    Ok((0..rng.gen_range(0..32)).map(|_| rng.gen()).collect())
                } else {
                    Err(Failed::from(PointFailure::Panic {
                        message: random_string(rng),
                    }))
                },
            },
        };
        write_frame(&mut bytes, &msg).expect("encode");
    }
    (bytes, to_worker)
}

/// Decodes `bytes` every way a driver or worker can; returns whether the
/// first frame decoded as a `ToWorker` and as a `FromWorker`.
fn decode_every_way(bytes: &[u8]) -> (bool, bool) {
    let to = read_frame::<ToWorker>(&mut &bytes[..]);
    let from = read_frame::<FromWorker>(&mut &bytes[..]);
    // The in-buffer decoder agrees with the stream reader on whole frames.
    match (&from, decode_frame::<FromWorker>(bytes)) {
        (Ok(Some(a)), Ok(Some((b, _)))) => assert_eq!(*a, b),
        (Ok(Some(_)), other) => panic!("stream decoded, buffer said {other:?}"),
        (_, Ok(Some(_))) => panic!("buffer decoded, stream said {from:?}"),
        _ => {}
    }
    let _ = read_greeting(&mut &bytes[..]);
    fuzzing::protocol_stream(bytes);
    (matches!(to, Ok(Some(_))), matches!(from, Ok(Some(_))))
}

#[test]
fn random_bytes_are_errors_never_panics() {
    let mut rng = rng();
    for _ in 0..cases() {
        let len = rng.gen_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Half the time, a plausible length so the payload decoder runs.
        if rng.gen_bool(0.5) && bytes.len() >= 4 {
            let payload = (bytes.len() - 4) as u32;
            bytes[..4].copy_from_slice(&payload.to_le_bytes());
        }
        let (peak_ok, peak) = peak_during(|| decode_every_way(&bytes));
        let _ = peak_ok;
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}

#[test]
fn truncated_frames_are_errors() {
    let mut rng = rng();
    for _ in 0..cases() / 4 {
        let (bytes, to_worker) = random_message(&mut rng);
        let (to, from) = decode_every_way(&bytes);
        assert!(if to_worker { to } else { from }, "a valid frame decodes");
        for cut in 1..bytes.len() {
            let cut_bytes = &bytes[..cut];
            let to = read_frame::<ToWorker>(&mut &cut_bytes[..]);
            let from = read_frame::<FromWorker>(&mut &cut_bytes[..]);
            assert!(
                matches!(to, Err(FrameError::Truncated { .. })),
                "cut at {cut} of {bytes:?}: {to:?}"
            );
            assert!(
                matches!(from, Err(FrameError::Truncated { .. })),
                "cut at {cut} of {bytes:?}: {from:?}"
            );
            assert!(matches!(decode_frame::<FromWorker>(cut_bytes), Ok(None)));
        }
    }
}

#[test]
fn bit_flipped_frames_never_panic_nor_allocate_much() {
    let mut rng = rng();
    for _ in 0..cases() {
        let (mut bytes, _) = random_message(&mut rng);
        for _ in 0..rng.gen_range(1..4) {
            let bit = rng.gen_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        let (_, peak) = peak_during(|| decode_every_way(&bytes));
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}

#[test]
fn oversized_lengths_are_refused_before_reading() {
    for len in [MAX_FRAME as u32 + 1, u32::MAX / 2, u32::MAX] {
        let bytes = frame_with_len(len, &[0; 16]);
        let (result, peak) = peak_during(|| read_frame::<ToWorker>(&mut &bytes[..]));
        assert!(
            matches!(result, Err(FrameError::TooLarge(l)) if l == len as usize),
            "{result:?}"
        );
        assert!(peak < 64 * 1024, "peak allocation {peak}");
        assert!(matches!(
            decode_frame::<FromWorker>(&bytes),
            Err(FrameError::TooLarge(_))
        ));
    }
}

#[test]
fn trailing_garbage_inside_a_frame_is_an_error() {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &ToWorker::Shutdown).expect("encode");
    bytes.push(0);
    let len = (bytes.len() - 4) as u32;
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    let result = read_frame::<ToWorker>(&mut &bytes[..]);
    assert!(
        matches!(&result, Err(FrameError::Decode(m)) if m.contains("trailing")),
        "{result:?}"
    );
}

#[test]
fn a_greeting_of_garbage_is_reported_not_trusted() {
    let mut rng = rng();
    for _ in 0..cases() / 4 {
        let mut bytes = MAGIC.to_vec();
        let len = rng.gen_range(0..40);
        bytes.extend((0..len).map(|_| rng.gen::<u8>()));
        match read_greeting(&mut &bytes[..]) {
            Ok(FromWorker::Hello { .. }) => {}
            Ok(other) => panic!("a greeting that is not Hello was accepted: {other:?}"),
            Err(e) => assert!(!e.is_empty()),
        }
    }
}

// ------------------------------------------------- SLURM result records

#[test]
fn result_logs_of_random_bytes_hold_no_records() {
    let mut rng = rng();
    for _ in 0..cases() {
        let len = rng.gen_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let (records, peak) = peak_during(|| fuzzing::task_records(&bytes));
        // Random bytes pass the 64-bit checksum with probability ~2^-64.
        assert_eq!(records, 0, "{bytes:?}");
        assert!(peak < SMALL_BUDGET);
        let (_, peak) = peak_during(|| fuzzing::task_record_payload(&bytes));
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}

// ------------------------------------------------------------ CSV input

fn csv_error(text: &[u8]) -> SampleError {
    Sample::read_csv_from(text, CsvOptions::default()).expect_err("must be refused")
}

#[test]
fn csv_errors_name_the_file_and_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[u8], usize, &str); 6] = [
        (b"\"a\",\"b\"\n1,2\n3\n", 3, "expected 2 fields, found 1"),
        (
            b"\"a\",\"b\"\n1,2\n3,x\n",
            3,
            "cannot read \"x\" as a number",
        ),
        (b"\"a\",\"b\"\n\n# note\n1,\"2\n", 4, "no closing quote"),
        (b"\"a\",\"b\"\n1,2\n\xff,1\n", 3, "not valid UTF-8"),
        (b"\"a\"x,\"b\"\n", 1, "text follows the closing quote"),
        (b"1,2\n3,4,5\n", 2, "expected 2 fields, found 3"),
    ];
    for (i, (text, line, what)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("doe-{i}.csv"));
        std::fs::write(&path, text).expect("write");
        let message = Sample::read_csv(&path)
            .expect_err("must be refused")
            .to_string();
        let file = path.display().to_string();
        assert!(
            message.starts_with(&format!("{file} line {line}")),
            "{message}"
        );
        assert!(message.contains(what), "{message}");
        // The same from a reader, named "CSV input".
        let message = csv_error(text).to_string();
        assert!(message.contains(&format!("line {line}")), "{message}");
    }
}

#[test]
fn random_csv_never_panics() {
    let mut rng = rng();
    let alphabet = b"0123456789.,;\t \"\n\r#eE+-naifxy\xff\xc3\xa9";
    for _ in 0..cases() {
        let len = rng.gen_range(0..120);
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        bytes.insert(0, rng.gen());
        let (_, peak) = peak_during(|| fuzzing::csv(&bytes));
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}

#[test]
fn random_sample_dumps_never_panic_nor_allocate_much() {
    let mut rng = rng();
    let mut valid = Vec::new();
    Sample::from_arrays(&[[1.0, 2.0], [3.0, 4.0]])
        .dump_to(&mut valid)
        .expect("dump");
    for _ in 0..cases() / 4 {
        let mut bytes = valid.clone();
        for _ in 0..rng.gen_range(1..4) {
            let bit = rng.gen_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        bytes.truncate(rng.gen_range(0..=bytes.len()));
        let (_, peak) = peak_during(|| fuzzing::sample_dump(&bytes));
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}

// -------------------------------------------------- templates and output

#[test]
fn a_template_that_is_not_utf8_names_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("beam.xml");
    std::fs::write(&path, b"<beam>\n  <F>@F@</F>\n  <name>caf\xe9</name>\n").expect("write");
    let err = Template::from_file(&path).expect_err("must be refused");
    assert!(
        matches!(&err, CouplingError::InvalidText { path: p, line: 3, .. } if *p == path),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{}` line 3", path.display())),
        "{message}"
    );
}

#[test]
fn output_parse_errors_name_the_file_and_the_line() {
    let out = ResultFile::from_text("run/out.txt", "header\nY= 1.5\nZ= oops\n");
    let message = out
        .value_by_token("Z=", Skip::new())
        .expect_err("not a number")
        .to_string();
    assert!(message.starts_with("`run/out.txt` line 3"), "{message}");
    let message = out
        .value_at(0, 0, None)
        .expect_err("not a number")
        .to_string();
    assert!(message.starts_with("`run/out.txt` line 1"), "{message}");
    let regex = otwrap_runtime::coupling::Regex::new(r"(?m)^(\w+)$").expect("regex");
    let message = out
        .values_by_regex(&regex)
        .expect_err("not a number")
        .to_string();
    assert!(message.starts_with("`run/out.txt` line 1"), "{message}");
}

#[test]
fn empty_names_are_errors_not_hangs() {
    let out = ResultFile::from_text("out.xml", "<a b=\"1\"/>\n");
    for (element, attribute) in [("a", ""), ("", "b"), ("", "")] {
        let err = out
            .attribute(element, attribute)
            .expect_err("an empty name is refused");
        assert!(err.to_string().contains("empty"), "{err}");
    }
}

#[test]
fn random_templates_and_outputs_never_panic() {
    let mut rng = rng();
    let alphabet = b"@@XY=<> \"'/\n\r\t0123456789.-+eE\0abc";
    for _ in 0..cases() {
        let len = rng.gen_range(0..100);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let (_, peak) = peak_during(|| {
            fuzzing::template(&bytes);
            fuzzing::result_file(&bytes)
        });
        assert!(peak < SMALL_BUDGET, "{bytes:?}: peak allocation {peak}");
    }
}
