//! Property-based fuzzing of dataset parsing (issue 8): arbitrary bytes in either
//! format never panic, and every example that parses has a text and a label.
//! `PROPTEST_CASES` sets the number of inputs (scripts/fuzz.sh runs many more).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use polyhead_trainer::{Dataset, Format};
use proptest::prelude::*;

fn parse(bytes: &[u8], format: Option<Format>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, bytes).unwrap();
    if let Ok(ds) = Dataset::read(&path, format) {
        for e in &ds.examples {
            assert!(!e.text.trim().is_empty() && !e.label.trim().is_empty());
        }
        let _ = ds.labels();
        let _ = ds.hash();
    }
}

/// Lines that look almost like rows, so the parsers get past their first check.
fn rowish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{\"text\":".to_string()),
        Just("\"label\":".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("\"".to_string()),
        Just("\n".to_string()),
        Just("text,label\n".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        ".{0,8}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        parse(&bytes, None);
        parse(&bytes, Some(Format::Jsonl));
        parse(&bytes, Some(Format::Csv));
    }

    #[test]
    fn almost_rows_never_panic(text in rowish()) {
        parse(text.as_bytes(), Some(Format::Jsonl));
        parse(text.as_bytes(), Some(Format::Csv));
    }
}
