//! An external program that writes the files.

use super::*;

/// An external program (any language) that writes NetCDF or GeoTIFF files into a directory:
/// `params: {program, args?, pattern?, variable?, period?, timeout_seconds?}`. It is run as
/// `program --start S --end E --bbox W,S,E,N --dir DIR [args…]`; the files matching `pattern`
/// (default `*`, with `{year}`-style placeholders for files without a time axis) are then read
/// like the `file` provider's. A non-zero exit fails the run with the tail of its stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandProvider;

/// `params` of [`CommandProvider`], as given.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandInput {
    program: Option<String>,
    args: Option<Vec<String>>,
    pattern: Option<String>,
    variable: Option<String>,
    period: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug)]
/// The checked parameters of [`CommandProvider`].
pub struct CommandParams {
    program: String,
    args: Vec<String>,
    pattern: String,
    variable: Option<String>,
    period: Option<String>,
    timeout: std::time::Duration,
}

#[async_trait]
impl TypedProvider for CommandProvider {
    const NAME: &'static str = "command";
    type Params = CommandParams;

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: CommandInput = params::decode("command", &template.ingestion.params)?;
        let program = p.program.ok_or_else(|| {
            ParamError::invalid("param 'program' (the executable to run) is required")
        })?;
        let args = p.args.unwrap_or_default();
        let pattern = p.pattern.unwrap_or_else(|| "*".into());
        if pattern.contains("..") || pattern.starts_with('/') {
            return Err(ParamError::invalid(
                "param 'pattern' is a file name pattern inside the output directory",
            ));
        }
        if let Some(period) = &p.period {
            Period::parse(template.period_type, period)
                .map_err(|e| ParamError::invalid(format!("param 'period': {e}")))?;
        }
        let timeout = p.timeout_seconds.unwrap_or(3600);
        Ok(CommandParams {
            program,
            args,
            pattern,
            variable: p.variable,
            period: p.period,
            timeout: std::time::Duration::from_secs(timeout.max(1)),
        })
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "command";
        let err = |retry: Retry, message: String| ProviderError {
            provider: NAME,
            message,
            retry,
        };
        let c = params;
        let end = req.end.ok_or_else(|| {
            err(
                Retry::Permanent,
                "the command provider needs an end period: give `end` in the request".into(),
            )
        })?;
        let program = if c.program.contains('/') && !Path::new(&c.program).is_absolute() {
            req.base_dir.join(&c.program)
        } else {
            PathBuf::from(&c.program)
        };
        let dir = req.env.scratch_dir(&format!("command/{:016x}", rand_id()));
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            err(
                Retry::Transient,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let b = req.extent.bbox;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("--start")
            .arg(req.start.canonical())
            .arg("--end")
            .arg(end.canonical())
            .arg("--bbox")
            .arg(format!(
                "{},{},{},{}",
                b.west(),
                b.south(),
                b.east(),
                b.north()
            ))
            .arg("--dir")
            .arg(&dir)
            .args(&c.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let shown = program.display().to_string();
        let child = cmd
            .spawn()
            .map_err(|e| err(Retry::Permanent, format!("cannot run {shown}: {e}")))?;
        let out = match tokio::time::timeout(c.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(err(Retry::Transient, format!("{shown}: {e}"))),
            Err(_) => {
                return Err(err(
                    Retry::Transient,
                    format!("{shown} timed out after {} s", c.timeout.as_secs()),
                ));
            }
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(err(
                Retry::Permanent,
                format!("{shown} exited with {}: {}", out.status, tail.trim()),
            ));
        }
        let kind = req.template.period_type;
        let fixed = c
            .period
            .map(|p| {
                Period::parse(kind, &p)
                    .map_err(|e| err(Retry::Permanent, format!("param 'period': {e}")))
            })
            .transpose()?;
        let full = dir.join(&c.pattern).to_string_lossy().into_owned();
        locate_files(
            NAME,
            full,
            c.variable.or_else(|| Some(req.template.variable.clone())),
            fixed,
            kind,
            req.start,
            Some(end),
        )
        .await
    }
}
