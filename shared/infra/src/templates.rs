//! The template catalogue: built-in templates compiled into the binary plus `templates_dir/*.yaml`,
//! parsed and validated at start-up with errors that name the file and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use climate_domain::TemplateId;
use climate_domain::template::{DatasetTemplate, ParamError};

/// YAML of the built-in templates.
pub const BUILTIN_TEMPLATES: &str = include_str!("../templates/builtin.yaml");

/// A template with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedTemplate {
    /// The template.
    pub template: DatasetTemplate,
    /// Directory its relative paths resolve against.
    pub base_dir: PathBuf,
    /// `built-in` or the file path.
    pub origin: String,
}

/// Why the catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct CatalogError {
    /// File path or `built-in templates`.
    pub origin: String,
    /// What is wrong, naming the field.
    pub message: String,
}

/// All templates of an instance, by id: the declared ones, and the templates derived from
/// each (`{id}_{period type}_{method}`, see `DatasetTemplate::derived`), which resolve by id
/// but are not listed.
#[derive(Debug, Clone, Default)]
pub struct TemplateCatalog {
    templates: BTreeMap<TemplateId, LoadedTemplate>,
    derived: BTreeMap<TemplateId, LoadedTemplate>,
}

impl TemplateCatalog {
    /// Loads the built-ins (relative paths resolve against `builtin_base`) and every
    /// `*.yaml`/`*.yml` in `templates_dir` (relative paths resolve against `custom_base`, the
    /// config file's directory), checking each template with `check` (provider parameters).
    ///
    /// # Errors
    /// [`CatalogError`] naming the file and field of the first invalid template.
    pub fn load(
        builtin_base: &Path,
        templates_dir: Option<&Path>,
        custom_base: &Path,
        check: &dyn Fn(&DatasetTemplate) -> Result<(), ParamError>,
    ) -> Result<Self, CatalogError> {
        let mut catalog = Self::default();
        catalog.add_yaml("built-in templates", BUILTIN_TEMPLATES, builtin_base, check)?;
        if let Some(dir) = templates_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| CatalogError {
                origin: dir.display().to_string(),
                message: format!("cannot read templates_dir: {e}"),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for file in files {
                let origin = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|e| CatalogError {
                    origin: origin.clone(),
                    message: format!("cannot read: {e}"),
                })?;
                catalog.add_yaml(&origin, &text, custom_base, check)?;
            }
        }
        catalog.derive();
        Ok(catalog)
    }

    /// Derives every resampling of every declared template that can be resampled; a declared
    /// template of the same id wins.
    fn derive(&mut self) {
        let mut derived = BTreeMap::new();
        for l in self.templates.values() {
            for target in climate_domain::template::TARGETS {
                for method in climate_domain::template::METHODS {
                    if let Ok(t) = l.template.derived(target, method)
                        && !self.templates.contains_key(&t.id)
                    {
                        derived.insert(
                            t.id.clone(),
                            LoadedTemplate {
                                template: t,
                                base_dir: l.base_dir.clone(),
                                origin: format!("derived from {}", l.template.id),
                            },
                        );
                    }
                }
            }
        }
        self.derived = derived;
    }

    /// The templates derived from `source`.
    pub fn derived_from<'a>(
        &'a self,
        source: &'a TemplateId,
    ) -> impl Iterator<Item = &'a LoadedTemplate> + 'a {
        self.derived
            .values()
            .filter(move |l| l.template.derived_from().as_ref() == Some(source))
    }

    /// A catalogue of the templates in one YAML document (a list or a single template), with
    /// relative paths resolving against `.` and no provider check: the loader's parsing and
    /// validation alone, for tools and fuzzing.
    ///
    /// # Errors
    /// [`CatalogError`] naming `origin` and the field of the first invalid template.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, CatalogError> {
        let mut catalog = Self::default();
        catalog.add_yaml(origin, text, Path::new("."), &|_| Ok(()))?;
        catalog.derive();
        Ok(catalog)
    }

    fn add_yaml(
        &mut self,
        origin: &str,
        text: &str,
        base_dir: &Path,
        check: &dyn Fn(&DatasetTemplate) -> Result<(), ParamError>,
    ) -> Result<(), CatalogError> {
        let err = |message: String| CatalogError {
            origin: origin.to_owned(),
            message,
        };
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| err(format!("invalid YAML: {e}")))?;
        // A file holds a list of templates or a single one.
        let (items, listed) = match value {
            serde_json::Value::Array(items) => (items, true),
            serde_json::Value::Null => (Vec::new(), true),
            other => (vec![other], false),
        };
        for (i, item) in items.into_iter().enumerate() {
            let at = if listed {
                format!("[{i}]")
            } else {
                String::new()
            };
            let template: DatasetTemplate =
                serde_path_to_error::deserialize(item).map_err(|e| {
                    let path = e.path().to_string();
                    let path = if path == "." { String::new() } else { path };
                    let sep = if at.is_empty() || path.is_empty() {
                        ""
                    } else {
                        "."
                    };
                    err(format!("template {at}{sep}{path}: {}", e.into_inner()))
                })?;
            template.validate().map_err(|e| err(e.to_string()))?;
            check(&template)
                .map_err(|m| err(format!("template '{}': ingestion.params: {m}", template.id)))?;
            if let Some(prev) = self.templates.get(&template.id) {
                return Err(err(format!(
                    "template id '{}' is already defined in {}",
                    template.id, prev.origin
                )));
            }
            self.templates.insert(
                template.id.clone(),
                LoadedTemplate {
                    template,
                    base_dir: base_dir.to_owned(),
                    origin: origin.to_owned(),
                },
            );
        }
        Ok(())
    }

    /// One template, declared or derived.
    pub fn get(&self, id: &TemplateId) -> Option<&LoadedTemplate> {
        self.templates.get(id).or_else(|| self.derived.get(id))
    }

    /// Looks a template up by its textual id.
    pub fn get_str(&self, id: &str) -> Option<&LoadedTemplate> {
        TemplateId::new(id).ok().and_then(|id| self.get(&id))
    }

    /// The declared templates, by id.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedTemplate> {
        self.templates.values()
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &DatasetTemplate) -> Result<(), ParamError> {
        Ok(())
    }

    #[test]
    fn builtins_load() {
        let c = TemplateCatalog::load(Path::new("/data"), None, Path::new("/cfg"), &ok)
            .expect("built-ins valid");
        assert!(c.get_str("sample_era5land_t2m_daily").is_some());
        assert!(c.len() >= 2);
        let monthly = c
            .get_str("sample_era5land_t2m_daily_monthly_mean")
            .expect("a derived template resolves");
        assert_eq!(monthly.origin, "derived from sample_era5land_t2m_daily");
        assert!(
            c.iter().all(|l| l.template.derived_from().is_none()),
            "derived templates are not listed"
        );
        let source = TemplateId::new("sample_era5land_t2m_daily").expect("id");
        assert_eq!(
            c.derived_from(&source).count(),
            3 * 4,
            "weekly, monthly and yearly, by four methods"
        );
    }

    #[test]
    fn errors_name_file_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            "- id: mine\n  name: Mine\n  variable: v\n  period_type: fortnightly\n  units: mm\n  ingestion: {provider: file}\n",
        )
        .expect("write");
        let e = TemplateCatalog::load(Path::new("/data"), Some(dir.path()), dir.path(), &ok)
            .expect_err("bad period type");
        let msg = e.to_string();
        assert!(msg.contains("bad.yaml"), "{msg}");
        assert!(msg.contains("[0].period_type"), "{msg}");
    }

    #[test]
    fn provider_checks_and_duplicates_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("dup.yaml"),
            "id: sample_era5land_t2m_daily\nname: Dup\nvariable: v\nperiod_type: daily\nunits: mm\ningestion: {provider: file}\n",
        )
        .expect("write");
        let e = TemplateCatalog::load(Path::new("/data"), Some(dir.path()), dir.path(), &ok)
            .expect_err("duplicate");
        assert!(e.to_string().contains("already defined in built-in"), "{e}");

        let reject = |_: &DatasetTemplate| Err(ParamError::invalid("param 'path' is required"));
        let e = TemplateCatalog::load(Path::new("/data"), None, Path::new("/cfg"), &reject)
            .expect_err("rejected");
        assert!(
            e.to_string().contains("ingestion.params: param 'path'"),
            "{e}"
        );
    }
}
