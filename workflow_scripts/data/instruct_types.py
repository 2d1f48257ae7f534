"""The data-type ablation's pool: LLaVA's per-type instruct files joined into one json, each record tagged with its
type. ``llava_instruct_80k.json`` carries no type tag and holds no detail descriptions (it is 40K conversation +
40K complex reasoning); LLaVA ships the types as ``conversation_58k.json``, ``detail_23k.json`` and
``complex_reasoning_77k.json`` (together the 150K set), from which the 20K subsets of each type are drawn.

Entry: ``python -m workflow_scripts.data.instruct_types --type conversation=F [--type NAME=FILE ...] --out T``.
"""

from __future__ import annotations

import argparse
import json

from workflow_scripts.data.readers import read_llava_json
from workflow_scripts.io import write_json


def tagged_records(typed_files: dict[str, str]) -> list[dict]:
    """Every record of each per-type file, in file order, as a LLaVA json object with ``type`` set to the
    file's type (a record that already carries another type is refused, naming it)."""
    rows = []
    for name, path in typed_files.items():
        for i, r in enumerate(read_llava_json(path)):
            if r.type not in (None, name):
                raise ValueError(f"{path}: record {i} (id {r.id!r}) is tagged {r.type!r}, listed as {name!r}")
            row = {"id": r.id, "conversations": [{"from": f, "value": v} for f, v in r.conversations], "type": name}
            if r.image is not None:
                row["image"] = r.image
            rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--type", action="append", required=True, metavar="NAME=FILE", help="one per type")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    typed = dict(spec.split("=", 1) for spec in args.type)
    rows = tagged_records(typed)
    write_json(args.out, rows, indent=None)
    counts = {name: sum(r["type"] == name for r in rows) for name in typed}
    print(json.dumps({"records": len(rows), "by_type": counts}))


if __name__ == "__main__":
    main()
