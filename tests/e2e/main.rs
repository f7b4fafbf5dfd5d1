//! End-to-end tests: each starts the real `polyhead serve` and talks gRPC to it.
#![allow(clippy::unwrap_used)]

mod adapt;
mod attacks;
mod defects;
mod deploy;
mod disk;
mod errors;
mod front;
mod hardening;
mod http_api;
mod images;
mod load;
mod measures;
mod readme;
mod replicas;
mod report;
mod serving;
mod swap;
mod tls;
mod windows;
