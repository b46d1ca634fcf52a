//! The client payload parser: never panics; what it accepts round-trips
//! through our frame encoding; what serde_json reads as an array of strings
//! it reads the same.
#![no_main]

use actix_sockjs::fuzzing::{encode_message, parse_messages};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for single in [false, true] {
        match parse_messages(data, single) {
            Ok(messages) => {
                if let Ok(strict) = serde_json::from_slice::<Vec<String>>(data) {
                    assert_eq!(strict, messages);
                }
                for m in &messages {
                    let back: String =
                        serde_json::from_str(&encode_message(m)).expect("our encoding is JSON");
                    assert_eq!(&back, m);
                }
            }
            Err(e) => assert!(e == "Payload expected." || e == "Broken JSON encoding."),
        }
    }
});
