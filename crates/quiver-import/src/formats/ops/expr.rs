//! The estimate expressions of ops tool profiles: the one parser of the model
//! ([`quiver_model::expr`]), which the importer checks every profile's expressions with.

pub use quiver_model::expr::*;
