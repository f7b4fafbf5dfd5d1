//! Preparing inputs for the runtime, on whichever thread asks (the encoder's, or a
//! handle's caller): a text backbone tokenizes (truncated, or cut into windows), an
//! image backbone decodes, resizes and crops.
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::{
    image::{self, ImageConfig},
    tokenize::{token_ids, window_ids},
    Encoded, Error, Input, Result,
};

/// What prepares inputs for the runtime, shared by the encoder and the handle (which
/// prepares on its caller's thread): a text backbone's tokenizer, or an image
/// backbone's preprocessing.
#[derive(Clone)]
pub(crate) enum Prepare {
    /// Tokenizes texts: `tokenizer` truncates, `windows` cuts a text into
    /// overlapping windows (see `tokenize::window_ids`).
    Text {
        tokenizer: Arc<Tokenizer>,
        windows: Arc<Tokenizer>,
    },
    /// Decodes, resizes, crops and normalises pictures.
    Image {
        config: Arc<ImageConfig>,
        max_pixels: u64,
    },
}

impl Prepare {
    /// `inputs` prepared for the runtime; an input of a kind this backbone does not
    /// read is an [`Error::Input`].
    pub fn encode(&self, inputs: &[Input]) -> Result<Vec<Encoded>> {
        match self {
            Prepare::Text { tokenizer, .. } => Ok(token_ids(tokenizer, &texts_of(inputs)?)?
                .into_iter()
                .map(Encoded::Tokens)
                .collect()),
            Prepare::Image { config, max_pixels } => inputs
                .iter()
                .enumerate()
                .map(|(n, i)| match i {
                    Input::Image(bytes) => Ok(Encoded::Pixels {
                        rgb: image::preprocess(bytes, config, *max_pixels)
                            .map_err(|e| Error::Input(format!("image {n}: {e}")))?,
                        cost: config.cost(),
                    }),
                    other => Err(Error::Input(format!(
                        "this backbone reads images; it was sent a {}",
                        other.kind()
                    ))),
                })
                .collect(),
        }
    }

    /// Every window of each text, prepared for the runtime: the first is what
    /// [`Prepare::encode`] gives; a text longer than the backbone reads has more.
    pub fn encode_windows(&self, inputs: &[Input]) -> Result<Vec<Vec<Encoded>>> {
        match self {
            Prepare::Text { windows, .. } => Ok(window_ids(windows, &texts_of(inputs)?)?
                .into_iter()
                .map(|w| w.into_iter().map(Encoded::Tokens).collect())
                .collect()),
            Prepare::Image { .. } => Err(Error::Input(
                "an image backbone reads each picture whole; windows are for texts".into(),
            )),
        }
    }

    /// The tokenizer, for a text backbone.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        match self {
            Prepare::Text { tokenizer, .. } => Some(tokenizer),
            Prepare::Image { .. } => None,
        }
    }
}

/// The texts of `inputs`, or an [`Error::Input`] naming the first that is not one.
fn texts_of(inputs: &[Input]) -> Result<Vec<&str>> {
    inputs
        .iter()
        .map(|i| {
            i.text().ok_or_else(|| {
                Error::Input(format!(
                    "this backbone reads texts; it was sent an {}",
                    i.kind()
                ))
            })
        })
        .collect()
}
