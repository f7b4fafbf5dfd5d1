//! polyhead's server: configuration, the gRPC services (`Inference`, admin
//! `Registry`, health, reflection), the HTTP/JSON API beside them, request batching across tasks, the embedding
//! cache, Prometheus metrics, bearer-token auth and the store watcher.
//!
//! [`serve`] runs it all from the program's settings (`polyhead_settings::Settings`).
#![deny(missing_docs)]

mod admin;
mod auth;
mod batcher;
mod cache;
mod conn;
mod convert;
mod engine;
mod http;
mod inference;
mod ledger;
mod logs;
mod metrics;
mod serve;
mod status;

use engine::Engine;
use polyhead_settings::Settings;
pub use serve::{serve, ServeError};
pub use status::code_name;
use status::ServerError;
