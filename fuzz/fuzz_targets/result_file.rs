//! Output-file readers (by token with skips, line/column, regex,
//! attribute); the first 8 bytes choose offsets and names.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::result_file(data);
});
