//! Worker protocol frames of both directions (`ToWorker`, `FromWorker`),
//! as a stream, as in-buffer frames, as bare payloads and as a greeting.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::protocol_stream(data);
    otwrap_runtime::fuzzing::protocol_payload(data);
});
