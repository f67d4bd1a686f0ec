//! Entry points for the fuzz targets (`fuzz/`) and the hostile-input tests
//! (`tests/hostile.rs`): each feeds arbitrary bytes to one decoder or parser
//! that reads data otwrap does not control, and returns a small summary so
//! the work cannot be optimised away. None may panic, hang or allocate much
//! beyond its input's size; that is what the fuzzer checks.
//!
//! Not a public API: the decoders stay private to their modules, and these
//! functions only reach them.

use crate::worker::protocol::{self, FromWorker, ToWorker};
use crate::worker::run_dir::{self, TaskRecord};

/// Reads frames of both directions from `bytes` as a stream, until the end
/// or the first error; returns how many frames decoded.
pub fn protocol_stream(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    let mut to_worker = bytes;
    while let Ok(Some(_)) = protocol::read_frame::<ToWorker>(&mut to_worker) {
        decoded += 1;
    }
    let mut from_worker = bytes;
    while let Ok(Some(_)) = protocol::read_frame::<FromWorker>(&mut from_worker) {
        decoded += 1;
    }
    // The in-buffer splitter must agree with the stream reader.
    let mut rest = bytes;
    while let Ok(Some((_, used))) = protocol::decode_frame::<FromWorker>(rest) {
        rest = &rest[used..];
    }
    if protocol::read_greeting(&mut &bytes[..]).is_ok() {
        decoded += 1;
    }
    decoded
}

/// Decodes `bytes` as one payload of each direction (no length prefix), so
/// the fuzzer explores the message decoder without having to find lengths.
pub fn protocol_payload(bytes: &[u8]) -> usize {
    usize::from(crate::codec::decode::<ToWorker>(bytes).is_ok())
        + usize::from(crate::codec::decode::<FromWorker>(bytes).is_ok())
}

/// Parses a SLURM array task's result log (framed, checksummed records);
/// returns how many whole records it holds.
pub fn task_records(bytes: &[u8]) -> usize {
    run_dir::parse_records(bytes).records.len()
}

/// Frames `bytes` as one result-log record with a correct checksum and
/// parses it back, so the fuzzer reaches the record decoder behind the
/// checksum; returns whether it decoded.
pub fn task_record_payload(bytes: &[u8]) -> bool {
    let Ok(len) = u32::try_from(bytes.len()) else {
        return false;
    };
    let mut framed = Vec::with_capacity(12 + bytes.len());
    framed.extend_from_slice(&len.to_le_bytes());
    framed.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(bytes).to_le_bytes());
    framed.extend_from_slice(bytes);
    let parsed = run_dir::parse_records(&framed);
    let decoded = crate::codec::decode::<TaskRecord>(bytes).is_ok();
    // Both paths must agree on what is a record.
    assert_eq!(parsed.records.len(), usize::from(decoded));
    decoded
}

/// Reads `bytes` as a CSV sample with the separator (or its detection) and
/// header mode chosen by the first byte; returns the number of values read.
pub fn csv(bytes: &[u8]) -> usize {
    use crate::sample::{CsvOptions, HeaderMode, Sample};
    let (choice, text) = bytes.split_first().unwrap_or((&0, &[]));
    // The high bit leaves the separator to detection.
    let separator = (choice & 0x80 == 0).then(|| [',', ';', '\t', ' '][usize::from(choice & 3)]);
    let header =
        [HeaderMode::Auto, HeaderMode::Present, HeaderMode::Absent][usize::from((choice >> 2) % 3)];
    let comment = if choice & 0x40 == 0 { Some('#') } else { None };
    let options = CsvOptions {
        separator,
        ..CsvOptions::default()
    }
    .with_header(header)
    .with_comment(comment);
    match Sample::read_csv_from(text, options) {
        Ok(sample) => {
            // What was read writes back and reads back the same.
            let mut out = Vec::new();
            if !sample.is_empty() && sample.write_csv_to(&mut out, options).is_ok() {
                let again = Sample::read_csv_from(&out[..], options);
                assert!(again.is_ok(), "a written sample does not read back");
            }
            sample.as_flat().len()
        }
        Err(e) => e.to_string().len(),
    }
}

/// Reads `bytes` as a sample dump ([`Sample::load`](crate::sample::Sample::load)).
pub fn sample_dump(bytes: &[u8]) -> usize {
    crate::sample::Sample::load_from(bytes).map_or(0, |s| s.as_flat().len())
}

/// Splits `bytes` into a template text and tokens (separated by NUL bytes)
/// and fills the template with every substitution API; returns the length
/// of what was rendered.
pub fn template(bytes: &[u8]) -> usize {
    use crate::coupling::{NumberFormat, Template};
    let text = String::from_utf8_lossy(bytes);
    let mut parts = text.split('\0');
    let template = Template::new(parts.next().unwrap_or_default(), "fuzz.tpl");
    let tokens: Vec<&str> = parts.take(20).collect();
    let values: Vec<(&str, f64)> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i as f64 * 1.5 - 3.0))
        .collect();
    let mut rendered = 0;
    for format in [
        NumberFormat::Shortest,
        NumberFormat::C_E,
        NumberFormat::Fixed { decimals: 3 },
    ] {
        if let Ok(out) = template.fill(&values, format) {
            rendered += out.len();
        }
    }
    if let Some((first, rest)) = tokens.split_first() {
        let mut subs = template.replace(first, "text");
        for (i, token) in rest.iter().enumerate() {
            subs = subs.replace(token, i as i64);
        }
        if let Ok(out) = subs.render() {
            rendered += out.len();
        }
    }
    rendered
}

/// Reads `bytes` as a program's output file with every reader (token,
/// line/column, regex, attribute), with offsets and names taken from its
/// first bytes; returns how many values were found.
pub fn result_file(bytes: &[u8]) -> usize {
    use crate::coupling::{Regex, ResultFile, Skip};
    let (head, body) = bytes.split_at(bytes.len().min(8));
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let signed = |i: usize| isize::from(byte(i) as i8 % 8);
    let text = String::from_utf8_lossy(body);
    let file = ResultFile::from_text("fuzz.out", text.as_ref());
    // Names and tokens are short slices of the file itself, so they match.
    let word = |at: usize, len: usize| -> &str {
        let start = text
            .char_indices()
            .nth(at % 64)
            .map_or(text.len(), |(i, _)| i);
        let rest = &text[start..];
        let end = rest.char_indices().nth(len).map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    };
    let mut found = 0;
    let skip = Skip::new()
        .tokens(signed(0))
        .lines(signed(1))
        .cols(signed(2));
    let skip = if byte(3) & 1 == 1 {
        skip.col_sep(word(usize::from(byte(4)), 1))
    } else {
        skip
    };
    let token = word(usize::from(byte(5)), usize::from(byte(6) % 4));
    found += usize::from(file.value_by_token(token, skip).is_ok());
    let col_sep = (byte(3) & 2 == 2).then(|| word(usize::from(byte(4)), 1));
    found += usize::from(file.value_at(signed(1), signed(2), col_sep).is_ok());
    let element = word(usize::from(byte(5)), usize::from(byte(7) % 6));
    let attribute = word(usize::from(byte(6)), usize::from(byte(7) % 5));
    found += usize::from(file.attribute(element, attribute).is_ok());
    static NUMBERS: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    if let Some(regex) = NUMBERS.get_or_init(|| Regex::new(r"=\s*([-+0-9.eE]+)").ok()) {
        found += file.values_by_regex(regex).map_or(0, |v| v.len());
    }
    found
}
