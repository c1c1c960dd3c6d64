//! What Redis sends a subscribed connection (`redis/resp.rs`): the replies and pub/sub
//! messages taken from the bytes whole are the same, and end in the same error, as those
//! taken from the bytes cut in two reads anywhere (the first byte picks where). Nothing
//! panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamhost_server::fuzzing::redis_pushes;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(pick) * bytes.len() / 255;
    let whole = redis_pushes(&[bytes]);
    let (first, second) = bytes.split_at(cut);
    assert_eq!(redis_pushes(&[first, second]), whole, "cut at {cut}");
});
