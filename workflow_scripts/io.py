"""Atomic file and folder writes: a reader (or Snakemake) never sees a half-written output."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary sibling, then rename it over ``path`` (a rename is atomic on one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    """Write JSON atomically (see ``write_text``)."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_csv(path: str | os.PathLike, columns: list[str], rows: list[dict]) -> str:
    """Write rows as CSV to a temporary sibling, then rename it over ``path``; returns the CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
    return buf.getvalue()


def config_to_csv_main(argv, description: str, columns: list[str], rows_of) -> str:
    """Entry of a script that turns ``--config-json`` into the CSV ``--out`` via ``rows_of(config)``."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config-json", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    return write_csv(args.out, columns, rows_of(json.loads(args.config_json)))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder to fill; on success it replaces ``path`` whole, on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
