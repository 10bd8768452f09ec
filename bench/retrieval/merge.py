"""Merge `grace-rl eval retrieval-protocol` / `length_control.py` JSONs into one table JSON (docs/quality/).

python bench/retrieval/merge.py docs/quality/retrieval_protocol.json runs/retrieval_NEW.json ... \
    --out docs/quality/retrieval_protocol.json

Every input must be on the same dev set with the same settings (checked). Rows are keyed by (label, budget) and
comparisons by (a, b): the first input's entry wins, later inputs add what is new (a row cached under one key
is the same in every protocol call, so nothing is recomputed or averaged). `length_control.py` outputs add their
differences as `versus` comparisons (`--rename "base->base+prompt"` maps its labels to the table's: it names the base
under the run's instruction `base`). The bar is kept from the first input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _renamed(spec: str, names: dict[str, str]) -> str:
    """A comparison side `LABEL @BUDGET` with its label renamed."""
    label, at, budget = spec.rpartition(" @")
    return f"{names.get(label, label)}{at}{budget}" if at else names.get(spec, spec)


def merge(results: list[dict[str, Any]], names: dict[str, str] | None = None) -> dict[str, Any]:
    names = names or {}
    out = json.loads(json.dumps(results[0]))
    rows = {(r["label"], r["budget"]) for r in out["rows"]}
    comps = {(c["a"], c["b"]) for c in out["comparisons"]}
    for res in results[1:]:
        if "devset" not in res and "differences" not in res:
            raise ValueError("an input is neither a retrieval-protocol nor a length_control.py JSON")
        if "devset" in res:
            for part in ("devset", "settings"):
                if res[part] != out[part]:
                    raise ValueError(f"{part} differs from the first input's: {res[part]} vs {out[part]}")
            for label, info in res["models"].items():
                out["models"].setdefault(label, info)
            for r in res["rows"]:
                if (r["label"], r["budget"]) not in rows:
                    rows.add((r["label"], r["budget"]))
                    out["rows"].append(r)
        new = res.get("comparisons") or [{"what": "versus", **d} for d in res.get("differences", [])]
        for c in new:
            c = {**c, "a": _renamed(c["a"], names), "b": _renamed(c["b"], names)}
            if (c["a"], c["b"]) not in comps:
                comps.add((c["a"], c["b"]))
                out["comparisons"].append(c)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="JSON files; the first is the base")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rename", action="append", default=[], help="OLD->NEW label (later inputs)")
    args = parser.parse_args()
    bad = [r for r in args.rename if "->" not in r]
    if bad:
        parser.error(f"--rename {bad[0]!r}: expected OLD->NEW")
    try:
        results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.inputs]
        merged = merge(results, dict(r.split("->", 1) for r in args.rename))
    except (OSError, ValueError, KeyError) as err:  # unreadable, not JSON, another dev set, missing fields
        parser.error(f"{type(err).__name__}: {err}")
    Path(args.out).write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"{len(merged['rows'])} rows, {len(merged['comparisons'])} comparisons -> {args.out}")


if __name__ == "__main__":
    main()
