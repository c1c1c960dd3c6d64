//! What a reader parses from the writer (or Synapse) over TCP, `ServerCommand::decode`, and
//! over Redis, `Command::decode`, after framing. A decoded command must encode to at most one
//! line and decode again to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamhost_proto::{Command, MAX_LINE_LENGTH, ServerCommand, is_blank};

fn reencoded(encode: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<Bytes> {
    let mut out = Vec::new();
    if !encode(&mut out) {
        assert!(out.is_empty(), "a failed encode left bytes");
        return None;
    }
    assert_eq!(out.pop(), Some(b'\n'));
    assert!(out.len() <= MAX_LINE_LENGTH && !out.contains(&b'\n'));
    Some(Bytes::from(out))
}

fuzz_target!(|data: &[u8]| {
    for line in streamhost_fuzz::frame(data) {
        if is_blank(&line) {
            continue;
        }
        let any = Command::decode(&line);
        match &any {
            Ok(command) => {
                if let Some(out) = reencoded(|out| command.encode(out).is_ok()) {
                    let again = Command::decode(&out).expect("re-decode");
                    assert_eq!(&again, command, "decode -> encode -> decode changed it");
                }
            }
            Err(e) => {
                let _ = e.error_text(&line);
            }
        }
        match ServerCommand::decode(&line) {
            Ok(command) => {
                let any = any.as_ref().expect("the all-directions decoder refused it");
                assert_eq!(any, &Command::from(command.clone()));
                if let Some(out) = reencoded(|out| command.encode(out).is_ok()) {
                    let again = ServerCommand::decode(&out).expect("re-decode");
                    assert_eq!(again, command, "decode -> encode -> decode changed it");
                }
            }
            Err(e) => {
                let _ = e.error_text(&line);
            }
        }
    }
});
