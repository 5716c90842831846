//! quiver-engine
