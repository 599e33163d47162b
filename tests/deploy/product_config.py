"""The product's configuration model, read from its Rust source, for the deployment checks.

The chart's ConfigMap and the compose stack's configuration file must only use keys that the
product accepts (its structs are `deny_unknown_fields`, so an unknown key stops every process).
Instead of a hand-kept list, the key sets and field types are parsed from
shared/infra/src/config/mod.rs and shared/domain/src/extent.rs, so the checks follow the product.

Also here: the product's `${VAR}` / `${VAR:-default}` / `$$` substitution and its
`CLIMATE_API__SECTION__KEY` environment overrides, re-implemented to the same rules, so a file
can be checked as the process would read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    REPO / "shared/infra/src/config/mod.rs",
    REPO / "shared/domain/src/extent.rs",
]
ENV_PREFIX = "CLIMATE_API__"


@dataclass
class Field:
    name: str
    rust_type: str
    required: bool


@dataclass
class Struct:
    name: str
    fields: dict[str, Field] = field(default_factory=dict)


def _struct_bodies(text: str) -> dict[str, str]:
    """`pub struct Name { … }` bodies (brace-matched) by struct name."""
    out = {}
    for m in re.finditer(r"pub struct (\w+)\s*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out[m.group(1)] = text[m.end() : i - 1]
    return out


def _parse_fields(body: str) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    attrs: list[str] = []
    # Attributes may span lines; collect `#[…]` blocks and `pub name: Type,` declarations.
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("#["):
            attrs.append(line)
            continue
        m = re.match(r"pub (\w+):\s*(.+?),?$", line)
        if not m:
            continue
        name, rust_type = m.group(1), m.group(2).rstrip(",").strip()
        serde = " ".join(a for a in attrs if a.startswith("#[serde"))
        attrs = []
        if re.search(r"\bskip\b", serde):
            continue
        has_default = "default" in serde
        optional = rust_type.startswith("Option<")
        fields[name] = Field(name, rust_type, required=not (has_default or optional))
    return fields


def load_model(sources: list[Path] = SOURCES) -> dict[str, Struct]:
    """Every `pub struct` of the configuration sources, with its serde fields."""
    structs: dict[str, Struct] = {}
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for name, body in _struct_bodies(text).items():
            fields = _parse_fields(body)
            # Structs without public fields (Bbox) are (de)serialized as scalars or arrays.
            if fields:
                structs[name] = Struct(name, fields)
    if "Config" not in structs or not structs["Config"].fields:
        raise RuntimeError(f"could not find `pub struct Config` in {sources[0]}")
    return structs


def _inner(rust_type: str, wrapper: str) -> str | None:
    m = re.fullmatch(rf"(?:[\w:]*::)?{wrapper}<(.+)>", rust_type)
    return m.group(1).strip() if m else None


def _short(rust_type: str) -> str:
    return rust_type.split("::")[-1]


def check(value: Any, rust_type: str, model: dict[str, Struct], path: str, errors: list[str]) -> None:
    """Checks `value` against a Rust type of the model: unknown keys, missing required keys and
    scalar kinds. Appends messages naming the key path."""
    if (inner := _inner(rust_type, "Option")) is not None:
        if value is not None:
            check(value, inner, model, path, errors)
        return
    if (inner := _inner(rust_type, "Vec")) is not None:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check(item, inner, model, f"{path}[{i}]", errors)
        return
    if (inner := _inner(rust_type, "BTreeMap")) is not None:
        key_type, _, value_type = inner.partition(",")
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        for k, v in value.items():
            check(v, value_type.strip(), model, f"{path}.{k}", errors)
        return
    short = _short(rust_type)
    if short in model:
        struct = model[short]
        if not isinstance(value, dict):
            errors.append(f"{path or '<root>'}: expected a section ({short}), got {type(value).__name__}")
            return
        for key in value:
            if key not in struct.fields:
                errors.append(
                    f"{path + '.' if path else ''}{key}: unknown key (the product accepts "
                    f"{', '.join(sorted(struct.fields))})"
                )
        for f in struct.fields.values():
            if f.required and f.name not in value:
                errors.append(f"{path + '.' if path else ''}{f.name}: missing required key")
        for key, v in value.items():
            if key in struct.fields:
                check(v, struct.fields[key].rust_type, model, f"{path + '.' if path else ''}{key}", errors)
        return
    # Scalars (and the domain's newtypes, which are strings or number arrays).
    if short in {"u16", "u32", "u64", "usize", "i32", "i64"}:
        if isinstance(value, bool) or not isinstance(value, int) or (short[0] == "u" and value < 0):
            errors.append(f"{path}: expected a {'non-negative ' if short[0] == 'u' else ''}integer, got {value!r}")
    elif short in {"f32", "f64"}:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {value!r}")
    elif short == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {value!r}")
    elif short in {"String", "PathBuf", "ExtentId"}:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
    elif short == "Bbox":
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(x, (int, float)) for x in value)):
            errors.append(f"{path}: expected [west, south, east, north], got {value!r}")
    elif short == "Scope":
        if value not in ("read", "ingest", "admin"):
            errors.append(f"{path}: expected read, ingest or admin, got {value!r}")


def substitute(text: str, env: dict[str, str]) -> str:
    """The product's substitution: `$$` is a literal `$`; `${VAR}` needs VAR set (non-empty);
    `${VAR:-default}` falls back. Applies to the whole text, comments included. Raises
    ValueError like the product does."""
    out: list[str] = []
    rest = text
    while (pos := rest.find("$")) >= 0:
        out.append(rest[:pos])
        after = rest[pos + 1 :]
        if after.startswith("$"):
            out.append("$")
            rest = after[1:]
        elif after.startswith("{"):
            body = after[1:]
            end = body.find("}")
            if end < 0:
                raise ValueError("unterminated ${…} substitution")
            expr = body[:end]
            name, sep, default = expr.partition(":-")
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(f"invalid variable name in ${{{expr}}}")
            value = env.get(name) or None
            if value is not None:
                out.append(value)
            elif sep:
                out.append(default)
            else:
                raise ValueError(f"environment variable {name} is not set")
            rest = body[end + 1 :]
        else:
            out.append("$")
            rest = after
    out.append(rest)
    return "".join(out)


def variables(text: str) -> list[tuple[str, bool]]:
    """The `${VAR}` references of a text as (name, has_default), ignoring `$$`."""
    found = []
    for m in re.finditer(r"\$\$|\$\{([^}:]*)(:-)?[^}]*\}", text):
        if m.group(0) != "$$":
            found.append((m.group(1), m.group(2) is not None))
    return found


def apply_overrides(config: dict, env: dict[str, Any]) -> dict:
    """Applies CLIMATE_API__… overrides (values as given) the way the product does: each
    `__`-separated part, lower-cased, names a section, the last one the key."""
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in path):
            raise ValueError(f"{name}: malformed variable name")
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}: parent of '{part}' is not a section")
        node[path[-1]] = value
    return config


def validate_config(config: Any, model: dict[str, Struct] | None = None) -> list[str]:
    """Key and type errors of a parsed configuration, plus the product's own cross-checks."""
    model = model or load_model()
    errors: list[str] = []
    if not isinstance(config, dict):
        return [f"configuration is not a mapping: {config!r}"]
    check(config, "Config", model, "", errors)
    extents = config.get("extents") or []
    if not extents:
        errors.append("extents: configure at least one extent")
    ids = [e.get("extent_id") for e in extents if isinstance(e, dict)]
    if len(ids) != len(set(ids)):
        errors.append(f"extents: duplicate extent ids {ids}")
    if config.get("default_extent") and config["default_extent"] not in ids:
        errors.append(f"default_extent: '{config['default_extent']}' is not one of {ids}")
    bind = (config.get("server") or {}).get("bind")
    if bind is not None and not re.fullmatch(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}", str(bind)):
        errors.append(f"server.bind: '{bind}' is not HOST:PORT")
    for section, schemes in {
        "database": ("sqlite", "postgres", "postgresql"),
        "queue": ("memory", "amqp", "amqps"),
        "store": ("file", "s3", "memory"),
        "cache": ("redis", "rediss"),
    }.items():
        url = (config.get(section) or {}).get("url")
        if isinstance(url, str) and not url.startswith(tuple(f"{s}:" for s in schemes)):
            errors.append(f"{section}.url: '{url}' does not start with one of {schemes}")
    return errors


def default_binary() -> Path | None:
    """A built `climate-api` (release, else debug), if any."""
    for profile in ("release", "debug"):
        path = REPO / "target" / profile / "climate-api"
        if path.exists():
            return path
    return None


def placeholder_env(names: list[str]) -> dict[str, str]:
    """Stand-ins for credentials that come from Secrets, so the product can load a
    configuration: a throw-away SQLite database, and URLs of the right scheme."""
    env = {}
    for name in names:
        if name == "CLIMATE_API__DATABASE__URL":
            continue  # set by product_accepts
        if name.endswith("__QUEUE__URL"):
            env[name] = "amqp://user:placeholder@localhost:5672/%2f"
        elif name.endswith("__CACHE__URL"):
            env[name] = "redis://localhost:6379"
        else:
            env[name] = "placeholder"
    return env


def product_accepts(binary: Path, config_text: str, env: dict[str, str]) -> None:
    """Loads the configuration with the real binary (`climate-api migrate`, against a fresh
    SQLite file, so nothing outside a temporary directory is touched). Raises AssertionError
    with the product's message when it refuses the file."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="climate-config-") as tmp:
        path = Path(tmp) / "climate-api.yaml"
        path.write_text(config_text, encoding="utf-8")
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k != "CLIMATE_API_CONFIG"}
        run_env.update(env)
        run_env.update({
            "CLIMATE_API__DATABASE__URL": f"sqlite://{tmp}/check.db",
            "CLIMATE_API__DATA_DIR": f"{tmp}/data",
            "CLIMATE_API_LOG_FORMAT": "text",
            "OTEL_SDK_DISABLED": "true",
            "RUST_BACKTRACE": "0",
        })
        r = subprocess.run([str(binary), "migrate", "--config", str(path)], env=run_env, cwd=tmp,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            lines = (r.stderr + r.stdout).strip().splitlines()
            errors = [line for line in lines if "Error" in line or "error" in line] or lines[-1:]
            raise AssertionError(f"{binary.name} refused it: {' | '.join(errors[:3])}")
