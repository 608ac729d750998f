//! REST request bodies: the JSON extractor's parser classifies every input as a value, a
//! 400 or a 422 naming a field, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::api_json::parse;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Body {
    username: Option<String>,
    password: String,
    birth_year: Option<i64>,
    tags: Option<Vec<String>>,
}

fuzz_target!(|data: &[u8]| {
    let _ = parse::<Body>(data);
    let _ = parse::<serde_json::Value>(data);
});
