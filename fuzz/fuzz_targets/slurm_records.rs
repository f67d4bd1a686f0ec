//! A SLURM array task's result log (framed, checksummed records), and
//! record payloads framed with a valid checksum to reach the decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otwrap_runtime::fuzzing::task_records(data);
    otwrap_runtime::fuzzing::task_record_payload(data);
});
