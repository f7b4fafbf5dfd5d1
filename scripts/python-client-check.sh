#!/usr/bin/env bash
# The Python client's check (tests/e2e run it against a live server): the stubs are
# fresh, the package installs with pip from the checkout into a venv, and its calls
# answer; and the HTTP API's openapi.json passes openapi-spec-validator. Usage: scripts/python-client-check.sh HOST:PORT TOKEN
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
VENV="$CACHE/venv-client"
"$ROOT/scripts/gen-python-client.sh" --check
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$ROOT/clients/python"
"$VENV/bin/pip" install -q "$ROOT/clients/python"
# The HTTP API's OpenAPI document, checked by a validator of the OpenAPI spec.
"$VENV/bin/python" -c "import openapi_spec_validator" 2>/dev/null || "$VENV/bin/pip" install -q "openapi-spec-validator==0.7.*"
"$VENV/bin/python" - "$ROOT/crates/server/openapi.json" <<'PY'
import json, sys
from openapi_spec_validator import validate
validate(json.load(open(sys.argv[1])))
print("openapi.json is a valid OpenAPI document")
PY
cd "$(mktemp -d)"   # import the installed package, not the checkout
exec "$VENV/bin/python" - "$@" <<'PY'
import sys
from polyhead_client import Client, PolyheadError

addr, token = sys.argv[1], sys.argv[2]
with Client(addr) as c:
    preds = c.classify("a", ["Claim your free prize now", "Agenda for Monday"], top_k=2)
    assert len(preds) == 2 and preds[0].task == "a" and len(preds[0].scores) == 2, preds
    assert abs(sum(preds[0].scores.values()) - 1.0) < 1e-4, preds
    multi = c.classify_multi(["hello"])
    assert sorted(multi) == ["a", "b"], multi
    vec = c.embed(["hello"])[0]
    assert len(vec) == c.info()["dim"], len(vec)
    assert [t.task for t in c.list_tasks()] == ["a", "b"]
    assert c.get_task("a").versions == [1]
    try:
        c.classify("nosuch", ["x"])
        raise SystemExit("NOT_FOUND expected")
    except PolyheadError as e:
        assert e.code == "NOT_FOUND", e
with Client(addr, token=token) as admin:
    rows = [("WIN a FREE prize now", "spam"), ("cheap meds, click", "spam"), ("You won $1000", "spam"),
            ("Lunch at noon?", "ham"), ("Minutes of the meeting", "ham"), ("See you tomorrow", "ham")] * 3
    events = list(admin.train("py", rows, seed=1, windows="never"))
    kinds = {e.kind for e in events}
    assert {"stage", "progress", "done"} <= kinds, kinds
    # The option reached the server: no candidate read every window.
    names = [e.name for e in events if e.kind == "candidate"]
    assert names and not any(n.endswith(" windows") for n in names), names
    done = events[-1]
    assert done.kind == "done" and done.activated and done.version == 1, done
print("python client ok:", preds[0].label, round(preds[0].score, 4), "trained v%d" % done.version)
PY
