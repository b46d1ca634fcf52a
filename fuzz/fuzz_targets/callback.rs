//! The callback validator: never panics, and what it accepts cannot leave
//! the JavaScript call it is written into.
#![no_main]

use actix_sockjs::fuzzing::validate_callback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cb) = validate_callback(Some(text)) {
        assert!(!cb.is_empty() && cb.len() <= 64);
        assert!(cb.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }
});
