//! Derived templates: a managed dataset resampled in time (the monthly sums of a daily
//! dataset, say) is ingested like any other, from a template derived from its source's. The
//! derived template reads the platform's own stored dataset (provider [`DATASET_PROVIDER`])
//! and aggregates its periods ([`Aggregate`]: complete periods only, a cell missing in any
//! source period missing in the result); it is synced as soon as its source covers a new
//! period.

use super::{
    Aggregate, AggregateMethod, DatasetTemplate, IngestionSpec, SyncExecution, SyncKind, SyncSpec,
    TemplateError,
};
use crate::{PeriodType, TemplateId};

/// The provider of derived templates: the platform's own stored dataset of the source
/// template, for the same extent.
pub const DATASET_PROVIDER: &str = "dataset";

/// The period types a dataset may be resampled to.
pub const TARGETS: [PeriodType; 4] = [
    PeriodType::Daily,
    PeriodType::Weekly,
    PeriodType::Monthly,
    PeriodType::Yearly,
];

/// The methods a dataset may be resampled with.
pub const METHODS: [AggregateMethod; 4] = [
    AggregateMethod::Mean,
    AggregateMethod::Sum,
    AggregateMethod::Min,
    AggregateMethod::Max,
];

impl DatasetTemplate {
    /// The template of this one's periods resampled to `target` by `method`: id
    /// `{id}_{target}_{method}` (e.g. `chirps_daily_monthly_sum`), the same variable, units
    /// and display, read from the stored dataset of this template and kept current as it grows.
    ///
    /// # Errors
    /// [`TemplateError`] when `target` is not coarser than this template's period type, its
    /// periods do not nest in `target`'s (weeks in months), the id would be too long, or this
    /// template is not synced in time (a static or release dataset has nothing to resample).
    pub fn derived(
        &self,
        target: PeriodType,
        method: AggregateMethod,
    ) -> Result<Self, TemplateError> {
        let err = |field: &str, message: String| TemplateError {
            template: self.id.to_string(),
            field: field.to_owned(),
            message,
        };
        if self.sync.kind != SyncKind::Temporal {
            return Err(err(
                "sync.kind",
                "only a dataset synced in time (kind: temporal) can be resampled".into(),
            ));
        }
        let id = format!("{}_{}_{}", self.id, target.as_str(), method.as_str());
        let id = TemplateId::new(&id).map_err(|e| err("id", format!("'{id}': {e}")))?;
        let derived = Self {
            id,
            name: format!("{}, {} {}", self.name, target.as_str(), method.as_str()),
            short_name: self.short_name.clone(),
            description: Some(format!(
                "The {} {} of '{}' ({} periods), derived on this instance and kept current as it grows. {}",
                target.as_str(),
                method.as_str(),
                self.id,
                self.period_type.as_str(),
                self.description.as_deref().unwrap_or_default()
            )),
            variable: self.variable.clone(),
            long_name: Some(format!(
                "{} ({} {})",
                self.long_name(),
                target.as_str(),
                method.as_str()
            )),
            period_type: target,
            units: self.units.clone(),
            source: self.source.clone(),
            source_url: self.source_url.clone(),
            resolution: self.resolution.clone(),
            ingestion: IngestionSpec {
                provider: DATASET_PROVIDER.to_owned(),
                params: serde_json::Map::from_iter([(
                    "template".to_owned(),
                    serde_json::Value::String(self.id.to_string()),
                )]),
            },
            transforms: Vec::new(),
            sync: SyncSpec {
                kind: SyncKind::Temporal,
                execution: Some(SyncExecution::Append),
                // What the stored source covers whole is what is "published".
                availability: Some(crate::sync::Availability {
                    probe: true,
                    ..crate::sync::Availability::default()
                }),
                schedule: Some("as_available".to_owned()),
            },
            chunks: None,
            display: self.display.clone(),
            resampling: self.resampling,
            aggregate: Some(Aggregate {
                from: self.period_type,
                method,
            }),
        };
        derived.validate()?;
        Ok(derived)
    }

    /// The template a derived template reads (`None` for any other).
    pub fn derived_from(&self) -> Option<TemplateId> {
        if self.ingestion.provider != DATASET_PROVIDER {
            return None;
        }
        self.ingestion
            .params
            .get("template")?
            .as_str()
            .and_then(|id| TemplateId::new(id).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily() -> DatasetTemplate {
        serde_json::from_value(serde_json::json!({
            "id": "chirps_daily", "name": "CHIRPS daily", "variable": "precip",
            "period_type": "daily", "units": "mm", "ingestion": {"provider": "file"},
            "transforms": ["kelvin_to_celsius"], "sync": {"kind": "temporal", "execution": "append"}
        }))
        .expect("a template")
    }

    #[test]
    fn a_derived_template_reads_the_stored_source_and_aggregates_it() {
        let t = daily()
            .derived(PeriodType::Monthly, AggregateMethod::Sum)
            .expect("monthly sums of days");
        assert_eq!(t.id.as_str(), "chirps_daily_monthly_sum");
        assert_eq!(t.period_type, PeriodType::Monthly);
        assert_eq!(
            t.aggregate,
            Some(Aggregate {
                from: PeriodType::Daily,
                method: AggregateMethod::Sum
            })
        );
        assert!(
            t.transforms.is_empty(),
            "the stored values are transformed already"
        );
        assert_eq!(
            t.derived_from().map(|s| s.to_string()).as_deref(),
            Some("chirps_daily")
        );
        assert_eq!(daily().derived_from(), None);
        assert_eq!(t.sync.schedule.as_deref(), Some("as_available"));
        assert!(
            t.sync.availability.is_some_and(|a| a.probe),
            "the source's coverage limits syncs"
        );
    }

    #[test]
    fn only_coarser_nesting_periods_of_temporal_datasets() {
        let d = daily();
        assert!(d.derived(PeriodType::Daily, AggregateMethod::Mean).is_err());
        assert!(
            d.derived(PeriodType::Hourly, AggregateMethod::Mean)
                .is_err()
        );
        let weekly = d
            .derived(PeriodType::Weekly, AggregateMethod::Mean)
            .expect("weeks");
        let e = weekly
            .derived(PeriodType::Monthly, AggregateMethod::Mean)
            .expect_err("weeks do not nest in months");
        assert!(e.message.contains("weeks do not fit"), "{e}");
        let mut fixed = daily();
        fixed.sync.kind = SyncKind::Static;
        assert!(
            fixed
                .derived(PeriodType::Yearly, AggregateMethod::Sum)
                .is_err()
        );
    }
}
