//! `cargo fuzz run -s none path`: see `lwsws::fuzzing::path` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::path(data));
