//! Handlers, grouped by resource.

pub mod datasets;
pub mod ingestions;
pub mod meta;
pub mod templates;
pub mod zarr;
