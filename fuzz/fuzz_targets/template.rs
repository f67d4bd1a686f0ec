//! Input-file templates: the text, then NUL-separated tokens to replace.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::template(data);
});
