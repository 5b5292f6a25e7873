//! `cargo fuzz run -s none ranges`: see `lwsws::fuzzing::ranges` for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::ranges(data));
