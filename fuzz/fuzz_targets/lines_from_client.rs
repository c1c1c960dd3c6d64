//! What the writer's replication server parses from a client: framing, then
//! `ClientCommand::decode`. A decoded command must agree with the all-directions decoder,
//! encode to at most one line, and decode again to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamhost_proto::{ClientCommand, Command, MAX_LINE_LENGTH, is_blank};

fuzz_target!(|data: &[u8]| {
    for line in streamhost_fuzz::frame(data) {
        if is_blank(&line) {
            continue;
        }
        match ClientCommand::decode(&line) {
            Ok(command) => {
                let any = Command::decode(&line).expect("the all-directions decoder refused it");
                assert_eq!(any, Command::from(command.clone()));
                let mut out = Vec::new();
                if command.encode(&mut out).is_ok() {
                    assert_eq!(out.pop(), Some(b'\n'));
                    assert!(out.len() <= MAX_LINE_LENGTH && !out.contains(&b'\n'));
                    let again = ClientCommand::decode(&Bytes::from(out)).expect("re-decode");
                    assert_eq!(again, command, "decode -> encode -> decode changed it");
                } else {
                    assert!(out.is_empty(), "a failed encode left bytes");
                }
            }
            Err(e) => {
                let _ = e.error_text(&line);
            }
        }
    }
});
