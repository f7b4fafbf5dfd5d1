//! Labelled datasets: JSONL rows `{"text": ..., "label": ...}` or CSV with a
//! `text,label` header. Every problem is reported with its line number.
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{error::io, Error, Result};

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// Its label.
    pub label: String,
    /// 1-based line it came from (0 when built in memory).
    pub line: usize,
}

/// A dataset file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object `{"text": ..., "label": ...}` per line.
    Jsonl,
    /// A `text,label` header, then one row per example.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => Err(Error::Dataset(format!("format {s:?}: use jsonl or csv"))),
        }
    }
}

/// Labelled examples in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    /// The examples.
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Builds a dataset from `(text, label)` pairs, checking each as a file row would be.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Dataset> {
        let mut examples = Vec::new();
        for (i, (text, label)) in pairs.into_iter().enumerate() {
            let ex = Example {
                text,
                label,
                line: i + 1,
            };
            check(&ex).map_err(|msg| Error::Dataset(format!("example {}: {msg}", i + 1)))?;
            examples.push(ex);
        }
        Ok(Dataset { examples })
    }

    /// Reads a `.jsonl`/`.json` or `.csv` file (by extension), or a folder of
    /// pictures with one sub-folder per label ([`Dataset::read_image_folder`]).
    pub fn load(path: &Path) -> Result<Dataset> {
        if path.is_dir() {
            return Self::read_image_folder(path);
        }
        Self::read(path, None)
    }

    /// A folder of pictures laid out as torchvision's `ImageFolder` reads it: one
    /// sub-folder per label, holding `.jpg`/`.jpeg`/`.png`/`.webp` files (other files
    /// and deeper folders are skipped). Each example's `text` is its file's path; the
    /// order is sorted by label, then file name, so a folder always reads the same.
    pub fn read_image_folder(dir: &Path) -> Result<Dataset> {
        let listing = |d: &Path| -> Result<Vec<std::fs::DirEntry>> {
            let mut entries = std::fs::read_dir(d)
                .map_err(crate::error::io(d))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(crate::error::io(d))?;
            entries.sort_by_key(|e| e.file_name());
            Ok(entries)
        };
        let mut examples = Vec::new();
        for class in listing(dir)? {
            if !class
                .file_type()
                .map_err(crate::error::io(&class.path()))?
                .is_dir()
            {
                continue;
            }
            let label = class.file_name().to_string_lossy().into_owned();
            for file in listing(&class.path())? {
                let path = file.path();
                let picture = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "jpg" | "jpeg" | "png" | "webp"
                    )
                });
                if picture && path.is_file() {
                    examples.push(Example {
                        text: path.to_string_lossy().into_owned(),
                        label: label.clone(),
                        line: examples.len() + 1,
                    });
                }
            }
        }
        if examples.is_empty() {
            return Err(Error::Dataset(format!(
                "{}: no pictures found; expected one sub-folder per label holding .jpg, \
                 .jpeg, .png or .webp files (the layout torchvision's ImageFolder reads)",
                dir.display()
            )));
        }
        Ok(Dataset { examples })
    }

    /// Reads `path` (`-` = standard input) in `format`; without one, the extension
    /// decides, and a name with no known extension (a pipe such as `<(cmd)`, stdin)
    /// is JSONL when its first non-blank byte is `{`, CSV otherwise.
    pub fn read(path: &Path, format: Option<Format>) -> Result<Dataset> {
        Self::read_columns(path, format, "text", "label")
    }

    /// [`Dataset::read`] with the text and label in the columns (CSV) or fields
    /// (JSONL) `text` and `label` name.
    pub fn read_columns(
        path: &Path,
        format: Option<Format>,
        text: &str,
        label: &str,
    ) -> Result<Dataset> {
        if path.is_dir() {
            return Self::read_image_folder(path);
        }
        let bytes = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(io(path))?;
            buf
        } else {
            std::fs::read(path).map_err(io(path))?
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Dataset(format!(
                "{}: empty file: it needs labelled examples (JSONL rows {{\"{text}\": ..., \"{label}\": ...}} or a CSV with a {text},{label} header)",
                path.display()
            )));
        }
        if bytes.contains(&0) {
            return Err(Error::Dataset(format!(
                "{}: not a text file (binary): give a .jsonl or .csv file of labelled examples",
                path.display()
            )));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let format = format.unwrap_or(match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            _ if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Format::Jsonl,
            _ => Format::Csv,
        });
        let ds = match format {
            Format::Jsonl => Self::parse_jsonl(&bytes, path, text, label)?,
            Format::Csv => Self::parse_csv(&bytes, path, text, label)?,
        };
        if ds.examples.is_empty() {
            return Err(Error::Dataset(format!(
                "{} has no examples",
                path.display()
            )));
        }
        Ok(ds)
    }

    fn parse_jsonl(bytes: &[u8], path: &Path, text_key: &str, label_key: &str) -> Result<Dataset> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::Dataset(format!("{}: not UTF-8: {e}", path.display())))?;
        let mut examples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let row_err = |msg: String| Error::Row {
                path: path.to_owned(),
                line,
                msg,
            };
            if raw.trim().is_empty() {
                continue;
            }
            let mut row: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(raw).map_err(|e| row_err(format!("invalid row: {e}")))?;
            let mut field = |key: &str, flag: &str| {
                row.remove(key).ok_or_else(|| {
                    let keys: Vec<&String> = row.keys().collect();
                    row_err(format!(
                        "no {key:?} field (the row has {keys:?}): name it with {flag}"
                    ))
                })
            };
            let (text, label) = (
                field(text_key, "--text-column")?,
                field(label_key, "--label-column")?,
            );
            if let Some(extra) = row.keys().next() {
                if text_key == "text" && label_key == "label" {
                    return Err(row_err(format!(
                        "unknown field {extra:?}: rows hold \"text\" and \"label\" only"
                    )));
                }
            }
            let text =
                as_string(text).ok_or_else(|| row_err(format!("{text_key:?} must be a string")))?;
            let label = as_string(label)
                .ok_or_else(|| row_err(format!("{label_key:?} must be a string or number")))?;
            let ex = Example { text, label, line };
            check(&ex).map_err(row_err)?;
            examples.push(ex);
        }
        Ok(Dataset { examples })
    }

    fn parse_csv(bytes: &[u8], path: &Path, text_col: &str, label_col: &str) -> Result<Dataset> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes);
        let header_err = |msg: String| Error::Row {
            path: path.to_owned(),
            line: 1,
            msg,
        };
        let headers = reader
            .headers()
            .map_err(|e| header_err(e.to_string()))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let (Some(t), Some(l)) = (col(text_col), col(label_col)) else {
            let names: Vec<&str> = headers.iter().collect();
            return Err(header_err(format!(
                "the header has {names:?}; it needs a {text_col:?} and a {label_col:?} column: \
                 rename them, or name yours with --text-column and --label-column"
            )));
        };
        let mut examples = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                Error::Row {
                    path: path.to_owned(),
                    line,
                    msg: e.to_string(),
                }
            })?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            let ex = Example {
                text: record.get(t).unwrap_or_default().to_owned(),
                label: record.get(l).unwrap_or_default().trim().to_owned(),
                line,
            };
            check(&ex).map_err(|msg| Error::Row {
                path: path.to_owned(),
                line,
                msg,
            })?;
            examples.push(ex);
        }
        Ok(Dataset { examples })
    }

    /// Sorted distinct labels.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self.examples.iter().map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        labels
    }

    /// The texts, in order.
    pub fn texts(&self) -> Vec<String> {
        self.examples.iter().map(|e| e.text.clone()).collect()
    }

    /// A seeded, stratified sample of about `n` examples: each label keeps its share
    /// (and at least two examples, so it can still be split), in file order. All of
    /// the data when `n` is at least its size.
    pub fn sample(&self, n: usize, seed: u64) -> Dataset {
        use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
        let total = self.examples.len();
        if n >= total {
            return self.clone();
        }
        let labels = self.labels();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut keep = Vec::new();
        for label in &labels {
            let mut members: Vec<usize> = (0..total)
                .filter(|&i| &self.examples[i].label == label)
                .collect();
            members.shuffle(&mut rng);
            let share = (members.len() as f64 * n as f64 / total as f64).round() as usize;
            keep.extend_from_slice(&members[..share.max(2).min(members.len())]);
        }
        keep.sort_unstable();
        Dataset {
            examples: keep.into_iter().map(|i| self.examples[i].clone()).collect(),
        }
    }

    /// sha256 of every (text, label) in order: identifies the training data.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.examples {
            for part in [&e.text, &e.label] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        hex::encode(&h.finalize()[..16])
    }
}

fn as_string(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s),
        // 1 and 1.0 are one number, so one label: whole numbers are written without
        // a fraction (up to 2^53, where f64 holds every integer exactly).
        serde_json::Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        }),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check(ex: &Example) -> std::result::Result<(), String> {
    if ex.text.trim().is_empty() {
        return Err("empty text".into());
    }
    if ex.label.trim().is_empty() {
        return Err("empty label".into());
    }
    if ex.label.len() > 256 {
        return Err("label longer than 256 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_sample_keeps_every_label_its_share_and_the_seed_decides() {
        let pairs = (0..1000).map(|i| {
            let label = if i % 10 == 0 { "rare" } else { "common" };
            (format!("text {i}"), label.to_string())
        });
        let d = Dataset::from_pairs(pairs).unwrap();
        let s = d.sample(100, 7);
        let count = |s: &Dataset, l: &str| s.examples.iter().filter(|e| e.label == l).count();
        assert_eq!((count(&s, "rare"), count(&s, "common")), (10, 90));
        assert_eq!(s, d.sample(100, 7));
        assert_ne!(s, d.sample(100, 8));
        let order: Vec<usize> = s
            .examples
            .iter()
            .map(|e| e.text[5..].parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "file order kept");
        // A label with few examples keeps two; n past the size keeps everything.
        assert_eq!(count(&d.sample(10, 1), "rare"), 2);
        assert_eq!(d.sample(5000, 1), d);
    }

    use super::*;

    fn write(name: &str, body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        (dir, p)
    }

    fn err(name: &str, body: &str) -> String {
        let (_d, p) = write(name, body);
        Dataset::load(&p).unwrap_err().to_string()
    }

    #[test]
    fn jsonl_and_csv_parse() {
        let (_d, p) = write(
            "a.jsonl",
            "{\"text\":\"hi\",\"label\":\"x\"}\n\n{\"text\":\"yo\",\"label\":2}\n",
        );
        let ds = Dataset::load(&p).unwrap();
        assert_eq!(ds.labels(), vec!["2", "x"]);
        assert_eq!(ds.examples[1].line, 3);
        let (_d, p) = write(
            "a.csv",
            "label,text\nx,\"hello, world\"\ny,\"multi\nline\"\n",
        );
        let ds = Dataset::load(&p).unwrap();
        assert_eq!(ds.examples[0].text, "hello, world");
        assert_eq!(ds.examples[1].text, "multi\nline");
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let e = err(
            "a.jsonl",
            "{\"text\":\"ok\",\"label\":\"x\"}\n{\"text\":\"ok\"\n",
        );
        assert!(e.contains("a.jsonl:2:"), "{e}");
        let e = err(
            "a.jsonl",
            "{\"text\":\"ok\",\"label\":\"x\"}\n{\"text\":\"  \",\"label\":\"x\"}\n",
        );
        assert!(e.contains(":2: empty text"), "{e}");
        let e = err("a.jsonl", "{\"text\":[1],\"label\":\"x\"}\n");
        assert!(e.contains(":1:") && e.contains("text"), "{e}");
        let e = err("a.jsonl", "{\"text\":\"a\",\"label\":\"x\",\"extra\":1}\n");
        assert!(e.contains(":1:") && e.contains("extra"), "{e}");
        let e = err("a.csv", "text,label\nfine,x\n,y\n");
        assert!(e.contains("a.csv:3: empty text"), "{e}");
        let e = err("a.csv", "text,label\nfine,x\ntoo,many,fields\n");
        assert!(e.contains("a.csv:3:"), "{e}");
        let e = err("a.csv", "body,label\nfine,x\n");
        assert!(
            e.contains(":1:") && e.contains("[\"body\", \"label\"]"),
            "{e}"
        );
        assert!(e.contains("--text-column"), "{e}");
        let e = err("a.txt", "x");
        assert!(e.contains("--label-column"), "{e}");
        let e = err("a.csv", "");
        assert!(e.contains("empty file"), "{e}");
        let e = err("a.csv", "text,label\n\0\u{1}x,y\n");
        assert!(e.contains("not a text file (binary)"), "{e}");
        // Other column and field names.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "body,category\nhello,a\nbye,b\n").unwrap();
        let d = Dataset::read_columns(&p, None, "body", "category").unwrap();
        assert_eq!(
            (d.examples[1].text.as_str(), d.examples[1].label.as_str()),
            ("bye", "b")
        );
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, "{\"body\": \"hi\", \"y\": 1, \"id\": 7}\n").unwrap();
        let d = Dataset::read_columns(&p, None, "body", "y").unwrap();
        assert_eq!(
            (d.examples[0].text.as_str(), d.examples[0].label.as_str()),
            ("hi", "1")
        );
    }

    #[test]
    fn numeric_labels_are_one_class_per_number() {
        let (_d, p) = write(
            "a.jsonl",
            "{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":1.0}\n{\"text\":\"c\",\"label\":2.5}\n{\"text\":\"d\",\"label\":-3.0}\n",
        );
        let ds = Dataset::load(&p).unwrap();
        assert_eq!(ds.labels(), vec!["-3", "1", "2.5"]);
    }

    #[test]
    fn format_is_sniffed_or_given() {
        let (_d, p) = write("pipe", "\n {\"text\":\"hi\",\"label\":\"x\"}\n");
        assert_eq!(Dataset::read(&p, None).unwrap().examples.len(), 1);
        let (_d, p) = write("pipe", "text,label\nhello,x\n");
        assert_eq!(Dataset::read(&p, None).unwrap().examples[0].label, "x");
        let (_d, p) = write("data.txt", "{\"text\":\"hi\",\"label\":\"x\"}\n");
        assert!(Dataset::read(&p, Some(Format::Csv)).is_err());
        assert_eq!(
            Dataset::read(&p, Some(Format::Jsonl))
                .unwrap()
                .examples
                .len(),
            1
        );
        assert!("xml".parse::<Format>().is_err());
    }
}
