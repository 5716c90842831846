//! quiver's data model.
//!
//! One model serves all five kinds of thing the registry holds: an [`Entry`] (kind,
//! namespace, name, description, category, tags, status, visibility, popularity) with
//! immutable [`Version`]s (semver, manifest validated against the kind's JSON Schema,
//! sha256 of the canonical manifest) and typed [`Relation`]s between entries. A kind is a
//! schema plus a name rule, so a new kind is data, not a new subsystem.
//!
//! This crate is pure: no I/O, no storage, no HTTP. Validation lives here so that every
//! write path (API, CLI, importers) applies the same rules.

pub mod cursor;
mod error;
pub mod expr;
pub mod gates;
pub mod manifest;
pub mod names;
mod types;
pub mod validate;

pub use error::{Context, Error, ErrorCode, Result};
pub use types::*;
