//! `cargo fuzz run -s none request_head`: see `lwsws::fuzzing::request_head` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::request_head(data));
