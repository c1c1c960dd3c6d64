//! Parse: the reader's decode and batch assembly of RDATA lines on one core, against
//! splitting the same lines and parsing each row with serde_json.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use streamhost_proto::{LineFramer, MAX_LINE_LENGTH, ServerCommand, Token};

use super::fixtures::event_row;
use super::median_of;

/// Prints the parse row of the table (at least 200,000 rows).
pub(crate) async fn parse(rows: usize, runs: usize) -> anyhow::Result<()> {
    let rows = rows.max(200_000);
    let wire = wire_lines(rows);
    let parse = median_of(runs, || async { Ok(bench_parse(&wire, rows)) }).await?;
    let naive = median_of(runs, || async { Ok(bench_naive_parse(&wire, rows)) }).await?;
    println!(
        "| reader parse + batch, one core (rows/s) | {parse:.0} | {naive:.0} (split + serde_json::Value) | {:.2} |",
        parse / naive
    );
    Ok(())
}

/// Encoded RDATA lines like a live Synapse stream: mostly single rows, some `batch` runs.
fn wire_lines(rows: usize) -> Bytes {
    let mut out = Vec::new();
    let mut token = 2;
    let mut n = 0;
    while n < rows {
        let run = if n % 10 == 0 { 3 } else { 1 };
        for i in 0..run {
            let row = streamhost_proto::RowJson::parse(event_row(n).to_string().as_bytes())
                .expect("canonical");
            let command = ServerCommand::Rdata(streamhost_proto::Rdata {
                stream: streamhost_proto::StreamName::new("events").expect("name"),
                instance: streamhost_proto::InstanceName::new("master").expect("name"),
                token: if i + 1 == run {
                    Some(Token(token))
                } else {
                    None
                },
                row,
            });
            command.encode(&mut out).expect("encodable");
            n += 1;
        }
        token += 1;
    }
    out.into()
}

/// Rows/s of the reader's framing, decoding and batch assembly of `wire`.
fn bench_parse(wire: &Bytes, rows: usize) -> f64 {
    let started = Instant::now();
    let mut framer = LineFramer::new(MAX_LINE_LENGTH);
    framer.buffer_mut().extend_from_slice(wire);
    let mut assembler = streamhost_server::reader::BatchAssembler::default();
    let mut applied = 0usize;
    while let Ok(Some(line)) = framer.next_line() {
        if let Ok(ServerCommand::Rdata(rdata)) = ServerCommand::decode(&line)
            && let Some(batch) = assembler.push(rdata)
        {
            applied += batch.rows.len();
        }
    }
    assert_eq!(applied, rows, "every row assembled into a batch");
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Rows/s of splitting `wire` into lines and fields and parsing each row to a value.
fn bench_naive_parse(wire: &Bytes, rows: usize) -> f64 {
    let started = Instant::now();
    let mut buffer = BytesMut::from(&wire[..]);
    let mut parsed = 0usize;
    while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
        let line = buffer.split_to(end + 1);
        let text = std::str::from_utf8(&line[..end]).expect("UTF-8");
        let mut fields = text.splitn(5, ' ');
        let (_, _, _, _, row) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        );
        let value: serde_json::Value = serde_json::from_str(row.expect("row")).expect("JSON");
        std::hint::black_box(value);
        parsed += 1;
    }
    assert_eq!(parsed, rows);
    rows as f64 / started.elapsed().as_secs_f64()
}
