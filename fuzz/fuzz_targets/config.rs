//! `cargo fuzz run -s none config`: see `lwsws::fuzzing::config` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::config(data));
