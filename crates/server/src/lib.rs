//! polyhead's server: configuration, gRPC services, request batching across tasks,
//! embedding cache, metrics, admin auth and the store watcher.
#![deny(missing_docs)]

mod settings;

pub use settings::{
    AdminSettings, BackboneSettings, ServerSettings, Settings, SettingsError, StoreSettings,
    TrainSettings, DEFAULTS,
};
