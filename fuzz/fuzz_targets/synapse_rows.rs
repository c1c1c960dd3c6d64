//! Synapse row conversion (`reader/upstream/synapse/rows.rs`): what a reader
//! following a live Synapse does with each row before plugins see it. `data[0]` picks the
//! stream (every converted stream, plus one it passes through), the rest is the row's JSON.
//! A converted row must be canonical JSON (parsing it again returns it unchanged) and, for
//! the streams it converts, an object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamhost_proto::{RowJson, StreamName};
use streamhost_server::fuzzing::{synapse_row, synapse_streams};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let Ok(row) = RowJson::parse(json) else {
        return;
    };
    let mut streams = synapse_streams();
    streams.push("not_a_synapse_stream");
    let name = streams[usize::from(pick) % streams.len()];
    let stream = StreamName::new(name).expect("a valid stream name");
    if let Ok(object) = synapse_row(&stream, &row) {
        assert_eq!(RowJson::parse(object.as_bytes()).as_ref(), Ok(&object));
        if name == "not_a_synapse_stream" {
            assert_eq!(object, row, "an unknown stream's row was changed");
        } else {
            assert!(
                object.as_bytes().starts_with(b"{"),
                "not an object: {object}"
            );
        }
    }
});
