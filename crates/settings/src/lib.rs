//! polyhead's configuration, in layers (later wins): compiled-in defaults
//! (`defaults.toml`) -> optional TOML file -> `POLYHEAD__SECTION__KEY` environment
//! variables -> command-line overrides. Validated once, with errors that name the key.
#![deny(missing_docs)]
use std::{net::SocketAddr, path::PathBuf};

use config::{Config, Environment, File, FileFormat};
use polyhead_backbone::{Backend, Device, Dtype, EncoderOptions};
use serde::{Deserialize, Serialize};
use unset::{empty_is_none, optional_addr};

mod unset;

/// The compiled-in defaults.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Invalid or unreadable configuration.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The layers could not be read or merged, or a key has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range.
    #[error("configuration: {key}: {msg}")]
    Invalid {
        /// The offending key, `section.key`.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
}

/// `[backbone]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSettings {
    /// Checkpoint folder.
    pub model_dir: PathBuf,
    /// `auto`, `torch`, `onnxruntime` or `openvino`.
    pub backend: Backend,
    /// Folder of the ONNX export; unset (`""`) = `<model_dir>-onnx`.
    #[serde(with = "empty_is_none")]
    pub onnx_dir: Option<PathBuf>,
    /// ONNX Runtime's library; unset = `$ORT_DYLIB_PATH`, else the one in `onnx_dir`.
    #[serde(with = "empty_is_none")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// OpenVINO's C library; unset = the one in `onnx_dir`.
    #[serde(with = "empty_is_none")]
    pub openvino_lib: Option<PathBuf>,
    /// `cpu`, `cuda`, `cuda:N`.
    pub device: Device,
    /// `auto`, `f32`, `bf16` or `int8`.
    pub dtype: Dtype,
    /// Intra-op threads (0 = all cores).
    pub threads: usize,
    /// Most texts per forward pass.
    pub batch_size: usize,
    /// Most tokens (padding included) per forward pass: the longest any work holds
    /// the model thread.
    pub max_pass_tokens: usize,
    /// Most pixels a picture may declare before it is decoded (an image backbone).
    pub max_image_pixels: u64,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Where heads are stored: a folder path (or `file://PATH`), or a PostgreSQL URL
    /// (`postgres://user:password@host:5432/db`) shared by many replicas.
    pub url: polyhead_heads::StoreUrl,
    /// How often the store watcher re-reads the active pointers (a PostgreSQL store
    /// also pushes changes at once; then this is only the fallback).
    pub poll_ms: u64,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Head kind of a TrainHead that names none: auto, linear, hybrid or mlp.
    pub head: polyhead_trainer::HeadChoice,
    /// Feature cache folder.
    #[serde(with = "empty_is_none")]
    pub feature_cache_dir: Option<PathBuf>,
    /// Most examples (training + validation) in one TrainHead request.
    pub max_examples: usize,
    /// Most distinct labels of a head trained by TrainHead.
    pub max_labels: usize,
    /// Widest MLP hidden layer TrainHead accepts.
    pub max_hidden_dim: usize,
    /// Longest a TrainHead job may run before it is stopped.
    pub max_seconds: u64,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// gRPC listen address.
    pub addr: SocketAddr,
    /// Prometheus listen address.
    pub metrics_addr: SocketAddr,
    /// HTTP/JSON API listen address; `""` in TOML or the environment = no HTTP API.
    #[serde(with = "optional_addr")]
    pub http_addr: Option<SocketAddr>,
    /// Whether inference RPCs are open (else they need the admin token).
    pub open_inference: bool,
    /// Most texts per request.
    pub max_texts: usize,
    /// Most tasks named in one ClassifyMulti.
    pub max_tasks_per_request: usize,
    /// Most label scores in one response (texts x labels, summed over tasks).
    pub max_scores_per_response: usize,
    /// Threads that tokenize requests (0 = one per core).
    pub tokenize_workers: usize,
    /// HTTP/2 keepalive ping interval in seconds (0 = off).
    pub keepalive_s: u64,
    /// Connections are closed gracefully after this many seconds so load balancers
    /// can rebalance (0 = never).
    pub max_connection_age_s: u64,
    /// Most bytes per text.
    pub max_text_bytes: usize,
    /// Most pictures per request (an image backbone).
    pub max_images: usize,
    /// Most bytes per encoded picture.
    pub max_image_bytes: usize,
    /// Most pictures decoded and waiting to be embedded, over all requests.
    pub max_images_in_flight: usize,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Token budget of one batch: the tokens its forward passes compute, padding
    /// included.
    pub max_batch_tokens: usize,
    /// Most tokens (after truncation) one request may send to the backbone.
    pub max_request_tokens: usize,
    /// Longest a request waits for batch company.
    pub max_wait_ms: u64,
    /// Requests in flight before RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Per-request deadline.
    pub request_timeout_ms: u64,
    /// Embedding cache bytes.
    pub cache_bytes: usize,
    /// TLS certificate (PEM); unset (`""`) = plaintext.
    #[serde(with = "empty_is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS key (PEM).
    #[serde(with = "empty_is_none")]
    pub tls_key: Option<PathBuf>,
    /// Most open client connections (also capped by the process's file limit).
    pub max_connections: usize,
    /// A connection must send its first bytes (HTTP/2 preface, TLS hello) and finish
    /// a TLS handshake within this many milliseconds.
    pub handshake_timeout_ms: u64,
    /// A connection with no request for this many seconds is closed (0 = never).
    pub idle_timeout_s: u64,
    /// Most concurrent HTTP/2 streams (calls) per connection.
    pub max_concurrent_streams: u32,
    /// Most response bytes one connection may have waiting to be sent.
    pub max_response_bytes_per_connection: usize,
    /// Most response bytes all connections together may have waiting to be sent.
    pub max_response_bytes: usize,
    /// Most tasks in one ListTasks page.
    pub max_tasks_per_page: usize,
}

/// `[admin]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token of the Registry service; unset (`""`) = the admin API refuses
    /// every call.
    #[serde(with = "empty_is_none")]
    pub token: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// text or json.
    pub format: LogFormat,
    /// One access-log line per request (target `polyhead::access`).
    pub access: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[backbone]`
    pub backbone: BackboneSettings,
    /// `[store]`
    pub store: StoreSettings,
    /// `[train]`
    pub train: TrainSettings,
    /// `[server]`
    pub server: ServerSettings,
    /// `[admin]`
    pub admin: AdminSettings,
    /// `[log]`
    pub log: LogSettings,
}

impl Settings {
    /// Loads defaults, then `file`, then the environment, then `overrides`
    /// (`("section.key", value)` pairs from flags), and validates the result.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[(&str, String)],
    ) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("POLYHEAD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        // Parsed once: addresses, device and dtype are typed here, and a bad value
        // is an error that names its key.
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, msg: String| Err(SettingsError::Invalid { key, msg });
        if self.server.max_images > self.server.max_images_in_flight {
            return invalid(
                "server.max_images",
                format!(
                    "{} is over server.max_images_in_flight ({}): such a request could never run",
                    self.server.max_images, self.server.max_images_in_flight
                ),
            );
        }
        if self.backbone.batch_size == 0 {
            return invalid("backbone.batch_size", "must be at least 1".into());
        }
        for (key, v) in [
            ("server.max_texts", self.server.max_texts),
            ("server.max_text_bytes", self.server.max_text_bytes),
            ("server.max_images", self.server.max_images),
            ("server.max_image_bytes", self.server.max_image_bytes),
            (
                "server.max_images_in_flight",
                self.server.max_images_in_flight,
            ),
            (
                "backbone.max_image_pixels",
                usize::try_from(self.backbone.max_image_pixels).unwrap_or(usize::MAX),
            ),
            ("server.max_message_bytes", self.server.max_message_bytes),
            ("server.max_batch_tokens", self.server.max_batch_tokens),
            ("server.max_request_tokens", self.server.max_request_tokens),
            ("backbone.max_pass_tokens", self.backbone.max_pass_tokens),
            ("server.max_connections", self.server.max_connections),
            (
                "server.handshake_timeout_ms",
                self.server.handshake_timeout_ms as usize,
            ),
            (
                "server.max_concurrent_streams",
                self.server.max_concurrent_streams as usize,
            ),
            (
                "server.max_response_bytes_per_connection",
                self.server.max_response_bytes_per_connection,
            ),
            ("server.max_response_bytes", self.server.max_response_bytes),
            ("server.max_tasks_per_page", self.server.max_tasks_per_page),
            ("server.max_in_flight", self.server.max_in_flight),
            (
                "server.max_tasks_per_request",
                self.server.max_tasks_per_request,
            ),
            (
                "server.max_scores_per_response",
                self.server.max_scores_per_response,
            ),
            ("train.max_examples", self.train.max_examples),
            ("train.max_labels", self.train.max_labels),
            ("train.max_hidden_dim", self.train.max_hidden_dim),
            ("train.max_seconds", self.train.max_seconds as usize),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert",
                "set both tls_cert and tls_key, or neither".into(),
            );
        }
        Ok(())
    }

    /// The feature cache folder: `train.feature_cache_dir`, or
    /// `<store folder>/.feature-cache`, or (database store) `polyhead-feature-cache`
    /// in the system's temp folder.
    pub fn feature_cache_dir(&self) -> PathBuf {
        match (&self.train.feature_cache_dir, self.store.url.folder()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(folder)) => folder.join(".feature-cache"),
            (None, None) => std::env::temp_dir().join("polyhead-feature-cache"),
        }
    }

    /// The limits TrainHead requests are checked against.
    pub fn train_limits(&self) -> polyhead_trainer::TrainLimits {
        polyhead_trainer::TrainLimits {
            max_examples: self.train.max_examples,
            max_labels: self.train.max_labels,
            max_hidden_dim: self.train.max_hidden_dim,
            max_text_bytes: self.server.max_text_bytes,
        }
    }

    /// Encoder options from `[backbone]`.
    pub fn encoder_options(&self) -> EncoderOptions {
        let mut o = EncoderOptions::default();
        o.backend(self.backbone.backend)
            .onnx_dir(self.backbone.onnx_dir.clone())
            .onnxruntime_lib(self.backbone.onnxruntime_lib.clone())
            .openvino_lib(self.backbone.openvino_lib.clone())
            .device(self.backbone.device)
            .dtype(self.backbone.dtype)
            .threads(self.backbone.threads)
            .batch_size(self.backbone.batch_size)
            .max_pass_tokens(self.backbone.max_pass_tokens)
            .max_image_pixels(self.backbone.max_image_pixels);
        o
    }

    /// The effective configuration as TOML-like JSON (for `--print-config`), with the
    /// admin token masked.
    pub fn to_redacted_json(&self) -> String {
        let mut s = self.clone();
        if s.admin.token.is_some() {
            s.admin.token = Some("<set>".into());
        }
        serde_json::to_string_pretty(&s).unwrap_or_default()
    }

    /// The effective configuration as TOML that `--config` reads back; a configured
    /// admin token is left out (said in a comment).
    pub fn to_redacted_toml(&self) -> String {
        let mut s = self.clone();
        let token_set = s.admin.token.take().is_some();
        let body = toml::to_string_pretty(&s).unwrap_or_default();
        let mut out = String::from(
            "# polyhead's effective configuration (polyhead serve --print-config); \
             read it back with --config FILE.\n",
        );
        if token_set {
            out.push_str(
                "# admin.token is set but not printed: give it with POLYHEAD__ADMIN__TOKEN.\n",
            );
        }
        out.push_str(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_toml_reads_back_as_the_same_settings() {
        let s = Settings::load(
            None,
            &[
                ("server.http_addr", String::new()),
                ("server.max_texts", "7".into()),
                ("admin.token", "secret".into()),
            ],
        )
        .unwrap();
        let toml = s.to_redacted_toml();
        assert!(!toml.contains("secret"), "{toml}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, &toml).unwrap();
        let back = Settings::load(Some(&file), &[("admin.token", "secret".into())]).unwrap();
        assert_eq!(back.to_redacted_json(), s.to_redacted_json());
        assert_eq!(back.server.http_addr, None);
        assert_eq!(back.server.max_texts, 7);
    }

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let s = Settings::load(None, &[]).unwrap();
        assert_eq!(s.backbone.dtype, Dtype::Auto);
        assert!(s.server.max_texts > 0);
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let s = Settings::load(None, &[("backbone.dtype", "bf16".into())]).unwrap();
        assert_eq!(s.backbone.dtype, Dtype::Bf16);
        let s = Settings::load(None, &[("backbone.device", "cuda:1".into())]).unwrap();
        assert_eq!(s.backbone.device, Device::Cuda(1));
        let err = Settings::load(None, &[("backbone.dtype", "fp8".into())]).unwrap_err();
        assert!(err.to_string().contains("backbone.dtype"), "{err}");
        let err = Settings::load(None, &[("server.addr", "nowhere".into())]).unwrap_err();
        assert!(err.to_string().contains("server.addr"), "{err}");
    }

    #[test]
    fn file_layer_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("polyhead-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "[server]\nmax_texts = 7\n").unwrap();
        assert_eq!(Settings::load(Some(&f), &[]).unwrap().server.max_texts, 7);
        std::fs::write(&f, "[server]\nmax_txts = 7\n").unwrap();
        let err = Settings::load(Some(&f), &[]).unwrap_err();
        assert!(err.to_string().contains("max_txts"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn picture_limits_must_let_a_request_run() {
        let ok = Settings::load(None, &[]).unwrap();
        assert!(ok.server.max_images <= ok.server.max_images_in_flight);
        assert!(ok.backbone.max_image_pixels > 0);
        let err = Settings::load(
            None,
            &[
                ("server.max_images", "100".into()),
                ("server.max_images_in_flight", "10".into()),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.max_images"), "{err}");
        let err = Settings::load(None, &[("server.max_image_bytes", "0".into())]).unwrap_err();
        assert!(err.to_string().contains("max_image_bytes"), "{err}");
    }
}
