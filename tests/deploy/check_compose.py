#!/usr/bin/env python3
"""Checks the container image recipe and the compose stack, as far as a machine without a Docker
engine can.

    .venv/bin/python tests/deploy/check_compose.py [--binary PATH ...] [-v]

deploy/compose.yaml
- interpolated the way compose does (defaults only: no .env needed), then validated against the
  Compose Specification JSON schema (the copy vendored by the check-jsonschema package);
- the services the stack promises, their dependencies (migrations and the bucket job as
  completed one-shots, infrastructure as healthy), two workers, healthchecks, files it mounts,
  the OpenTelemetry collector and its configuration;
- deploy/climate-api.compose.yaml as each service's process would read it: every variable it
  uses set in that service's environment, only keys the product accepts (parsed from config.rs,
  and, when a climate-api binary is built, loaded by it: `climate-api migrate` on a throw-away
  SQLite file).

deploy/Dockerfile
- multi-stage; the builder runs scripts/build-release.sh (the same cargo command CI runs); the
  runtime stage runs as a numeric non-root user with a HEALTHCHECK and an entrypoint that knows
  every role compose and the chart use;
- the runtime stage installs only the Debian packages whose shared libraries the binaries load:
  `ldd` of a built binary (--binary, default: target/release or target/debug) mapped to packages
  with `dpkg -S`. Skipped, and said so, when no binary has been built.

Exits 1 with one line per failure; prints "N passed, 0 failed" on success.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import product_config  # noqa: E402
from checks import Checks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
BUILD_SCRIPT = REPO / "scripts/build-release.sh"
CARGO_BUILD = "cargo build --release --locked -p climate-api -p climate-worker -p climate-scheduler --bins"
APP_SERVICES = ("api", "worker", "scheduler")
INFRA_SERVICES = ("postgres", "rabbitmq", "redis", "minio")
PRODUCT_BINARY: Path | None = None  # set in main(): a built climate-api, to load the config with
# Part of debian:bookworm-slim (Essential or required by apt), never to be installed again.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0"}
# Runtime packages that ship no library the binaries link: what each is for.
NON_LIBRARY_PACKAGES = {"ca-certificates": "HTTPS to data providers", "tini": "PID 1"}

try:
    import jsonschema
except ImportError:  # pragma: no cover
    sys.exit("jsonschema is missing: run scripts/setup-python.sh")



# --- compose ----------------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str], missing: list[str]) -> Any:
    """Compose's interpolation of every string in the document ($$, ${V}, ${V:-d}, ${V-d},
    ${V:?e}, ${V:+r}, $V), with `env` as the environment."""
    if isinstance(value, dict):
        return {interpolate(k, env, missing): interpolate(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, missing) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        val = env.get(name)
        unset_or_empty = val is None or (op and op.startswith(":") and val == "")
        if op in (":-", "-"):
            return arg if unset_or_empty else val
        if op in (":?", "?"):
            if unset_or_empty:
                missing.append(f"{name} ({arg})")
                return ""
            return val
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        if val is None:
            missing.append(name)
            return ""
        return val

    return _COMPOSE_VAR.sub(repl, value)


def load_compose() -> tuple[dict, list[str]]:
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    missing: list[str] = []
    return interpolate(raw, {}, missing), missing


def compose_schema() -> dict:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(ref.read_text(encoding="utf-8"))


def depends(svc: dict) -> dict[str, str]:
    """depends_on as {service: condition} (short syntax means service_started)."""
    d = svc.get("depends_on", {})
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in d.items()}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def bind_mounts(svc: dict) -> list[tuple[str, str]]:
    """(source, target) of the service's bind mounts with a relative or absolute host path."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) >= 2 and (parts[0].startswith((".", "/", "~"))):
                out.append((parts[0], parts[1]))
        elif isinstance(v, dict) and v.get("type") == "bind":
            out.append((v["source"], v["target"]))
    return out


def duration_seconds(text: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total


def check_compose(c: Checks, roles: set[str]) -> None:
    loaded = c.run("compose.yaml parses and interpolates with defaults only", lambda: load_compose())
    if loaded is None:
        return
    doc, missing = loaded
    c.check("compose.yaml: every variable has a default (runs without a .env file)", not missing, ", ".join(missing))
    example = DEPLOY / ".env.example"
    if example.exists():
        text = COMPOSE.read_text(encoding="utf-8")
        names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(encoding="utf-8"), re.M)
        unused = [n for n in names if not re.search(r"\$\{" + n + r"[:}?+-]", text)]
        c.check(".env.example names only variables compose.yaml uses", bool(names) and not unused, f"unused: {unused}")

    def schema() -> str:
        sch = compose_schema()
        validator = jsonschema.Draft202012Validator(sch)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
        return "compose-spec schema from check-jsonschema"

    c.run("compose.yaml valid against the Compose Specification schema", schema)
    services: dict[str, dict] = doc.get("services", {})

    expected = set(INFRA_SERVICES) | set(APP_SERVICES) | {"migrate", "create-bucket", "otel-collector"}
    c.check("services: postgres, rabbitmq, redis, minio, create-bucket, migrate, api, worker, scheduler, otel-collector",
            expected <= set(services), f"missing {sorted(expected - set(services))}")

    unknown = {f"{name} -> {dep}" for name, svc in services.items() for dep in depends(svc) if dep not in services}
    c.check("every depends_on target exists", not unknown, ", ".join(sorted(unknown)))

    for name in APP_SERVICES:
        d = depends(services.get(name, {}))
        c.check(f"{name} starts after migrate completed successfully", d.get("migrate") == "service_completed_successfully", str(d.get("migrate")))
        c.check(f"{name} starts after the bucket exists", d.get("create-bucket") == "service_completed_successfully", str(d.get("create-bucket")))
        for infra in INFRA_SERVICES:
            c.check(f"{name} waits for {infra} to be healthy", d.get(infra) == "service_healthy", str(d.get(infra)))
    c.check("migrate waits for a healthy postgres", depends(services.get("migrate", {})).get("postgres") == "service_healthy")

    for infra in INFRA_SERVICES:
        hc = services.get(infra, {}).get("healthcheck", {})
        c.check(f"{infra} has a healthcheck", bool(hc.get("test")) and not hc.get("disable"), str(hc.get("test")))
    c.check("rabbitmq runs the management image (HTTP API for KEDA-style queue depth)",
            "management" in services.get("rabbitmq", {}).get("image", ""))

    worker = services.get("worker", {})
    c.check("two workers (deploy.replicas: 2)", worker.get("deploy", {}).get("replicas") == 2, str(worker.get("deploy")))

    for one_shot in ("migrate", "create-bucket"):
        svc = services.get(one_shot, {})
        c.check(f"{one_shot} is a one-shot (restart: \"no\")", str(svc.get("restart", "no")) == "no", str(svc.get("restart")))
    c.check("migrate runs `migrate`", services.get("migrate", {}).get("command") == ["migrate"])
    for name in APP_SERVICES:
        cmd = services.get(name, {}).get("command")
        c.check(f"{name} runs the `{name}` role of the entrypoint", cmd == [name] and name in roles, str(cmd))

    # Mounted files exist, relative to the compose file's directory.
    for name, svc in services.items():
        for source, target in bind_mounts(svc):
            path = (DEPLOY / source).resolve() if not source.startswith("/") else Path(source)
            c.check(f"{name}: mounted file {source} exists", path.exists(), str(path))
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = (DEPLOY / build.get("context", ".")).resolve()
            c.check(f"{name}: build context is the repository root and the Dockerfile exists",
                    ctx == REPO and (ctx / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE)

    # The bucket job creates the bucket the store URL names.
    bucket_job = services.get("create-bucket", {})
    bucket_env = environment(bucket_job)
    bucket_cmd = " ".join(bucket_job.get("command", [])) if isinstance(bucket_job.get("command"), list) else str(bucket_job.get("command"))
    c.check("create-bucket waits for a healthy object store", depends(bucket_job).get("minio") == "service_healthy")
    c.check("create-bucket makes the bucket idempotently (mc mb --ignore-existing)", "mb --ignore-existing" in bucket_cmd, bucket_cmd)

    # The configuration file as each Climate API process reads it.
    configs: dict[str, dict] = {}
    for name, svc in services.items():
        env = environment(svc)
        if "CLIMATE_API_CONFIG" not in env:
            continue
        target = env["CLIMATE_API_CONFIG"]
        sources = [s for s, t in bind_mounts(svc) if t == target]
        if not c.check(f"{name}: CLIMATE_API_CONFIG {target} is a mounted file", len(sources) == 1):
            continue
        text = (DEPLOY / sources[0]).read_text(encoding="utf-8")
        needed = sorted({v for v, has_default in product_config.variables(text) if not has_default})
        unset = [v for v in needed if not env.get(v)]
        c.check(f"{name}: every variable {sources[0]} needs is set ({', '.join(needed)})", not unset, f"unset: {unset}")

        def parse(text: str = text, env: dict = env) -> dict:
            cfg = yaml.safe_load(product_config.substitute(text, env))
            cfg = product_config.apply_overrides(cfg, {k: v for k, v in env.items() if k.startswith(product_config.ENV_PREFIX)})
            errors = product_config.validate_config(cfg)
            assert not errors, "; ".join(errors)
            return cfg

        cfg = c.run(f"{name}: configuration uses only keys and types the product accepts (config.rs)", parse)
        if PRODUCT_BINARY and name == "migrate":
            c.run(f"{PRODUCT_BINARY.name} itself loads {sources[0]} with the containers' environment",
                  lambda text=text, env=env: product_config.product_accepts(PRODUCT_BINARY, text, env))
        if cfg is not None:
            configs[name] = cfg
            c.check(f"{name}: configuration is distributed (queue.url amqp, postgres, s3, redis)",
                    cfg["queue"]["url"].startswith("amqp") and cfg["database"]["url"].startswith("postgres")
                    and cfg["store"]["url"].startswith("s3://") and cfg["cache"]["url"].startswith("redis"))
            c.check(f"{name}: read-only root filesystem with tmpfs /tmp and data_dir",
                    svc.get("read_only") is True and {"/tmp", cfg["data_dir"]} <= set(svc.get("tmpfs", [])),
                    str(svc.get("tmpfs")))
            bucket = re.match(r"s3://([^/]+)", cfg["store"]["url"]).group(1)
            c.check(f"{name}: store bucket '{bucket}' is the one create-bucket makes",
                    bucket_env.get("S3_BUCKET") == bucket and "$${S3_BUCKET}" not in bucket_cmd, f"{bucket_env.get('S3_BUCKET')}")
            if svc.get("environment", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT") is not None:
                c.check(f"{name}: traces go to the collector",
                        environment(svc)["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector:4318"))
    c.check("api, workers, scheduler and migrate read a configuration file", set(APP_SERVICES) | {"migrate"} <= set(configs), str(sorted(configs)))
    if "api" in configs:
        bind = configs["api"]["server"]["bind"]
        ports = [str(p) for p in services["api"].get("ports", [])]
        c.check(f"api publishes its server.bind port ({bind})", any(p.endswith(":" + bind.rsplit(":", 1)[1]) for p in ports), str(ports))
    if "worker" in configs:
        grace = configs["worker"].get("worker", {}).get("shutdown_grace_seconds", 25)
        stop = duration_seconds(worker.get("stop_grace_period", "10s"))
        c.check(f"worker stop_grace_period ({stop:g}s) > worker.shutdown_grace_seconds ({grace})", stop > grace)
        c.check("worker metrics listener configured (healthcheck and scraping)", bool(configs["worker"]["worker"].get("metrics_bind")))

    # The collector.
    otel = services.get("otel-collector", {})
    mounts = bind_mounts(otel)

    def collector() -> None:
        assert mounts, "no configuration mounted"
        source, target = mounts[0]
        assert any(target in str(a) for a in otel.get("command", [])), f"collector not started with {target}"
        conf = yaml.safe_load((DEPLOY / source).read_text(encoding="utf-8"))
        http = conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        assert http.endswith(":4318"), http
        pipelines = conf["service"]["pipelines"]
        assert "otlp" in pipelines["traces"]["receivers"], pipelines["traces"]
        for pname, p in pipelines.items():
            for kind in ("receivers", "processors", "exporters"):
                for comp in p.get(kind, []):
                    assert comp in conf.get(kind, {}), f"pipeline {pname} uses undefined {kind[:-1]} {comp}"
        scrape = conf["receivers"].get("prometheus", {}).get("config", {}).get("scrape_configs", [])
        targets = json.dumps(scrape)
        for svc_name in APP_SERVICES:
            assert svc_name in targets, f"no Prometheus scrape of {svc_name}"

    c.run("otel-collector: configuration file exists, OTLP/HTTP on 4318 feeds a traces pipeline, scrapes api/worker/scheduler", collector)


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_stages() -> tuple[dict[str, str], list[dict]]:
    """ARG defaults and the stages as [{from, name, instructions: [(KEYWORD, args)]}]."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append(buf + stripped)
        buf = ""
    args: dict[str, str] = {}
    stages: list[dict] = []
    for inst in logical:
        keyword, _, rest = inst.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            args[name] = default
        elif keyword == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            image = re.sub(r"\$\{?(\w+)\}?", lambda mm: args.get(mm.group(1), mm.group(0)), m.group(1))
            stages.append({"from": image, "name": m.group(2), "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return args, stages


def apt_installed(stage: dict) -> list[str]:
    pkgs: list[str] = []
    for kw, rest in stage["instructions"]:
        if kw != "RUN":
            continue
        for m in re.finditer(r"apt-get\s+install\s+((?:-\S+\s+)*)([^&;|]+)", rest):
            pkgs += [p for p in m.group(2).split() if not p.startswith("-")]
    return pkgs


def entrypoint_roles() -> set[str]:
    text = (DEPLOY / "entrypoint.sh").read_text(encoding="utf-8")
    roles = set()
    for m in re.finditer(r"^\s*([a-z| ]+)\)\s", text, re.M):
        roles |= {r.strip() for r in m.group(1).split("|")}
    return roles


def check_dockerfile(c: Checks) -> list[str]:
    args, stages = dockerfile_stages()
    c.check("Dockerfile is multi-stage", len(stages) >= 2, f"{len(stages)} stages")
    if len(stages) < 2:
        return []
    builder, runtime = stages[0], stages[-1]
    c.check("builder stage FROM rust:1.95-bookworm", builder["from"] == "rust:1.95-bookworm", builder["from"])
    c.check("runtime stage FROM debian:bookworm-slim", runtime["from"] == "debian:bookworm-slim", runtime["from"])
    runs = " ".join(rest for kw, rest in builder["instructions"] if kw == "RUN")
    c.check("builder runs `bash scripts/build-release.sh`", "bash scripts/build-release.sh" in runs)
    script = BUILD_SCRIPT.read_text(encoding="utf-8") if BUILD_SCRIPT.exists() else ""
    flat = " ".join(re.sub(r"\\\n", " ", script).split())
    c.check("scripts/build-release.sh runs the release build (set -euo pipefail, repo root, extra args)",
            "set -euo pipefail" in flat and re.search(re.escape(CARGO_BUILD) + r"\s+\"\$@\"", flat) is not None and "cd " in flat)
    build_deps = apt_installed(builder)
    c.check("builder installs cmake g++ make pkg-config libnetcdf-dev", {"cmake", "g++", "make", "pkg-config", "libnetcdf-dev"} <= set(build_deps), str(build_deps))

    users = [rest for kw, rest in runtime["instructions"] if kw == "USER"]
    uid = users[-1].split(":")[0] if users else ""
    c.check("runtime stage runs as a numeric non-root USER", uid.isdigit() and int(uid) != 0, str(users))
    hcs = [rest for kw, rest in runtime["instructions"] if kw == "HEALTHCHECK"]
    c.check("runtime stage has a HEALTHCHECK", bool(hcs) and not hcs[-1].upper().startswith("NONE"), str(hcs))
    copies = " ".join(rest for kw, rest in runtime["instructions"] if kw == "COPY")
    c.check("runtime copies the three binaries from the builder",
            all(b in copies for b in ("climate-api", "climate-worker", "climate-scheduler")) and "--from=builder" in copies)
    entry = [rest for kw, rest in runtime["instructions"] if kw == "ENTRYPOINT"]
    c.check("ENTRYPOINT is the role-choosing entrypoint under an init", bool(entry) and "climate-entrypoint" in entry[-1] and "tini" in entry[-1], str(entry))
    c.check("entrypoint.sh is copied into the image", "deploy/entrypoint.sh" in copies)

    def entrypoint_syntax() -> None:
        r = subprocess.run(["bash", "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    c.run("entrypoint.sh is valid bash", entrypoint_syntax)
    roles = entrypoint_roles()
    c.check("entrypoint knows api, worker, scheduler, migrate, keys, standalone, healthcheck",
            {"api", "worker", "scheduler", "migrate", "keys", "standalone", "healthcheck"} <= roles, str(sorted(roles)))

    def dockerignore() -> None:
        path = DEPLOY / "Dockerfile.dockerignore"
        patterns = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
        excluded = lambda p: any(fnmatch.fnmatch(p, pat.rstrip("/")) or fnmatch.fnmatch(p + "/", pat) for pat in patterns if not pat.startswith("!"))  # noqa: E731
        for must in ("target", "data", ".venv", "fuzz"):
            assert excluded(must), f"{must}/ is not excluded"
        for need in ("Cargo.toml", "Cargo.lock", "api", "worker", "scheduler", "shared", "config", "migrations", "scripts", "tests"):
            assert not excluded(need), f"{need} is excluded but the build needs it"
        members = re.search(r"members\s*=\s*\[(.*?)\]", (REPO / "Cargo.toml").read_text(), re.S).group(1)
        for member in re.findall(r'"([^"]+)"', members):
            assert not excluded(member.split("/")[0]), f"workspace member {member} excluded"

    c.run("Dockerfile.dockerignore keeps build output out and every workspace member in", dockerignore)

    def linter(tool: str, *args: str) -> str:
        exe = Path(sys.executable).parent / tool
        exe = exe if exe.exists() else shutil.which(tool)
        assert exe, f"{tool} is missing: run scripts/setup-python.sh (tests/interop/requirements.txt)"
        r = subprocess.run([str(exe), *args], capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout + r.stderr).strip()
        return tool

    c.run("hadolint: Dockerfile has no findings", lambda: linter("hadolint", "--no-color", str(DOCKERFILE)))
    c.run("shellcheck: entrypoint.sh and build-release.sh have no findings",
          lambda: linter("shellcheck", str(DEPLOY / "entrypoint.sh"), str(BUILD_SCRIPT)))
    return apt_installed(runtime)


# --- shared libraries of a built binary ---------------------------------------------------------


def ldd(binary: Path) -> list[tuple[str, str]]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s*=>\s*(\S+)", line)
        if m and m.group(2) != "not":
            libs.append((m.group(1), m.group(2)))
        elif "not found" in line:
            raise AssertionError(f"{binary}: {line.strip()}")
    return libs


def needed(binary: Path) -> set[str]:
    """DT_NEEDED entries (the binary's direct dependencies); None without readelf."""
    if not shutil.which("readelf"):
        return set()
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def _path_variants(path: str) -> list[str]:
    """The names dpkg may have recorded a library under (merged /usr, symlinks)."""
    out = []
    for p in (path, str(Path(path).resolve())):
        for v in (p, p.replace("/usr/lib/", "/lib/", 1), p.replace("/lib/", "/usr/lib/", 1)):
            if v not in out:
                out.append(v)
    return out


def packages_of(paths: list[str]) -> dict[str, str]:
    """Debian package owning each path, in one `dpkg -S` call. Raises for an unowned path."""
    variants = {p: _path_variants(p) for p in paths}
    query = sorted({v for vs in variants.values() for v in vs})
    r = subprocess.run(["dpkg", "-S", *query], capture_output=True, text=True)
    owner: dict[str, str] = {}
    for line in r.stdout.splitlines():
        pkgs, _, file = line.partition(": ")
        owner[file.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    out = {}
    for p, vs in variants.items():
        found = next((owner[v] for v in vs if v in owner), None)
        if found is None:
            raise AssertionError(f"no Debian package owns {p}")
        out[p] = found
    return out


def depends_closure(packages: list[str]) -> set[str]:
    """The packages and everything they depend on (installed here), recursively."""
    seen: set[str] = set()
    todo = list(packages)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", pkg], capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.strip(", \n"):
            # Not installed here: ask apt's package lists (after `apt-get update`).
            r = subprocess.run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                                "--no-breaks", "--no-replaces", "--no-enhances", pkg], capture_output=True, text=True)
            deps = re.findall(r"^\s+(?:Pre)?Depends:\s+<?([^\s>]+)", r.stdout, re.M) if r.returncode == 0 else []
            todo += [d.split(":")[0] for d in deps]
            continue
        for alt in r.stdout.split(","):
            for name in alt.split("|")[:1]:
                name = re.sub(r"\(.*?\)|:\w+", "", name).strip()
                if name:
                    todo.append(name)
    return seen


def check_libraries(c: Checks, binaries: list[Path], runtime_packages: list[str]) -> None:
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        print("skip  shared-library check: needs ldd and dpkg (Debian)")
        return
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    if not debian.startswith("12"):
        print(f"note  this machine is Debian {debian}; the runtime image is bookworm (12): package names may differ")
    closure = depends_closure(runtime_packages)
    used: set[str] = set()
    for binary in binaries:
        def one(binary: Path = binary) -> str:
            direct = needed(binary)
            problems = []
            libs = ldd(binary)
            owners = packages_of([path for _, path in libs])
            for soname, path in libs:
                pkg = owners[path]
                used.add(pkg)
                if pkg in BASE_IMAGE_PACKAGES:
                    continue
                if soname in direct or not direct:
                    if pkg not in runtime_packages:
                        problems.append(f"{soname} ({pkg}) is linked directly but {pkg} is not installed")
                elif pkg not in closure:
                    problems.append(f"{soname} ({pkg}) is not installed by {runtime_packages} or their dependencies")
            assert not problems, "; ".join(problems)
            return ", ".join(sorted(used - BASE_IMAGE_PACKAGES))

        c.run(f"{binary.name}: every shared library ({binary}) comes from the runtime stage's packages", one)
    extra = [p for p in runtime_packages if p not in NON_LIBRARY_PACKAGES and p not in used]
    c.check("runtime stage installs no package the binaries do not load", not extra,
            f"unused: {extra}; libraries come from {sorted(used)}")


def default_binaries() -> list[Path]:
    for profile in ("release", "debug"):
        found = [REPO / "target" / profile / b for b in ("climate-api", "climate-worker", "climate-scheduler")]
        found = [p for p in found if p.exists()]
        if found:
            return found
    return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", action="append", type=Path, default=[], help="a built binary to check with ldd (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--product", type=Path, help="a built climate-api to load the configuration file with "
                    "(default: the first --binary named climate-api, else target/release or target/debug)")
    args = ap.parse_args()
    c = Checks(args.verbose)
    global PRODUCT_BINARY
    PRODUCT_BINARY = args.product or next((b for b in args.binary if b.name == "climate-api"), None) \
        or product_config.default_binary()
    PRODUCT_BINARY = PRODUCT_BINARY.resolve() if PRODUCT_BINARY else None
    if PRODUCT_BINARY is None:
        print("skip  loading the configuration with the product: no built climate-api (or pass --product)")

    roles = entrypoint_roles()
    check_compose(c, roles)
    runtime_packages = check_dockerfile(c)
    binaries = [b.resolve() for b in args.binary] or default_binaries()
    if binaries:
        for b in binaries:
            c.check(f"binary {b} exists", b.exists())
        check_libraries(c, [b for b in binaries if b.exists()], runtime_packages)
    else:
        print("skip  shared-library check: no built binary (run scripts/build-release.sh, or pass --binary)")

    print(f"{c.passed} passed, {len(c.failures)} failed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
