//! Compressed sample dumps (`Sample::load`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::sample_dump(data);
});
