//! Tokenization with the backbone's truncation: token ids per text, the long-text
//! shortcut that tokenizes only a provably sufficient prefix, and the windows that
//! cover a whole long text.
use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::{Error, Result};

/// Token ids of each text with `tokenizer`'s truncation, special tokens included.
pub(crate) fn token_ids(tokenizer: &Tokenizer, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
    let max_len = tokenizer.get_truncation().map(|t| t.max_length);
    texts
        .iter()
        .map(|t| ids_of(tokenizer, t.as_ref(), max_len))
        .collect()
}

/// Bytes per kept token of the prefix tried first for a long text: English runs at
/// 4-6 bytes a token, CJK at 3; a text that needs more falls back to the whole.
const PREFIX_BYTES_PER_TOKEN: usize = 12;

/// The ids of one text. Truncation keeps only the first `max_len` tokens, yet the
/// tokenizer would normalise and split all of a 64 KB text first; so a long text is
/// tokenized from a prefix, and that answer is used only when it is provably the
/// same: the prefix was itself truncated and every kept token ends before the
/// prefix's last whitespace. BERT's normaliser and pre-tokenizer work per character
/// and split at whitespace, so nothing after that whitespace can change a token
/// before it. Otherwise (very long words, no whitespace) the whole text is used.
fn ids_of(tokenizer: &Tokenizer, text: &str, max_len: Option<usize>) -> Result<Vec<u32>> {
    let encode = |t: &str| {
        tokenizer
            .encode(t, true)
            .map_err(|e| Error::Tokenize(e.to_string()))
    };
    if let Some(max_len) = max_len {
        let mut cut = max_len.saturating_mul(PREFIX_BYTES_PER_TOKEN);
        if text.len() > cut {
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let prefix = &text[..cut];
            if let Some(safe) = prefix.rfind(char::is_whitespace) {
                let enc = encode(prefix)?;
                let kept_end = enc.get_offsets().iter().map(|o| o.1).max().unwrap_or(0);
                if !enc.get_overflowing().is_empty() && kept_end <= safe {
                    return Ok(enc.get_ids().to_vec());
                }
            }
        }
    }
    Ok(encode(text)?.get_ids().to_vec())
}

/// Tokens two neighbouring windows share, so no sentence is only ever seen cut in
/// two (what `bench/windows_probe.py` measured).
pub const WINDOW_OVERLAP: usize = 32;
/// Most windows read of one text (about 7,000 tokens, 30 KB of English): the rest of a
/// longer text is not read. Requests are bounded anyway by `server.max_text_bytes`
/// and `server.max_request_tokens`, which count every window.
pub const MAX_WINDOWS: usize = 32;

/// Token ids of every window of each text: the first window is exactly the text's
/// truncated ids ([`token_ids`]); each next one starts [`WINDOW_OVERLAP`] tokens
/// before the last one ended. `windows` is the backbone's tokenizer with that
/// stride set, so its post-processor adds the family's special tokens to every
/// window.
pub(crate) fn window_ids(windows: &Tokenizer, texts: &[&str]) -> Result<Vec<Vec<Vec<u32>>>> {
    texts
        .iter()
        .map(|t| {
            let enc = windows
                .encode(*t, true)
                .map_err(|e| Error::Tokenize(e.to_string()))?;
            let mut out = Vec::with_capacity(1 + enc.get_overflowing().len());
            out.push(enc.get_ids().to_vec());
            out.extend(
                enc.get_overflowing()
                    .iter()
                    .take(MAX_WINDOWS - 1)
                    .map(|o| o.get_ids().to_vec()),
            );
            Ok(out)
        })
        .collect()
}

/// The backbone's tokenizer, cut into windows that overlap by [`WINDOW_OVERLAP`].
pub(crate) fn windowing(tokenizer: &Tokenizer, path: &Path) -> Result<Tokenizer> {
    let mut windows = tokenizer.clone();
    let max_length = tokenizer.get_truncation().map_or(512, |t| t.max_length);
    windows
        .with_truncation(Some(TruncationParams {
            max_length,
            // The stride must stay below the window's content (max_length less the
            // special tokens): a tiny max_seq_length gets a smaller overlap.
            stride: WINDOW_OVERLAP.min(max_length.saturating_sub(2) / 2),
            ..Default::default()
        }))
        .map_err(|e| Error::Tokenizer {
            path: path.to_owned(),
            msg: e.to_string(),
        })?;
    Ok(windows)
}

pub(crate) fn load_tokenizer(bytes: &[u8], path: &Path, max_len: usize) -> Result<Tokenizer> {
    let err = |msg: String| Error::Tokenizer {
        path: path.to_owned(),
        msg,
    };
    let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| err(e.to_string()))?;
    // tokenizer.json may carry its own (often 128, fixed-padding) settings; the
    // sentence-transformers max_seq_length wins, and we pad per batch ourselves.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}
