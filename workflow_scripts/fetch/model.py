"""Fetch one model repo at its pinned revision into a local folder and write its receipt.

Entry: ``python -m workflow_scripts.fetch.model --repo ORG/NAME --revision SHA --folder DIR --receipt OUT``.
The receipt (written last) lists every file with its size and sha256, and any .bin -> safetensors conversion;
training and evaluation jobs read only the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workflow_scripts.fetch.files import FetchError
from workflow_scripts.fetch.hub import fetch_model
from workflow_scripts.io import sha256_file, write_json


def present_model(repo: str, revision: str, folder: str) -> dict:
    """Offline: a model folder someone put in place counts once it has a config and safetensors weights; the
    receipt records their hashes (nothing is checked against the hub, which cannot be reached)."""
    root = Path(folder)
    weights = sorted(root.glob("*.safetensors"))
    if not (root / "config.json").is_file() or not weights:
        raise FetchError(f"model {repo}@{revision}: {folder} lacks config.json or *.safetensors, and fetching is "
                         f"offline (fetch.offline: true): copy the folder from a machine that fetched it (its "
                         f"{Path(folder).name}/fetched.json lists every file and hash)")
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(root.iterdir())
             if p.is_file() and p.name != "fetched.json"}
    return {"repo": repo, "revision": revision, "weights_as_published": "unknown (placed offline)", "files": files}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--revision", required=True)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--receipt", required=True)
    ap.add_argument("--offline", type=int, default=0, choices=[0, 1],
                    help="1: take the folder as it is (copied from a machine that fetched it); check it holds a model")
    args = ap.parse_args(argv)
    try:
        record = present_model(args.repo, args.revision, args.folder) if args.offline else \
            fetch_model(args.repo, args.revision, args.folder)
    except FetchError as e:
        print(f"fetch failed: {e}", file=sys.stderr)
        sys.exit(1)
    write_json(args.receipt, record)
    print(json.dumps({k: v for k, v in record.items() if k != "files"}, indent=2))
    print(f"{len(record['files'])} files, {sum(f['size'] for f in record['files'].values()) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
