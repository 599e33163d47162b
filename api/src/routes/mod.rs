//! Handlers, grouped by resource.

pub mod catalog;
pub mod credentials;
pub mod datasets;
pub mod download;
pub mod features;
pub mod ingestions;
pub mod meta;
pub mod ogcapi;
pub mod processes;
pub mod stac;
pub mod sync;
pub mod templates;
pub mod zarr;
