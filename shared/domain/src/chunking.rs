//! The chunk policy: how a dataset's `(t, y, x)` array is cut into chunks.
//!
//! The time chunk comes from the period type (hourly 168, daily 30, weekly 52, monthly 12,
//! yearly 1), spatial chunks are at most 512 pixels, and the spatial chunk is halved (largest
//! side first) until one chunk is at most 8 MiB uncompressed. Templates may override any part.

use serde::{Deserialize, Serialize};

use crate::period::PeriodType;

/// Largest spatial chunk side.
pub const MAX_SPATIAL_CHUNK: u64 = 512;
/// Largest uncompressed chunk size in bytes.
pub const MAX_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// A per-template override of the chunk policy; absent parts fall back to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkOverride {
    /// Periods per chunk.
    #[serde(default)]
    pub t: Option<u64>,
    /// Rows per chunk.
    #[serde(default)]
    pub y: Option<u64>,
    /// Columns per chunk.
    #[serde(default)]
    pub x: Option<u64>,
    /// Store chunks in shards of this many chunks along `[t, y, x]` (Zarr v3 sharding): fewer,
    /// larger objects for object stores; readers fetch single chunks by range.
    #[serde(default)]
    pub shard: Option<[u64; 3]>,
}

/// The chunk shape of a `(t, y, x)` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkShape {
    /// Periods per chunk.
    pub t: u64,
    /// Rows per chunk.
    pub y: u64,
    /// Columns per chunk.
    pub x: u64,
}

impl ChunkShape {
    /// Applies the policy to a grid of `ny × nx` values of `value_bytes` bytes each.
    pub fn for_grid(
        period_type: PeriodType,
        ny: u64,
        nx: u64,
        value_bytes: u64,
        overrides: Option<ChunkOverride>,
    ) -> Self {
        let o = overrides.unwrap_or_default();
        let t =
            o.t.unwrap_or_else(|| period_type.default_time_chunk())
                .max(1);
        let mut y = o.y.unwrap_or_else(|| ny.clamp(1, MAX_SPATIAL_CHUNK)).max(1);
        let mut x = o.x.unwrap_or_else(|| nx.clamp(1, MAX_SPATIAL_CHUNK)).max(1);
        // Only shrink sides the template did not fix explicitly.
        while t * y * x * value_bytes > MAX_CHUNK_BYTES {
            let shrink_y = o.y.is_none() && y > 1 && (y >= x || o.x.is_some() || x == 1);
            let shrink_x = o.x.is_none() && x > 1 && !shrink_y;
            if shrink_y {
                y = y.div_ceil(2);
            } else if shrink_x {
                x = x.div_ceil(2);
            } else {
                break;
            }
        }
        Self { t, y, x }
    }

    /// The shape as `[t, y, x]`.
    pub fn to_array(&self) -> [u64; 3] {
        [self.t, self.y, self.x]
    }

    /// Uncompressed bytes of one chunk.
    pub fn bytes(&self, value_bytes: u64) -> u64 {
        self.t * self.y * self.x * value_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_daily_grid_uses_whole_grid_and_30_days() {
        let c = ChunkShape::for_grid(PeriodType::Daily, 32, 35, 4, None);
        assert_eq!(c.to_array(), [30, 32, 35]);
    }

    #[test]
    fn hourly_global_grid_is_shrunk_under_8_mib() {
        let c = ChunkShape::for_grid(PeriodType::Hourly, 1801, 3600, 4, None);
        assert_eq!(c.t, 168);
        assert!(c.y <= 512 && c.x <= 512);
        assert!(c.bytes(4) <= MAX_CHUNK_BYTES, "{c:?}");
        // Not shrunk further than necessary: doubling either side would exceed the limit.
        assert!(c.t * (c.y * 2) * c.x * 4 > MAX_CHUNK_BYTES);
    }

    #[test]
    fn overrides_are_respected() {
        let o = ChunkOverride {
            t: Some(7),
            y: None,
            x: Some(100),
            shard: None,
        };
        let c = ChunkShape::for_grid(PeriodType::Daily, 2400, 7200, 4, Some(o));
        assert_eq!((c.t, c.x), (7, 100));
        assert_eq!(c.y, 512);
    }
}
