//! Fields combined from several (the hours of a day, say), read lazily window by window.

use super::*;

/// One field that combines several (the hours of a day, say), read lazily: each window read
/// reads the same window of every part and combines them cell by cell.
#[derive(Debug)]
pub struct AggregatedSource {
    parts: Vec<(Arc<dyn RasterSource>, usize)>,
    method: climate_domain::template::AggregateMethod,
}

impl AggregatedSource {
    /// Combines the fields `parts` (source, time index), which share a grid, with `method`.
    ///
    /// # Panics
    /// Never; an empty `parts` reads as an error.
    pub fn new(
        parts: Vec<(Arc<dyn RasterSource>, usize)>,
        method: climate_domain::template::AggregateMethod,
    ) -> Self {
        Self { parts, method }
    }
}

impl RasterSource for AggregatedSource {
    fn describe(&self) -> String {
        match self.parts.first() {
            Some((s, _)) => format!(
                "{} of {} fields of {}",
                self.method.as_str(),
                self.parts.len(),
                s.describe()
            ),
            None => "an empty aggregation".into(),
        }
    }
    fn grid(&self) -> &Grid {
        static EMPTY: std::sync::OnceLock<Grid> = std::sync::OnceLock::new();
        self.parts.first().map_or_else(
            || {
                EMPTY.get_or_init(|| Grid {
                    crs: climate_domain::Crs::WGS84,
                    x: Axis {
                        first: 0.0,
                        step: 1.0,
                        len: 0,
                    },
                    y: Axis {
                        first: 0.0,
                        step: -1.0,
                        len: 0,
                    },
                })
            },
            |(s, _)| s.grid(),
        )
    }
    fn read_window(
        &self,
        _t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        if self.parts.is_empty() {
            return Err(RasterError::new(
                Path::new("aggregation"),
                "no fields to combine",
            ));
        }
        // One part at a time: a daily mean of 24 hourly fields holds two fields, not 25.
        let mut parts = self.parts.iter();
        let mut acc = match parts.next() {
            Some((s, t)) => s.read_window(*t, rows.clone(), cols.clone())?,
            None => Vec::new(),
        };
        for (s, t) in parts {
            let field = s.read_window(*t, rows.clone(), cols.clone())?;
            self.method.accumulate(&mut acc, &field);
        }
        self.method.finish(&mut acc, self.parts.len());
        Ok(acc)
    }
}
