//! quiver-search
