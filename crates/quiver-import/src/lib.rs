//! quiver-import
