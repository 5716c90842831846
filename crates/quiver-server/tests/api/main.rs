//! The HTTP API, driven end to end over real sockets on loopback: one test binary, one
//! module per group of routes, all on the one harness in `tests/common`
//! ([`common::TestApp`]).
//!
//! PostgreSQL tests read `QUIVER_TEST_POSTGRES_URL` and print `SKIPPED` without it.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod audit;
mod authoring;
mod caching;
mod changes;
mod credentials;
mod deletion;
mod device;
mod downloads;
mod entries;
mod entry_names;
mod experiments;
mod expressions;
mod hardening;
mod health;
mod jobs;
mod lifecycle;
mod limits;
mod mcp;
mod oidc;
mod openapi;
mod pipeline;
mod resolve;
mod select;
mod suggest;
mod telemetry;
mod transfer;
mod web;
mod web_account;
mod web_intel;
mod web_pipeline;
mod web_staff;
mod webhooks;
