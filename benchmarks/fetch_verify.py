"""What verifying a fetched file costs: sha256 and an archive's CRC check against reading the same bytes.

The fetch stage reads every file once more after it arrives (its sha256; for an archive without a published hash,
every member through its CRC too). This prints the throughput of each against a plain read of the same file in
the same run (the baseline), and the minutes each would take on COCO's train2017.zip (18 GB, cocodataset.org's
figure) at the measured rates. A file of random bytes stands in: compressed images do not compress, so a zip of
them is stored data plus CRCs, as here.

    .venv/bin/python benchmarks/fetch_verify.py [--mib 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile

from workflow_scripts.fetch.files import check_archive
from workflow_scripts.io import sha256_file

COCO_TRAIN2017_GB = 18  # the zip, as cocodataset.org lists it


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def read_all(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=512, help="size of the stand-in archive")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "train2017.zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:  # COCO's zips store the JPEGs
            for i in range(args.mib):
                z.writestr(f"train2017/{i:012d}.jpg", os.urandom(1 << 20))
        size = os.path.getsize(archive)
        read_all(archive)  # warm the page cache: every measurement then reads from memory alike
        rates = {name: size / timed(fn) / 2**20 for name, fn in (
            ("read (baseline)", lambda: read_all(archive)),
            ("sha256", lambda: sha256_file(archive)),
            ("zip CRC check", lambda: check_archive(archive, "train2017.zip")))}
    base = rates["read (baseline)"]
    print(f"stand-in archive: {size / 2**20:.0f} MiB, from the page cache")
    print(f"{'':16s} {'MiB/s':>8s} {'vs read':>8s} {'18 GB zip':>10s}")
    for name, rate in rates.items():
        minutes = COCO_TRAIN2017_GB * 1e9 / 2**20 / rate / 60
        print(f"{name:16s} {rate:8.0f} {rate / base:8.2f} {minutes:8.1f} min")


if __name__ == "__main__":
    main()
