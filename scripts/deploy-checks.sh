#!/usr/bin/env bash
# Checks deploy/ the way a platform engineer would, with the real tools:
#   - promtool check config / rules (Prometheus config and alert rules);
#   - kubernetes-validate --strict of every manifest, for Kubernetes 1.27 to 1.37
#     (the ServiceMonitor is a CRD kubernetes-validate has no schema for: it is
#     checked for the fields the Prometheus Operator needs);
#   - the compose file against the Compose specification's JSON schema;
#   - where a Docker engine runs: build the image, start it, wait for its
#     HEALTHCHECK, report its size.
# `promtool check metrics` on a live scrape runs in the e2e suite (tests/e2e/deploy.rs),
# which needs promtool on PATH: `scripts/deploy-checks.sh --tools-only` installs
# the tools (and `scripts/test.sh` calls it).
#
# Tools: promtool from Debian's `prometheus` package (installed with apt-get when
# missing and running as root); kubernetes-validate and check-jsonschema from PyPI
# into $POLYHEAD_CACHE/venv-deploy; the Compose schema from the docker-compose 1.29.2
# wheel (compose/config/compose_spec.json). Exit status: 0 when every check passes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
VENV="$CACHE/venv-deploy"
SCHEMA="$CACHE/compose_spec.json"
say() { printf '\033[1m[deploy-checks]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[deploy-checks] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------
if ! command -v promtool >/dev/null; then
  [[ $(id -u) == 0 ]] || die "promtool not found: install Debian's prometheus package (or put promtool on PATH)"
  say "installing promtool (Debian package prometheus)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || die "apt-get install prometheus failed"
fi
if [[ ! -x "$VENV/bin/kubernetes-validate" || ! -x "$VENV/bin/check-jsonschema" ]]; then
  say "installing kubernetes-validate and check-jsonschema into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate check-jsonschema || die "pip install failed"
fi
if [[ ! -f "$SCHEMA" ]]; then
  say "fetching the Compose schema (docker-compose 1.29.2 wheel)"
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --no-deps docker-compose==1.29.2 -d "$tmp" || die "pip download failed"
  "$VENV/bin/python" - "$tmp"/docker_compose-1.29.2-*.whl "$SCHEMA" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("compose/config/compose_spec.json"))
PY
  rm -rf "$tmp"
fi
[[ "${1:-}" == "--tools-only" ]] && exit 0

cd "$ROOT/deploy"
# --- Prometheus ----------------------------------------------------------------------
say "promtool check config + rules"
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/alerts.yml

# --- Kubernetes ----------------------------------------------------------------------
for v in 1.27.0 1.28.0 1.29.0 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0; do
  say "kubernetes-validate --strict -k $v"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" k8s/polyhead.yaml k8s/train-job.yaml k8s/train-data.yaml \
    || die "manifests invalid for Kubernetes $v"
done
"$VENV/bin/python" - k8s/servicemonitor.yaml <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    assert d["apiVersion"] == "monitoring.coreos.com/v1" and d["kind"] == "ServiceMonitor", d
    spec = d["spec"]
    assert spec["selector"]["matchLabels"], "selector"
    for e in spec["endpoints"]:
        assert e["port"] == "metrics", e
print(f"{sys.argv[1]}: {len(docs)} ServiceMonitor(s) with selector and endpoints")
PY

# --- Compose -------------------------------------------------------------------------
say "compose.yaml against the Compose specification schema"
"$VENV/bin/check-jsonschema" --schemafile "$SCHEMA" compose.yaml

# --- The image -------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  say "docker build (this machine has a Docker engine)"
  docker build -f "$ROOT/deploy/Dockerfile" -t polyhead:cpu "$ROOT"
  docker image inspect polyhead:cpu --format 'image size: {{.Size}} bytes'
  cid="$(docker run -d -e POLYHEAD__ADMIN__TOKEN=check polyhead:cpu)"
  trap 'docker rm -f "$cid" >/dev/null' EXIT
  for _ in $(seq 90); do
    state="$(docker inspect -f '{{.State.Health.Status}}' "$cid")"
    [[ $state == healthy ]] && { say "container healthy"; break; }
    sleep 2
  done
  [[ $state == healthy ]] || { docker logs "$cid" | tail -20; die "container never became healthy"; }
else
  say "image build skipped: no Docker engine here (docker info failed)"
fi
say "all deploy checks passed"
