//! Operations commands: `polyhead store copy` (move heads between stores) and
//! `polyhead health` (a container HEALTHCHECK / probe without grpcurl).
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// `polyhead store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every task, version and activation history from one store to another
    /// (folder or postgres://...), bytes as they are. Idempotent: versions the target
    /// already has are skipped; one stored there with other contents stops the copy.
    Copy(CopyArgs),
}

/// Arguments of `polyhead store copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source store: a folder or postgres://user:password@host:5432/db.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Target store (created or migrated if needed).
    #[arg(long, value_name = "URL")]
    pub to: String,
}

/// `polyhead store ...`.
pub fn store(cmd: &StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Copy(a) => {
            let from = polyhead_heads::open_store(&a.from, None)
                .with_context(|| format!("opening source store {}", a.from))?;
            let to = polyhead_heads::open_store(&a.to, None)
                .with_context(|| format!("opening target store {}", a.to))?;
            let r = polyhead_heads::copy_store(from.as_ref(), to.as_ref())?;
            println!(
                "{}",
                serde_json::json!({
                    "from": from.location(), "to": to.location(), "tasks": r.tasks,
                    "versions_copied": r.copied, "versions_unchanged": r.unchanged,
                })
            );
            Ok(())
        }
    }
}

/// Arguments of `polyhead health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Service to check: "" (the whole server), polyhead.v1.Inference or
    /// polyhead.v1.Registry (NOT_SERVING while the head store is unreachable).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this long.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// `polyhead health`: exit 0 when SERVING, 5 when nothing answers, 1 otherwise (the
/// reason on stderr).
pub fn health(a: &HealthArgs) -> Result<()> {
    let addr = crate::client::endpoint_url(&a.addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_millis(a.timeout_ms);
    let status = runtime.block_on(async {
        tokio::time::timeout(timeout, async {
            let channel = tonic::transport::Endpoint::from_shared(addr.clone())?
                .connect_timeout(timeout)
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: a.service.clone(),
                })
                .await
                .context("health check")?;
            Ok::<_, anyhow::Error>(reply.into_inner().status())
        })
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
    })?;
    if status != ServingStatus::Serving {
        bail!("{addr}: {:?}", status);
    }
    println!("SERVING");
    Ok(())
}
