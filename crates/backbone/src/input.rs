//! Inputs typed by kind, from the handle through a server's batcher and embedding cache
//! to the runtime: a new kind of input is a new variant here and in the family that
//! reads it, not an edit of every layer.

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A text, read by a text backbone's tokenizer.
    Text(String),
    /// An encoded picture (JPEG, PNG or WebP bytes), read by an image backbone.
    Image(Vec<u8>),
}

impl Input {
    /// The kind, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Text(_) => "text",
            Input::Image(_) => "image",
        }
    }

    /// The text, for a text input (heads that also read the task's own words use it).
    pub fn text(&self) -> Option<&str> {
        match self {
            Input::Text(t) => Some(t),
            Input::Image(_) => None,
        }
    }

    /// What identifies it for a cache: its kind's tag and its bytes (inputs of two
    /// kinds never share a key).
    pub fn key_bytes(&self) -> (u8, &[u8]) {
        match self {
            Input::Text(t) => (0, t.as_bytes()),
            Input::Image(b) => (1, b),
        }
    }
}

impl From<String> for Input {
    fn from(text: String) -> Input {
        Input::Text(text)
    }
}

impl From<&str> for Input {
    fn from(text: &str) -> Input {
        Input::Text(text.to_owned())
    }
}

/// An input prepared for the runtime: token ids (special tokens included, truncated)
/// for a text, normalised pixels for a picture.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    /// Token ids of a text.
    Tokens(Vec<u32>),
    /// A preprocessed picture: the resized and cropped RGB bytes (side x side x 3,
    /// row-major; normalised only when its pass runs, so a queued picture holds a
    /// quarter of the memory floats would), and what it counts in the batch policy's
    /// unit (its 16 x 16 patches).
    Pixels {
        /// side x side x 3 bytes.
        rgb: Vec<u8>,
        /// Patches, the unit passes are budgeted in.
        cost: usize,
    },
}

impl Default for Encoded {
    fn default() -> Encoded {
        Encoded::Tokens(Vec::new())
    }
}

impl Encoded {
    /// Its size in the unit passes are budgeted in (tokens; a picture counts its
    /// patches).
    pub fn len(&self) -> usize {
        match self {
            Encoded::Tokens(ids) => ids.len(),
            Encoded::Pixels { cost, .. } => *cost,
        }
    }

    /// True for an input of no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token ids (none for a picture).
    pub fn tokens(&self) -> &[u32] {
        match self {
            Encoded::Tokens(ids) => ids,
            Encoded::Pixels { .. } => &[],
        }
    }
}
