//! `cargo fuzz run -s none proxy_header`: see `lwsws::fuzzing::proxy_header` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lwsws::fuzzing::proxy_header(data));
