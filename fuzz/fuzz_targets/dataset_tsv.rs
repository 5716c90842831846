//! The data set's TSV reader, for both layouts: every line is a record or a rejection.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use quiver_import::dataset::DatasetReader;

const HEADERS: [&str; 2] = [
    "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n",
    "name\tversion\tdownloads_a_month\tsummary\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    // Either a known header and the fuzzed body, or the fuzzed bytes alone.
    let input = match pick % 3 {
        2 => body.to_vec(),
        i => [HEADERS[i as usize].as_bytes(), body].concat(),
    };
    if let Ok(reader) = DatasetReader::from_reader(Box::new(Cursor::new(input))) {
        for (i, _) in reader.enumerate() {
            assert!(i < data.len() + 2, "more records than lines");
        }
    }
});
