//! The result of the reading processes (zonal statistics, point series) in its three formats: JSON rows, CSV, and a DHIS2
//! `dataValueSet` (values as decimal strings, never in scientific notation).

use serde_json::{Map, Value, json};

use crate::Output;
use crate::series::Step;
use crate::zonal::Feature;

/// The output format asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `{"dataset_id", "period_type", "rows": […], "dropped_periods": […], "warnings": […]}`.
    Json,
    /// The rows as CSV: `feature_id,period,<statistic>…`.
    Csv,
    /// A DHIS2 dataValueSet for `data_element`.
    Dhis2 {
        /// The DHIS2 data element's id.
        data_element: String,
    },
}

/// One feature in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The feature's id.
    pub feature_id: String,
    /// Its DHIS2 organisation unit.
    pub org_unit: String,
    /// The period, ISO form.
    pub period: String,
    /// The period, DHIS2 identifier.
    pub dhis2_period: String,
    /// One value per statistic asked, in order; `None` without data.
    pub values: Vec<Option<f64>>,
}

impl Row {
    /// A row of `f` in `step` without values.
    pub fn empty(f: &Feature, step: &Step, columns: usize) -> Self {
        Self {
            feature_id: f.id.clone(),
            org_unit: f.org_unit.clone(),
            period: step.iso.clone(),
            dhis2_period: step.dhis2.clone(),
            values: vec![None; columns],
        }
    }
}

/// The whole result.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The dataset.
    pub dataset_id: String,
    /// The period type of the rows.
    pub period_type: String,
    /// The value columns (statistics, or `value`), in the order of each row's values.
    pub columns: Vec<String>,
    /// The rows, feature by feature within each period.
    pub rows: Vec<Row>,
    /// Periods left out because some of their source periods are missing.
    pub dropped_periods: Vec<String>,
    /// What a reader should know (features without data).
    pub warnings: Vec<String>,
}

/// `v` as a plain decimal: at most 6 decimals, no trailing zeros, never an exponent.
pub fn decimal(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

impl Table {
    /// The result document in `format`.
    ///
    /// # Errors
    /// Only if JSON cannot be written (never in practice).
    pub fn render(&self, format: &Format) -> Result<Output, String> {
        match format {
            Format::Json => {
                let rows: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|r| {
                        let mut o = Map::new();
                        o.insert("feature_id".into(), json!(r.feature_id));
                        o.insert("period".into(), json!(r.period));
                        for (c, v) in self.columns.iter().zip(&r.values) {
                            o.insert(c.clone(), v.map_or(Value::Null, |v| json!(v)));
                        }
                        Value::Object(o)
                    })
                    .collect();
                let doc = json!({
                    "dataset_id": self.dataset_id,
                    "period_type": self.period_type,
                    "rows": rows,
                    "dropped_periods": self.dropped_periods,
                    "warnings": self.warnings,
                });
                Ok(Output {
                    media_type: "application/json",
                    body: serde_json::to_vec(&doc).map_err(|e| e.to_string())?,
                })
            }
            Format::Csv => {
                let mut out = String::from("feature_id,period");
                for c in &self.columns {
                    out.push(',');
                    out.push_str(c);
                }
                out.push('\n');
                for r in &self.rows {
                    out.push_str(&csv_field(&r.feature_id));
                    out.push(',');
                    out.push_str(&r.period);
                    for v in &r.values {
                        out.push(',');
                        if let Some(v) = v {
                            out.push_str(&decimal(*v));
                        }
                    }
                    out.push('\n');
                }
                Ok(Output {
                    media_type: "text/csv",
                    body: out.into_bytes(),
                })
            }
            Format::Dhis2 { data_element } => {
                // One statistic; rows without a value are left out (DHIS2 stores no nulls).
                let values: Vec<Value> = self
                    .rows
                    .iter()
                    .filter_map(|r| {
                        r.values.first().copied().flatten().map(|v| {
                            json!({
                                "dataElement": data_element,
                                "period": r.dhis2_period,
                                "orgUnit": r.org_unit,
                                "value": decimal(v),
                            })
                        })
                    })
                    .collect();
                Ok(Output {
                    media_type: "application/json",
                    body: serde_json::to_vec(&json!({"dataValues": values}))
                        .map_err(|e| e.to_string())?,
                })
            }
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain() {
        assert_eq!(decimal(12.5), "12.5");
        assert_eq!(decimal(1e-7), "0");
        assert_eq!(decimal(123_456_789_012.0), "123456789012");
        assert_eq!(decimal(0.000_123_4), "0.000123");
        assert_eq!(decimal(-0.000_000_1), "0");
        assert_eq!(decimal(-3.25), "-3.25");
        assert!(!decimal(1e21).contains('e'));
    }

    fn table() -> Table {
        Table {
            dataset_id: "d".into(),
            period_type: "monthly".into(),
            columns: vec!["mean".into(), "max".into()],
            rows: vec![
                Row {
                    feature_id: "a,b".into(),
                    org_unit: "OU1".into(),
                    period: "2025-07".into(),
                    dhis2_period: "202507".into(),
                    values: vec![Some(1.5), Some(2.0)],
                },
                Row {
                    feature_id: "c".into(),
                    org_unit: "OU2".into(),
                    period: "2025-07".into(),
                    dhis2_period: "202507".into(),
                    values: vec![None, None],
                },
            ],
            dropped_periods: vec!["2025-08".into()],
            warnings: vec![],
        }
    }

    #[test]
    fn the_three_formats() {
        let t = table();
        let json: Value =
            serde_json::from_slice(&t.render(&Format::Json).expect("json").body).expect("JSON");
        assert_eq!(
            json["rows"][0],
            json!({"feature_id": "a,b", "period": "2025-07", "mean": 1.5, "max": 2.0})
        );
        assert_eq!(json["rows"][1]["mean"], Value::Null);
        assert_eq!(json["dropped_periods"], json!(["2025-08"]));
        let csv = String::from_utf8(t.render(&Format::Csv).expect("csv").body).expect("utf-8");
        assert_eq!(
            csv,
            "feature_id,period,mean,max\n\"a,b\",2025-07,1.5,2\nc,2025-07,,\n"
        );
        let one = Table {
            columns: vec!["mean".into()],
            ..t
        };
        let dv: Value = serde_json::from_slice(
            &one.render(&Format::Dhis2 {
                data_element: "DE1".into(),
            })
            .expect("dhis2")
            .body,
        )
        .expect("JSON");
        assert_eq!(
            dv,
            json!({"dataValues": [{"dataElement": "DE1", "period": "202507", "orgUnit": "OU1", "value": "1.5"}]})
        );
    }
}
