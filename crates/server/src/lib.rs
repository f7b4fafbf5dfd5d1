//! polyhead's server: configuration, the gRPC services (`Inference`, admin
//! `Registry`, health, reflection), the HTTP/JSON API beside them, request batching across tasks, the embedding
//! cache, Prometheus metrics, bearer-token auth and the store watcher.
//!
//! [`serve`] runs it all; [`Settings`] is the layered configuration.
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
mod settings;
mod status;

use engine::Engine;
pub use serve::{serve, ServeError};
pub use settings::{
    AdminSettings, BackboneSettings, LogFormat, LogSettings, ServerSettings, Settings,
    SettingsError, StoreSettings, TrainSettings, DEFAULTS,
};
pub use status::{code_name, ServerError};
