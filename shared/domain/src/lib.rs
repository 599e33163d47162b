//! # climate-domain
//!
//! The vocabulary of Climate API as plain types and rules: periods, extents and bounding boxes,
//! dataset templates, identifiers, grids and the chunk policy, ingestion runs.
//!
//! ## Charter
//! - No I/O of any kind: no files, sockets, clocks read implicitly, or environment variables.
//!   Functions that need "now" take it as an argument.
//! - Types validate on construction: a value you hold is a valid value.
//! - No knowledge of wire formats beyond serde derives of the documented public shapes; HTTP,
//!   database rows and queue messages are converted to and from these types at the edges.
//!
//! The crate's dependency list (chrono, serde, thiserror) is checked by the architecture test in
//! `tests/`, so this charter cannot erode silently.

pub mod auth;
pub mod chunking;
pub mod crs;
pub mod extent;
pub mod grid;
pub mod ids;
pub mod period;
pub mod retry;
pub mod run;
pub mod sync;
pub mod template;

pub use crs::Crs;
pub use extent::{Bbox, Extent};
pub use ids::{DatasetId, ExtentId, JobId, RunId, TemplateId};
pub use period::{Period, PeriodError, PeriodRange, PeriodType};
