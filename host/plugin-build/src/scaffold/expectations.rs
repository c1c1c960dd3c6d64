//! The expectations file of a new project's fixture (`tests/messages.expected.toml`, in the
//! format `streamhost plugin test` reads): the template plugin's effects for each of the
//! fixture's batches, its key-value store afterwards and the answer to one query.

use super::NewPlugin;
use super::files::fixture_stream;

/// The rooms of the fixture's message rows, in order (the fourth row is not a message).
const ROOMS: [&str; 3] = [
    "!a:demo.streamhost",
    "!b:demo.streamhost",
    "!a:demo.streamhost",
];

/// What the template plugin does with the fixture `files` writes: one batch per row (each row
/// has its own token), an invalidation and a notification per message.
pub(super) fn for_fixture(plugin: &NewPlugin) -> String {
    let stream = fixture_stream(plugin);
    let mut text = String::from(
        "# What the plugin must do with messages.jsonl; `streamhost plugin test --update`\n\
         # rewrites this file from what it does now.\n\
         batch_rows = 1    # most rows per plugin batch (1: each token is a batch)\n\n\
         # The effects of each batch (\"<stream> <instance> <last token>\"); a batch not listed\n\
         # must have none.\n\
         [effects]\n",
    );
    let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
    for (index, room) in ROOMS.iter().enumerate() {
        let count = counts.entry(room).or_default();
        *count += 1;
        text.push_str(&format!(
            "\"{stream} master {token}\" = [\n  \"invalidate count room:{room}\",\n  \"notify room:{room} {count}\",\n]\n",
            token = index + 1,
        ));
    }
    text.push_str("\n# The whole key-value store after the run.\n[kv]\n");
    for (room, count) in &counts {
        text.push_str(&format!("\"room:{room}\" = \"{count}\"\n"));
    }
    text.push_str(&format!(
        "\n# Queries asked after the run, and their answers.\n[[query]]\nname = \"count\"\n\
         args = {{ room = \"{room}\" }}\nanswer = \"{count}\"\n",
        room = ROOMS[0],
        count = counts[ROOMS[0]],
    ));
    text
}
