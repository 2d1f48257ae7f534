"""Fetch one entry of the sources table (config/sources.yaml) into the data root and write its receipt.

Entry: ``python -m workflow_scripts.fetch.data --name NAME --sources TABLE --data-root DIR --receipt OUT
[--offline 0|1]``. The receipt (written last, atomically) records what was fetched: source, size, sha256, the
unpacked folders. A rerun with the receipt in place does nothing; one without it verifies what is there and
downloads only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from workflow_scripts.fetch.files import FetchError, download, unpack, verify_present
from workflow_scripts.io import write_json


def load_sources(path: str) -> dict:
    """The sources table, checked: every entry has a destination and exactly one way to get it."""
    with open(path) as f:
        table = yaml.safe_load(f) or {}
    for name, entry in table.items():
        ways = [w for w in ("url", "hub") if w in entry]
        if "to" not in entry or len(ways) > 1 or not (ways or "manual" in entry):
            raise FetchError(f"{path}: entry {name!r} needs `to` and one of url / hub (or `manual` alone)")
        if "unpack" in entry and not entry["unpack"].get("makes"):
            raise FetchError(f"{path}: entry {name!r} unpacks, so it needs unpack.makes (the top-level names the "
                             "archive creates, how an unpacked copy is recognised)")
    return table


def identity(entry: dict) -> dict:
    """What makes an entry the file it is (where from, where to, how unpacked): a change fetches it again. How it is
    checked (size, sha256) and the steps for a person are not part of it: filling them in refetches nothing."""
    return {k: entry[k] for k in ("url", "hub", "to", "unpack") if k in entry}


def _overlap(a: str, b: str) -> bool:
    """Whether one of two data-root-relative paths is the other or lies inside it ("." holds everything)."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or "." in (a, b) or a.startswith(b + os.sep) or b.startswith(a + os.sep)


def wanted(config: dict, table: dict) -> list[str]:
    """The entries that fill a data key this config sets, at the path the config gives it: two versions of an
    input (POPE at LLaVA's commit under pope/, the current files under pope_current/) are chosen by the path."""
    from workflow_scripts import study

    names = []
    for name, entry in table.items():  # (a provides key that is a dotted config path: see study.data_path)
        target = entry["unpack"]["into"] if "unpack" in entry else entry["to"]
        for key in entry.get("provides", []):
            path = study.data_path(config, key)
            if path is not None and _overlap(os.path.relpath(path, config["data_root"]), target):
                names.append(name)
                break
    return sorted(names)


def _unpacked_present(entry: dict, data_root: Path) -> bool:
    """Whether everything the archive creates is in place (it may have been unpacked, or put there, by hand)."""
    into = data_root / entry["unpack"]["into"]
    return all((into / name).exists() for name in entry["unpack"]["makes"])


def fetch_entry(name: str, entry: dict, data_root: str, offline: bool = False) -> dict:
    """Bring one source to ``data_root``; returns the receipt. Raises FetchError with what to do."""
    root = Path(data_root)
    dest = root / entry["to"]
    receipt = {"name": name, "to": entry["to"], "provides": entry.get("provides", [])}
    if "unpack" in entry and not dest.exists() and _unpacked_present(entry, root):
        # the archive was deleted after unpacking, or the folder put in place by hand: the readers take the folder
        # (preflight checks its contents); never downloaded again for its archive
        return {**receipt, "source": "already unpacked",
                "checked": f"{', '.join(entry['unpack']['makes'])} present under {entry['unpack']['into']}"}
    if "url" not in entry and "hub" not in entry or (offline and "hub" in entry and not dest.exists()):
        # a manual input (or a hub file while offline): it counts once a person has put it there
        if dest.is_dir():
            return {**receipt, "source": "placed by hand", "checked": "folder present"}
        if dest.is_file():
            return {**receipt, "source": "placed by hand",
                    **verify_present(dest, entry.get("size"), entry.get("sha256"))}
        steps = entry.get("manual", "")
        if offline and ("hub" in entry or "url" in entry):
            steps = f"fetching is offline; copy {entry['to']} from a machine that has it" + (
                f"\n  {steps}" if steps else "")
        raise FetchError(f"{name}: {dest} is missing.\n  {steps}\n  expected: {entry['to']} under data_root"
                         + (f", {entry['size']} bytes" if entry.get("size") else "")
                         + (f", sha256 {entry['sha256']}" if entry.get("sha256") else ""))
    try:
        if "hub" in entry and not dest.exists():
            from workflow_scripts.fetch import hub  # torch and the hub client: not at the DAG's parse time

            h = entry["hub"]
            found = hub.fetch_file(h["repo"], h["revision"], h["file"], dest, h.get("type", "dataset"),
                                   entry.get("size"), entry.get("sha256"))
            receipt["source"] = f"hub:{h.get('type', 'dataset')}/{h['repo']}@{h['revision']}/{h['file']}"
        else:
            there = dest.exists()
            found = download(entry["url"], dest, entry.get("size"), entry.get("sha256"), offline=offline) \
                if "url" in entry else verify_present(dest, entry.get("size"), entry.get("sha256"))
            receipt["source"] = "already present (not downloaded)" if there else entry["url"]
    except FetchError as e:
        raise FetchError(f"{name}: {e}" + (f"\n  {entry['manual']}" if entry.get("manual") else "")) from None
    receipt.update(found)
    if "unpack" in entry:
        u = entry["unpack"]
        receipt["unpacked"] = {"into": u["into"],
                               "made": unpack(dest, root / u["into"], u.get("members"), u.get("makes"))}
    return receipt


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--sources", required=True, help="the sources table (config/sources.yaml)")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--receipt", required=True)
    ap.add_argument("--offline", type=int, default=0, choices=[0, 1], help="1: never touch the network")
    args = ap.parse_args(argv)
    try:
        receipt = fetch_entry(args.name, load_sources(args.sources)[args.name], args.data_root, bool(args.offline))
    except FetchError as e:
        print(f"fetch {args.name} failed: {e}", file=sys.stderr)
        sys.exit(1)
    write_json(args.receipt, receipt)
    print(json.dumps(receipt, indent=2))


if __name__ == "__main__":
    main()
