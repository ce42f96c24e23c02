#!/usr/bin/env bash
# Static checks of the deployment files (deploy/Dockerfile, .dockerignore, the three compose files,
# the Helm chart) on a machine with no container engine. It builds and runs nothing; every check
# prints `ok`, `FAIL`, `warn` or `skip` with what was (or was not) looked at, and a summary line.
#
#   deploy/check.sh [--strict]
#
# Environment:
#   REKOR_SERVER_BIN      a built rekor-server-posix: its `serve --help` is the list of valid flags
#   REKOR_SERVER_GCP_BIN  likewise for rekor-server-gcp
#   REKOR_SERVER_AWS_BIN  likewise for rekor-server-aws
#   (Without a binary the flags are read from the clap `#[arg(long ...)]` fields in the sources.)
#   REKOR_CHECK_RENDERED_DIR  copy the rendered chart manifests (per backend) here to read them
#   REKOR_CHECK_VENV      where to create a Python venv with PyYAML if python3 lacks it
#                         (default: ~/.cache/rekor-rs/deploy-check-venv)
#
# Tools used when present: python3 (required; PyYAML is installed into the venv above if missing),
# helm (lint + template per backend), go (without helm: renders the chart with Go's text/template
# and a small subset of helm's functions, an approximation of `helm template`), shellcheck and
# sh -n (the shell scripts inside the compose files), hadolint (the Dockerfile).
#
# --strict turns warnings (e.g. a backend the Dockerfile accepts whose cmd/ crate is not there yet)
# into failures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRICT=0
for arg in "$@"; do
  case "$arg" in
    --strict) STRICT=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results"
: > "$RESULTS"

say() { echo "$1 $2"; echo "$1" >> "$RESULTS"; }
ok() { say "ok  " "$*"; }
bad() { say "FAIL" "$*"; }
warn() { say "warn" "$*"; }
skip() { say "skip" "$*"; }

echo "== deploy checks in $ROOT"

# --- Python with PyYAML ---------------------------------------------------------------------
PY=""
if ! command -v python3 >/dev/null 2>&1; then
  bad "python3 not found: it runs the YAML, compose, Dockerfile and chart checks"
elif python3 -c 'import yaml' 2>/dev/null; then
  PY=python3
else
  VENV="${REKOR_CHECK_VENV:-$HOME/.cache/rekor-rs/deploy-check-venv}"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    echo "PyYAML missing: installing it into $VENV"
    if python3 -m venv "$VENV" >/dev/null 2>&1 \
      && "$VENV/bin/pip" install -q --disable-pip-version-check pyyaml >/dev/null 2>&1; then
      :
    else
      echo "could not create $VENV with PyYAML" >&2
    fi
  fi
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    PY="$VENV/bin/python"
  else
    bad "PyYAML unavailable (python3 has none and the venv could not be made): YAML checks not run"
  fi
fi

# --- Valid flags per backend ----------------------------------------------------------------
# flags/<backend>: one `--flag` a line. From the binary's help when given, else from the sources.
mkdir -p "$WORK/flags"
help_flags() { # binary backend
  if "$1" serve --help > "$WORK/help-$2.txt" 2>&1; then
    grep -oE '^ +(-[a-zA-Z], )?--[a-z0-9][a-z0-9-]*' "$WORK/help-$2.txt" | grep -oE -- '--[a-z0-9-]+' \
      | sort -u > "$WORK/flags/$2"
    ok "flags for $2 from \`$1 serve --help\` ($(wc -l < "$WORK/flags/$2") flags)"
  else
    bad "\`$1 serve --help\` failed: $(head -c 300 "$WORK/help-$2.txt")"
  fi
}
source_flags() { # backend: clap `#[arg(long...)]` fields in crates/server/src and cmd/rekor-server-<backend>/src
  local dir="$ROOT/cmd/rekor-server-$1/src"
  if [ ! -d "$dir" ]; then
    warn "cmd/rekor-server-$1 is not in the workspace yet: its flags are unchecked"
    return
  fi
  if [ -z "$PY" ]; then return; fi
  "$PY" - "$ROOT/crates/server/src" "$dir" > "$WORK/flags/$1" <<'PYEOF'
import pathlib, re, sys
flags = set()
for d in sys.argv[1:]:
    for path in sorted(pathlib.Path(d).rglob("*.rs")):
        text = path.read_text()
        # An attribute `#[arg(...)]` (possibly over several lines) followed by `[pub] name: Type`.
        for m in re.finditer(r"#\[arg\((.*?)\)\]\s*(?:///[^\n]*\n\s*|#\[[^\n]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:", text, re.S):
            attr, field = m.group(1), m.group(2)
            if not re.search(r"\blong\b", attr):
                continue
            named = re.search(r'\blong\s*=\s*"([^"]+)"', attr)
            flags.add("--" + (named.group(1) if named else field.replace("_", "-")))
flags.add("--help")
print("\n".join(sorted(flags)))
PYEOF
  if grep -q -- '--hostname' "$WORK/flags/$1"; then
    ok "flags for $1 read from the clap fields in crates/server/src and cmd/rekor-server-$1/src ($(wc -l < "$WORK/flags/$1") flags; set REKOR_SERVER$( [ "$1" = posix ] || echo "_${1^^}")_BIN to use the binary's help instead)"
  else
    bad "could not read the flags of $1 from its sources"
    rm -f "$WORK/flags/$1"
  fi
}
for backend in posix gcp aws; do
  case "$backend" in
    posix) bin="${REKOR_SERVER_BIN:-}" ;;
    gcp) bin="${REKOR_SERVER_GCP_BIN:-}" ;;
    aws) bin="${REKOR_SERVER_AWS_BIN:-}" ;;
  esac
  if [ -n "$bin" ]; then
    help_flags "$bin" "$backend"
  else
    [ "$backend" = posix ] && skip "REKOR_SERVER_BIN not set: posix flags come from the sources, not from \`serve --help\`"
    source_flags "$backend"
  fi
done

# --- Helm rendering -------------------------------------------------------------------------
CHART="$ROOT/deploy/helm/rekor-rs"
mkdir -p "$WORK/rendered"
# Values that satisfy each backend's required settings.
write_ci_values() {
  cat > "$WORK/values-posix.yaml" <<'EOF'
backend: posix
server:
  hostname: log.example.test
EOF
  cat > "$WORK/values-gcp.yaml" <<'EOF'
backend: gcp
server:
  hostname: log.example.test
signer:
  existingSecret: rekor-signer
gcp:
  bucket: rekor-tiles
  spanner: projects/p/instances/i/databases/d
EOF
  cat > "$WORK/values-aws.yaml" <<'EOF'
backend: aws
server:
  hostname: log.example.test
  tls:
    grpc:
      secretName: rekor-grpc-tls
signer:
  existingSecret: rekor-signer
  password:
    secretName: rekor-signer-password
aws:
  bucket: rekor-tiles
  region: us-east-1
  mysqlDsnSecret:
    name: rekor-mysql
EOF
  # Must be refused: a cloud backend without its bucket.
  cat > "$WORK/values-gcp-bad.yaml" <<'EOF'
backend: gcp
server:
  hostname: log.example.test
signer:
  existingSecret: rekor-signer
gcp:
  spanner: projects/p/instances/i/databases/d
EOF
}
write_ci_values

RENDERER=""
if command -v helm >/dev/null 2>&1; then
  RENDERER=helm
  if helm lint "$CHART" --set server.hostname=log.example.test > "$WORK/lint.txt" 2>&1; then
    ok "helm lint (posix defaults)"
  else
    bad "helm lint: $(tail -5 "$WORK/lint.txt")"
  fi
  for b in posix gcp aws; do
    if helm lint "$CHART" -f "$WORK/values-$b.yaml" > "$WORK/lint-$b.txt" 2>&1; then
      ok "helm lint -f values-$b"
    else
      bad "helm lint -f values-$b: $(tail -5 "$WORK/lint-$b.txt")"
    fi
  done
  render() { helm template rekor "$CHART" --namespace rekor -f "$1"; }
elif command -v go >/dev/null 2>&1 && [ -n "$PY" ]; then
  RENDERER=go
  mkdir -p "$WORK/render"
  cat > "$WORK/render/main.go" <<'GOEOF'
// An approximation of `helm template` for this chart: Go's text/template with the subset of
// helm's and sprig's functions the chart uses. Values come in as JSON (merged by the caller).
// toYaml emits JSON, which is valid YAML in the places the chart uses it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

type failure struct{ msg string }

func (f failure) Error() string { return f.msg }

func empty(v interface{}) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Float64, reflect.Float32:
		return r.Float() == 0
	case reflect.Int, reflect.Int64, reflect.Int32:
		return r.Int() == 0
	}
	return false
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func main() {
	chart, valuesPath, outDir := os.Args[1], os.Args[2], os.Args[3]
	var values map[string]interface{}
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(raw, &values); err != nil {
		panic(err)
	}
	var meta map[string]interface{}
	raw, err = os.ReadFile(filepath.Join(outDir, "chart.json"))
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		panic(err)
	}
	root := template.New("chart").Option("missingkey=zero")
	funcs := template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var b bytes.Buffer
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"fail":    func(msg string) (string, error) { return "", failure{msg} },
		"default": func(d interface{}, v ...interface{}) interface{} {
			if len(v) == 0 || empty(v[0]) {
				return d
			}
			return v[0]
		},
		"empty":   empty,
		"trunc":   func(n int, s string) string { if len(s) > n { return s[:n] }; return s },
		"trim":    strings.TrimSpace,
		"trimSuffix": func(suf, s string) string { return strings.TrimSuffix(s, suf) },
		"contains": func(sub, s string) bool { return strings.Contains(s, sub) },
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"quote":   func(v interface{}) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"indent":  indent,
		"toYaml": func(v interface{}) string {
			b, err := json.Marshal(v)
			if err != nil {
				panic(err)
			}
			return string(b)
		},
		"list": func(v ...interface{}) []interface{} { return v },
		"has": func(needle interface{}, hay []interface{}) bool {
			for _, h := range hay {
				if reflect.DeepEqual(h, needle) {
					return true
				}
			}
			return false
		},
		"regexMatch": func(re, s string) bool { return regexp.MustCompile(re).MatchString(s) },
		"ternary": func(a, b interface{}, c bool) interface{} { if c { return a }; return b },
		"kindIs": func(kind string, v interface{}) bool {
			if v == nil {
				return kind == "invalid"
			}
			return reflect.ValueOf(v).Kind().String() == kind
		},
		"int64": func(v interface{}) int64 {
			switch x := v.(type) {
			case float64:
				return int64(x)
			case int:
				return int64(x)
			case int64:
				return x
			}
			panic(fmt.Sprintf("int64 of %T", v))
		},
		"join": func(sep string, v []interface{}) string {
			parts := make([]string, len(v))
			for i, x := range v {
				parts[i] = fmt.Sprint(x)
			}
			return strings.Join(parts, sep)
		},
	}
	root.Funcs(funcs)
	files, _ := filepath.Glob(filepath.Join(chart, "templates", "*"))
	sort.Strings(files)
	var names []string
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		name := filepath.Base(f)
		if _, err := root.New(name).Parse(string(body)); err != nil {
			fmt.Fprintf(os.Stderr, "parse %s: %v\n", name, err)
			os.Exit(3)
		}
		if !strings.HasPrefix(name, "_") {
			names = append(names, name)
		}
	}
	data := map[string]interface{}{
		"Values":  values,
		"Chart":   meta,
		"Release": map[string]interface{}{"Name": "rekor", "Namespace": "rekor", "Service": "Helm"},
	}
	for _, name := range names {
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, name, data); err != nil {
			var f failure
			if errors.As(err, &f) {
				fmt.Fprintf(os.Stderr, "fail: %s\n", f.msg)
				os.Exit(4)
			}
			fmt.Fprintf(os.Stderr, "render %s: %v\n", name, err)
			os.Exit(3)
		}
		out := strings.ReplaceAll(b.String(), "<no value>", "")
		if err := os.WriteFile(filepath.Join(outDir, name), []byte(out), 0o644); err != nil {
			panic(err)
		}
	}
}
GOEOF
  if ! (cd "$WORK/render" && GOCACHE="${GOCACHE:-$WORK/gocache}" GO111MODULE=off go build -o renderer main.go) > "$WORK/gobuild.txt" 2>&1; then
    bad "could not build the Go template renderer: $(head -5 "$WORK/gobuild.txt")"
    RENDERER=""
  else
    skip "helm not installed: no \`helm lint\`; the chart is rendered with Go's text/template and the helm functions it uses (an approximation of \`helm template\`)"
  fi
  render() { # values file -> rendered manifests on stdout
    local out
    out="$WORK/out-$(basename "$1" .yaml)"
    rm -rf "$out"; mkdir -p "$out"
    "$PY" - "$CHART" "$1" "$out" <<'PYEOF'
import json, sys, yaml
chart, override, out = sys.argv[1:4]
def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base
values = yaml.safe_load(open(f"{chart}/values.yaml"))
merge(values, yaml.safe_load(open(override)) or {})
meta = yaml.safe_load(open(f"{chart}/Chart.yaml"))
json.dump(values, open(f"{out}/values.json", "w"))
json.dump({"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
          open(f"{out}/chart.json", "w"))
PYEOF
    "$WORK/render/renderer" "$CHART" "$out/values.json" "$out" || return $?
    for f in "$out"/*; do
      case "$f" in *.json|*/NOTES.txt) continue ;; esac
      printf -- '---\n# Source: %s\n' "$(basename "$f")"; cat "$f"; echo
    done
    [ -f "$out/NOTES.txt" ] && cp "$out/NOTES.txt" "$WORK/rendered/NOTES-$(basename "$1" .yaml).txt"
    return 0
  }
else
  skip "neither helm nor go is installed: the chart is not rendered (only its static checks run)"
fi

if [ -n "$RENDERER" ]; then
  for b in posix gcp aws; do
    if render "$WORK/values-$b.yaml" > "$WORK/rendered/$b.yaml" 2> "$WORK/render-$b.err"; then
      ok "chart renders for backend $b ($RENDERER)"
    else
      bad "chart does not render for backend $b ($RENDERER): $(head -5 "$WORK/render-$b.err")"
      rm -f "$WORK/rendered/$b.yaml"
    fi
  done
  if render "$WORK/values-gcp-bad.yaml" > /dev/null 2> "$WORK/render-bad.err"; then
    bad "chart rendered backend gcp without gcp.bucket; it must refuse"
  elif grep -q "gcp.bucket is required" "$WORK/render-bad.err"; then
    ok "chart refuses backend gcp without gcp.bucket (\"$(grep -o 'gcp.bucket is required[^"]*' "$WORK/render-bad.err" | head -1)\")"
  else
    bad "chart failed without gcp.bucket, but not with the expected message: $(head -3 "$WORK/render-bad.err")"
  fi
fi

if [ -n "${REKOR_CHECK_RENDERED_DIR:-}" ] && [ -d "$WORK/rendered" ]; then
  mkdir -p "$REKOR_CHECK_RENDERED_DIR"
  cp "$WORK"/rendered/* "$REKOR_CHECK_RENDERED_DIR"/
fi

# --- The Python checks: YAML, compose, Dockerfile, .dockerignore, chart ---------------------
if [ -n "$PY" ]; then
  mkdir -p "$WORK/scripts"
  if ! "$PY" - "$ROOT" "$WORK" > "$WORK/py.txt" 2>&1 <<'PYEOF'
import os, pathlib, re, subprocess, sys
import yaml

root, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
results = open(work / "results", "a")

def report(kind, msg):
    print(f"{kind} {msg}")
    results.write(kind.strip() + "\n")

def ok(msg): report("ok  ", msg)
def bad(msg): report("FAIL", msg)
def warn(msg): report("warn", msg)
def skip(msg): report("skip", msg)

def flags_of(backend):
    f = work / "flags" / backend
    return set(f.read_text().split()) if f.exists() and f.stat().st_size else None

def check_flags(where, backend, args):
    known = flags_of(backend)
    used = sorted({re.match(r"--[a-z0-9-]+", a).group(0) for a in args if re.match(r"--[a-z0-9]", a)})
    if known is None:
        skip(f"{where}: flags {' '.join(used)} not checked (no flag list for {backend})")
        return
    unknown = [f for f in used if f not in known]
    if unknown:
        bad(f"{where}: flags unknown to rekor-server-{backend}: {' '.join(unknown)}")
    else:
        ok(f"{where}: all {len(used)} flags exist in rekor-server-{backend}")

# --aws-mysql-dsn's environment variable, from the binary's help or its source.
aws_help = work / "help-aws.txt"
aws_src = root / "cmd/rekor-server-aws/src/main.rs"
aws_dsn_env = (aws_help.exists() and re.search(r"--aws-mysql-dsn[^\n]*\n(?:[^\n]*\n)*?[^\n]*\[env: REKOR_AWS_MYSQL_DSN", aws_help.read_text()) is not None) or \
    (aws_src.exists() and re.search(r'env\s*=\s*"REKOR_AWS_MYSQL_DSN"[^\]]*\)\]\s*(?:pub\s+)?aws_mysql_dsn\s*:', aws_src.read_text()) is not None)

# Backends: cmd/ crates and what the Dockerfile accepts.
cmd_backends = sorted(p.name.removeprefix("rekor-server-") for p in (root / "cmd").glob("rekor-server-*")
                      if (p / "Cargo.toml").exists())
dockerfile = (root / "deploy/Dockerfile").read_text()
m = re.search(r"^ARG BACKEND=(\S+)$", dockerfile, re.M)
default_backend = m.group(1) if m else None
m = re.search(r'case "\$\{BACKEND\}" in\s*\\\s*\n\s*([a-z|]+)\)', dockerfile)
accepted = m.group(1).split("|") if m else []
if default_backend in cmd_backends:
    ok(f"Dockerfile: default BACKEND={default_backend} is cmd/rekor-server-{default_backend}")
else:
    bad(f"Dockerfile: default BACKEND={default_backend} has no cmd/rekor-server-{default_backend}")
if not accepted:
    bad("Dockerfile: no `case \"${BACKEND}\" in a|b|c)` guard found")
else:
    extra = [b for b in cmd_backends if b not in accepted]
    if extra:
        bad(f"Dockerfile: cmd/ has backends the Dockerfile refuses: {extra}")
    else:
        ok(f"Dockerfile: accepts every cmd/rekor-server-* backend ({', '.join(cmd_backends)}); accepted: {', '.join(accepted)}")
    for b in accepted:
        if b not in cmd_backends:
            warn(f"Dockerfile: BACKEND={b} is accepted but cmd/rekor-server-{b} does not exist (yet)")
stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.M | re.I)
for needle, what in [
    (r"^FROM rust:1\.95-bookworm AS builder", "builder is rust:1.95-bookworm"),
    (r"cargo build --release --locked -p \"rekor-server-\$\{BACKEND\}\"", "builds only rekor-server-${BACKEND}, --locked"),
    (r"--mount=type=cache,target=/usr/local/cargo/registry", "cargo registry cache mount"),
    (r"--mount=type=cache,target=/src/target", "target cache mount"),
    (r"^FROM debian:bookworm-slim AS runtime", "runtime is debian:bookworm-slim"),
    (r"^USER 65532:65532$", "runs as uid 65532"),
    (r"^EXPOSE 3000 3001 2112$", "exposes 3000 3001 2112"),
    (r'^ENTRYPOINT \["/usr/local/bin/rekor-server"\]$', "entrypoint is the server binary"),
]:
    (ok if re.search(needle, dockerfile, re.M) else bad)(f"Dockerfile: {what}")
if stages[-1:] != ["runtime"]:
    bad(f"Dockerfile: the last stage (default target) must be runtime, got {stages[-1:]}")
m = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
cmd = yaml.safe_load(m.group(1)) if m else []
if cmd[:1] == ["serve"] and "0.0.0.0" in cmd:
    for b in cmd_backends:
        check_flags(f"Dockerfile CMD ({b})", b, cmd)
else:
    bad("Dockerfile: CMD must be [\"serve\", ... \"0.0.0.0\" ...]")
for src in re.findall(r"^COPY --from=(\S+)", dockerfile, re.M):
    (ok if src in stages else bad)(f"Dockerfile: COPY --from={src} names a stage")

# .dockerignore: keeps the build inputs, drops local state.
ignore = [l.strip() for l in (root / ".dockerignore").read_text().splitlines()
          if l.strip() and not l.startswith("#")]
needed = ["Cargo.toml", "Cargo.lock", "proto", "crates", "cmd", "bench"]
members = yaml.safe_load("x: " + re.search(r"members\s*=\s*(\[.*?\])", (root / "Cargo.toml").read_text(), re.S).group(1).replace("\n", " "))["x"]
tops = sorted({m.split("/")[0] for m in members})
for n in sorted(set(needed) | set(tops)):
    hit = [p for p in ignore if p.rstrip("/") in (n, "/" + n, "**/" + n)]
    (bad if hit else ok)(f".dockerignore: {'excludes' if hit else 'keeps'} {n}/ (workspace build input)")
for n in ["target", ".git", "fuzz", "rekor-data"]:
    hit = [p for p in ignore if p.rstrip("/") in (n, "/" + n, "**/" + n)]
    (ok if hit else bad)(f".dockerignore: {'excludes' if hit else 'does not exclude'} {n}")
if (root / "proto").is_dir() and (root / "crates/api/build.rs").exists() and "../../proto" in (root / "crates/api/build.rs").read_text():
    ok("proto/ is where crates/api/build.rs reads it (../../proto), and it is in the build context")

# Compose files.
BACKEND_SERVICE = {"compose.yml": ("rekor-server-gcp", "gcp"), "posix-compose.yml": ("rekor-server-posix", "posix"),
                   "aws-compose.yml": ("rekor-server-aws", "aws")}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
script_no = 0
composes = {}
for name, (server, backend) in BACKEND_SERVICE.items():
    path = root / name
    try:
        doc = yaml.safe_load(path.read_text())
    except Exception as e:
        bad(f"{name}: YAML does not parse: {e}")
        continue
    ok(f"{name}: YAML parses")
    composes[name] = doc
    services = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    problems = []
    for sname, svc in services.items():
        if not svc.get("image") and not svc.get("build"):
            problems.append(f"{sname} has neither image nor build")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{sname} depends on unknown service {dep}")
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond not in CONDITIONS:
                problems.append(f"{sname}: unknown condition {cond}")
            if cond == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{sname} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully" and services[dep].get("restart") not in (None, "no"):
                problems.append(f"{sname} waits for {dep} to complete, but {dep} restarts")
        for port in svc.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{sname} publishes {port} beyond 127.0.0.1")
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":")[0]
            if not src.startswith((".", "/", "~")) and src not in declared_volumes:
                problems.append(f"{sname} mounts undeclared volume {src}")
        build = svc.get("build")
        if build:
            ctx = root / build.get("context", ".")
            dfile = ctx / build.get("dockerfile", "Dockerfile")
            if not dfile.exists():
                problems.append(f"{sname}: {dfile} does not exist")
            target = build.get("target")
            if target and target not in stages:
                problems.append(f"{sname}: build target {target} is not a Dockerfile stage")
            arg = (build.get("args") or {}).get("BACKEND")
            if arg is not None and arg not in accepted:
                problems.append(f"{sname}: BACKEND={arg} is not accepted by the Dockerfile")
        # Inline scripts: `$` must be doubled (compose interpolates single ones).
        for key in ("command", "entrypoint"):
            val = svc.get(key)
            items = val if isinstance(val, list) else [val] if val else []
            for item in items:
                for lone in re.findall(r"(?<!\$)\$(?!\$)[A-Za-z_{(]", str(item)):
                    problems.append(f"{sname}.{key}: single `$` ({lone}...) would be interpolated by compose")
        ep = svc.get("entrypoint")
        if isinstance(ep, list) and ep[:1] == ["/bin/sh"] and isinstance(svc.get("command"), list):
            script_no += 1
            script = str(svc["command"][0]).replace("$$", "$")
            (work / "scripts" / f"{script_no}-{name}-{sname}.sh").write_text("#!/bin/sh\nset -eu\n" + script)
    if problems:
        for p in problems:
            bad(f"{name}: {p}")
    else:
        ok(f"{name}: {len(services)} services; depends_on names and conditions valid, healthy-waits have health checks, ports on 127.0.0.1 only, volumes declared, build targets/args valid, `$` escaped")
    if server not in services:
        bad(f"{name}: no {server} service")
        continue
    svc = services[server]
    if (svc.get("build") or {}).get("args", {}).get("BACKEND") != backend:
        bad(f"{name}: {server} is not built with BACKEND={backend}")
    command = [str(c) for c in svc.get("command") or []]
    if command[:1] != ["serve"]:
        bad(f"{name}: {server} command must start with serve")
    for flag in ("--http-address", "--grpc-address"):
        if flag in command and command[command.index(flag) + 1] != "0.0.0.0":
            bad(f"{name}: {server} {flag} must be 0.0.0.0 in a container")
        elif flag not in command:
            bad(f"{name}: {server} lacks {flag} 0.0.0.0 (the default binds 127.0.0.1 inside the container)")
    check_flags(f"{name} {server}", backend, command)
    hc = (svc.get("healthcheck") or {}).get("test") or []
    if "/api/v2/checkpoint" in " ".join(hc) and "busybox" in hc and "busybox" in dockerfile:
        ok(f"{name}: {server} health check probes /api/v2/checkpoint with busybox wget (installed in the runtime image)")
    else:
        bad(f"{name}: {server} health check should probe /api/v2/checkpoint with the image's busybox")
    def arg(flag):
        return command[command.index(flag) + 1] if flag in command else None
    if backend == "gcp":
        env = services.get("gcp-init", {}).get("environment", {})
        want = f"projects/{env.get('GCP_PROJECT')}/instances/{env.get('SPANNER_INSTANCE')}/databases/{env.get('SPANNER_DATABASE')}"
        (ok if arg("--gcp-spanner") == want else bad)(f"{name}: --gcp-spanner {arg('--gcp-spanner')} is the database gcp-init creates ({want})")
        (ok if arg("--gcp-bucket") == env.get("GCS_BUCKET") else bad)(f"{name}: --gcp-bucket {arg('--gcp-bucket')} is the bucket gcp-init creates ({env.get('GCS_BUCKET')})")
        senv = svc.get("environment") or {}
        (ok if senv.get("SPANNER_EMULATOR_HOST") == "spanner:9010" and senv.get("STORAGE_EMULATOR_HOST") == "http://gcs:4443" else bad)(
            f"{name}: emulator variables point at the spanner (9010) and gcs (4443) services")
        ci = arg("--checkpoint-interval") or ""
        (ok if re.fullmatch(r"([1-9]\d*s|\d+m)", ci) else bad)(f"{name}: --checkpoint-interval {ci!r} is at least 1s (GCS)")
    if backend == "aws":
        menv = services.get("mysql", {}).get("environment", {})
        want = f"{menv.get('MYSQL_USER')}:{menv.get('MYSQL_PASSWORD')}@tcp(mysql:3306)/{menv.get('MYSQL_DATABASE')}"
        dsn = arg("--aws-mysql-dsn") or (svc.get("environment") or {}).get("REKOR_AWS_MYSQL_DSN")
        (ok if dsn == want else bad)(f"{name}: the MySQL DSN (REKOR_AWS_MYSQL_DSN or --aws-mysql-dsn) matches the mysql service's user, password and database")
        if arg("--aws-mysql-dsn") is None:
            (ok if aws_dsn_env else bad)(f"{name}: the DSN is passed as REKOR_AWS_MYSQL_DSN, {'the env source of --aws-mysql-dsn' if aws_dsn_env else 'but --aws-mysql-dsn does not read that variable'}")
        ienv = services.get("minio-init", {}).get("environment", {})
        (ok if arg("--aws-bucket") == ienv.get("S3_BUCKET") else bad)(f"{name}: --aws-bucket {arg('--aws-bucket')} is the bucket minio-init creates")
        senv = svc.get("environment") or {}
        mroot = services.get("minio", {}).get("environment", {})
        (ok if senv.get("AWS_ACCESS_KEY_ID") == mroot.get("MINIO_ROOT_USER") and senv.get("AWS_SECRET_ACCESS_KEY") == mroot.get("MINIO_ROOT_PASSWORD")
            and senv.get("AWS_ENDPOINT_URL") == "http://minio:9000" else bad)(f"{name}: S3 endpoint and credentials match the minio service")
    if backend != "posix":
        keyvol = [v for v in svc.get("volumes") or [] if str(v).endswith(":ro")]
        key = arg("--signer-filepath") or ""
        (ok if keyvol and any(key.startswith(str(v).split(":")[1] + "/") for v in keyvol) else bad)(
            f"{name}: --signer-filepath {key} is on a read-only volume written by the keygen service")

# The chart, statically.
chart = root / "deploy/helm/rekor-rs"
chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text())
values = yaml.safe_load((chart / "values.yaml").read_text())
ok(f"Chart.yaml and values.yaml parse (chart {chart_meta['name']} {chart_meta['version']}, appVersion {chart_meta['appVersion']})")
(ok if chart_meta.get("apiVersion") == "v2" else bad)("Chart.yaml: apiVersion v2")
templates = {p.name: p.read_text() for p in (chart / "templates").iterdir()}
defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', "".join(templates.values())))
used = set(re.findall(r'include\s+"([^"]+)"', "".join(templates.values())))
(ok if used <= defined else bad)(f"chart: every included template is defined ({', '.join(sorted(used - defined)) or 'all'})")
missing = []
for tname, text in templates.items():
    for ref in re.findall(r"\.Values((?:\.[A-Za-z0-9_]+)+)", text):
        node = values
        for part in ref.strip(".").split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                missing.append(f"{tname}: .Values{ref}")
                break
(ok if not missing else bad)(f"chart: every .Values path used in the templates exists in values.yaml{'' if not missing else ': missing ' + ', '.join(sorted(set(missing)))}")
# $s := .Values.server aliases.
for ref in set(re.findall(r"\$s((?:\.[A-Za-z0-9_]+)+)", "".join(templates.values()))):
    node = values["server"]
    for part in ref.strip(".").split("."):
        if not (isinstance(node, dict) and part in node):
            bad(f"chart: $s{ref} (.Values.server{ref}) is not in values.yaml")
            break
        node = node[part]
for tname, text in templates.items():
    opens = len(re.findall(r"\{\{-?\s*(?:if|range|with|define)\b", text))
    ends = len(re.findall(r"\{\{-?\s*end\s*-?\}\}", text))
    if opens != ends or text.count("{{") != text.count("}}"):
        bad(f"chart: {tname}: unbalanced actions ({opens} blocks, {ends} ends)")
ok("chart: template blocks balanced (if/range/with/define vs end, {{ vs }})")
for key, want in [("backend", "posix"), ("replicaCount", 2), ("image", None), ("gcp", None), ("aws", None)]:
    if key not in values or (want is not None and values[key] != want):
        bad(f"values.yaml: {key} should be {want}")
for key in ("bucket", "spanner"):
    (ok if key in values["gcp"] else bad)(f"values.yaml: gcp.{key}")
for key in ("bucket", "mysqlDsnSecret"):
    (ok if key in values["aws"] else bad)(f"values.yaml: aws.{key}")
(ok if values["image"].get("repository") == "rekor-rs" and values["image"].get("tag") == "" else bad)(
    "values.yaml: image.repository rekor-rs, image.tag empty (defaults to <appVersion>-<backend>)")

# Rendered manifests, per backend.
rendered = work / "rendered"
for backend in ("posix", "gcp", "aws"):
    f = rendered / f"{backend}.yaml"
    if not f.exists():
        continue
    try:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
    except Exception as e:
        bad(f"chart ({backend}): rendered manifests are not YAML: {e}")
        continue
    kinds = {}
    for d in docs:
        if not d.get("apiVersion") or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
            bad(f"chart ({backend}): a document lacks apiVersion/kind/metadata.name: {str(d)[:120]}")
        kinds.setdefault(d["kind"], []).append(d)
    summary = ", ".join(f"{k}×{len(v)}" for k, v in sorted(kinds.items()))
    ok(f"chart ({backend}): {len(docs)} manifests parse as YAML: {summary}")
    workload_kind = "StatefulSet" if backend == "posix" else "Deployment"
    other_kind = "Deployment" if backend == "posix" else "StatefulSet"
    if workload_kind not in kinds or other_kind in kinds:
        bad(f"chart ({backend}): expected a {workload_kind} and no {other_kind}, got {summary}")
        continue
    wl = kinds[workload_kind][0]
    spec = wl["spec"]
    if backend == "posix":
        pvc = spec.get("volumeClaimTemplates") or []
        (ok if spec.get("replicas") == 1 and pvc and pvc[0]["metadata"]["name"] == "data" else bad)(
            "chart (posix): StatefulSet with replicas 1 and a `data` PVC template")
        (ok if "PodDisruptionBudget" not in kinds else bad)("chart (posix): no PodDisruptionBudget")
    else:
        (ok if spec.get("replicas") == values["replicaCount"] else bad)(f"chart ({backend}): Deployment replicas = replicaCount ({values['replicaCount']})")
        (ok if "PodDisruptionBudget" in kinds else bad)(f"chart ({backend}): PodDisruptionBudget present")
    sel = spec["selector"]["matchLabels"]
    pod = spec["template"]
    if any(pod["metadata"]["labels"].get(k) != v for k, v in sel.items()):
        bad(f"chart ({backend}): pod labels do not match the selector")
    for svc in kinds.get("Service", []):
        if any(pod["metadata"]["labels"].get(k) != v for k, v in svc["spec"]["selector"].items()):
            bad(f"chart ({backend}): Service {svc['metadata']['name']} selector does not match the pods")
    c = pod["spec"]["containers"][0]
    args = [str(a) for a in c["args"]]
    (ok if args[0] == "serve" else bad)(f"chart ({backend}): container runs `serve`")
    check_flags(f"chart ({backend}) container args", backend, args)
    image = c["image"]
    want_image = f"{values['image']['repository']}:{chart_meta['appVersion']}-{backend}"
    (ok if image == want_image else bad)(f"chart ({backend}): image {image} (tag <appVersion>-<backend>)")
    sc = c.get("securityContext") or {}
    psc = pod["spec"].get("securityContext") or {}
    (ok if sc.get("readOnlyRootFilesystem") is True and sc.get("capabilities", {}).get("drop") == ["ALL"]
        and sc.get("allowPrivilegeEscalation") is False and psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 else bad)(
        f"chart ({backend}): runAsNonRoot (uid 65532), readOnlyRootFilesystem, drop ALL, no privilege escalation")
    rp = (c.get("readinessProbe") or {}).get("httpGet") or {}
    lp = c.get("livenessProbe") or {}
    (ok if rp.get("path") == "/api/v2/checkpoint" and ("grpc" in lp or "tcpSocket" in lp) else bad)(
        f"chart ({backend}): readiness GET /api/v2/checkpoint; liveness {'gRPC health' if 'grpc' in lp else 'TCP'}")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    (ok if ports == {"http": 3000, "grpc": 3001, "metrics": 2112} else bad)(f"chart ({backend}): container ports {ports}")
    svc = [s for s in kinds.get("Service", []) if s["spec"].get("clusterIP") != "None"]
    sports = {p["name"]: p["port"] for p in svc[0]["spec"]["ports"]} if svc else {}
    (ok if sports == {"http": 3000, "grpc": 3001, "metrics": 2112} else bad)(f"chart ({backend}): Service ports {sports}")
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"] for v in pod["spec"].get("volumes") or []} | {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
    (ok if set(mounts) <= vols else bad)(f"chart ({backend}): every volumeMount has a volume ({', '.join(sorted(mounts))})")
    if backend != "posix":
        (ok if "--signer-filepath=/etc/rekor/signer/signer.pem" in args and mounts.get("signer", {}).get("readOnly") else bad)(
            f"chart ({backend}): signer key from the Secret, mounted read-only, passed as --signer-filepath")
    envs = {e["name"]: e for e in c.get("env") or []}
    if backend == "aws":
        dsn = envs.get("REKOR_AWS_MYSQL_DSN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        (ok if dsn.get("name") == "rekor-mysql" and aws_dsn_env and not any(a.startswith("--aws-mysql-dsn") for a in args) else bad)(
            "chart (aws): MySQL DSN from the Secret into REKOR_AWS_MYSQL_DSN, which --aws-mysql-dsn reads (not in args, so not in the process list)")
        (ok if "tcpSocket" in lp else bad)("chart (aws, gRPC TLS on): liveness falls back to TCP")
        (ok if "REKOR_SIGNER_PASSWORD" in envs else bad)("chart (aws): signer password Secret becomes REKOR_SIGNER_PASSWORD")
    if backend == "gcp":
        (ok if "--checkpoint-interval=1s" in args else bad)("chart (gcp): --checkpoint-interval defaults to 1s")
        (ok if "grpc" in lp else bad)("chart (gcp): liveness uses the gRPC health service")
results.close()
PYEOF
  then
    cat "$WORK/py.txt"
    bad "the Python checks stopped with an error (see above)"
  else
    cat "$WORK/py.txt"
  fi

  # Inline compose scripts: syntax (sh -n) and shellcheck.
  for s in "$WORK"/scripts/*.sh; do
    [ -e "$s" ] || continue
    label="$(basename "$s" .sh | cut -d- -f2-)"
    if sh -n "$s" 2> "$WORK/shn.txt"; then
      ok "sh -n: inline script of $label"
    else
      bad "sh -n: inline script of $label: $(head -3 "$WORK/shn.txt")"
    fi
    if command -v shellcheck >/dev/null 2>&1; then
      if shellcheck -s sh "$s" > "$WORK/sc.txt" 2>&1; then
        ok "shellcheck: inline script of $label"
      else
        bad "shellcheck: inline script of $label: $(head -12 "$WORK/sc.txt")"
      fi
    fi
  done
  command -v shellcheck >/dev/null 2>&1 || skip "shellcheck not installed: compose scripts only checked with sh -n"
fi

# --- This script, the Dockerfile's RUN lines ------------------------------------------------
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck "${BASH_SOURCE[0]}" > "$WORK/sc-self.txt" 2>&1; then
    ok "shellcheck: deploy/check.sh"
  else
    bad "shellcheck: deploy/check.sh: $(head -12 "$WORK/sc-self.txt")"
  fi
fi
if command -v hadolint >/dev/null 2>&1; then
  if hadolint --ignore DL3008 "$ROOT/deploy/Dockerfile" > "$WORK/hadolint.txt" 2>&1; then
    ok "hadolint: deploy/Dockerfile (DL3008, unpinned apt versions, ignored)"
  else
    bad "hadolint: $(head -10 "$WORK/hadolint.txt")"
  fi
else
  skip "hadolint not installed: the Dockerfile is checked by the rules above only"
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  skip "a Docker engine is reachable, but this script builds nothing; see deploy/README.md to build and run"
else
  skip "no Docker engine: images were not built and the compose stacks were not started"
fi

# --- Summary --------------------------------------------------------------------------------
n_ok=$(grep -c '^ok' "$RESULTS" || true)
n_fail=$(grep -c '^FAIL' "$RESULTS" || true)
n_warn=$(grep -c '^warn' "$RESULTS" || true)
n_skip=$(grep -c '^skip' "$RESULTS" || true)
echo "== deploy checks: $n_ok ok, $n_fail failed, $n_warn warnings, $n_skip skipped"
if [ "$n_fail" -gt 0 ] || { [ "$STRICT" = 1 ] && [ "$n_warn" -gt 0 ]; }; then
  exit 1
fi
