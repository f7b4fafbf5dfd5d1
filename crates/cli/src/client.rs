//! `polyhead serve` and the small gRPC client `polyhead classify`.

use anyhow::{Context, Result};
use clap::Args;
use polyhead_api::v1::{inference_client::InferenceClient, ClassifyRequest};
use polyhead_server::Settings;

/// Arguments of `polyhead serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC listen address (server.addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Prometheus listen address (server.metrics_addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// HTTP/JSON API listen address (server.http_addr; "" = off).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Head store: a folder, or postgres://user:password@host:5432/db (store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub backbone: crate::BackboneArgs,
}

impl ServeArgs {
    /// `(key, value)` overrides for [`Settings::load`].
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = self.backbone.overrides();
        if let Some(a) = &self.addr {
            o.push(("server.addr", a.clone()));
        }
        if let Some(a) = &self.metrics_addr {
            o.push(("server.metrics_addr", a.clone()));
        }
        if let Some(a) = &self.http_addr {
            o.push(("server.http_addr", a.clone()));
        }
        if let Some(s) = &self.store {
            o.push(("store.url", s.clone()));
        }
        o
    }
}

/// `polyhead serve`.
pub fn serve(settings: Settings, args: &ServeArgs) -> Result<()> {
    if args.print_config {
        println!("{}", settings.to_redacted_json());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(polyhead_server::serve(settings))?;
    Ok(())
}

/// Arguments of `polyhead classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Task name.
    #[arg(long)]
    pub task: String,
    /// Labels per text in `scores` (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Bearer token, when the server protects inference.
    #[arg(long, env = "POLYHEAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Texts to classify.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// `polyhead classify`: one JSON object per text.
pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let addr = if args.addr.contains("://") { args.addr.clone() } else { format!("http://{}", args.addr) };
        let mut client = InferenceClient::connect(addr.clone()).await.with_context(|| format!("connecting to {addr}"))?;
        let mut request =
            tonic::Request::new(ClassifyRequest { task: args.task.clone(), texts: args.texts.clone(), top_k: args.top_k });
        if let Some(t) = &args.token {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse()?);
        }
        let response = client.classify(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
        let r = response.into_inner();
        for (text, c) in args.texts.iter().zip(&r.results) {
            let scores: serde_json::Map<String, serde_json::Value> =
                c.scores.iter().map(|s| (s.label.clone(), serde_json::json!(s.score))).collect();
            println!(
                "{}",
                serde_json::json!({ "text": text, "label": c.label, "score": c.score, "scores": scores,
                    "task": r.task, "head_version": r.head_version })
            );
        }
        Ok(())
    })
}
