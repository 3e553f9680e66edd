//! Fuzz target for `connectord_fuzz::check_rest_json`; see that function for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| connectord_fuzz::check_rest_json(data));
