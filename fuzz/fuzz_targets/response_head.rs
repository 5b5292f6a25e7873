//! `cargo fuzz run -s none response_head`: see `lwsws::fuzzing::response_head` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::response_head(data));
