//! CSV designs of experiments (`Sample::read_csv`); the first byte picks
//! the separator, header mode and comment character.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::csv(data);
});
