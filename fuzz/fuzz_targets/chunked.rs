//! `cargo fuzz run -s none chunked`: see `lwsws::fuzzing::chunked` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::chunked(data));
