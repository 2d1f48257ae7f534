"""CC3M -> webdataset shards with img2dataset, restricted to a subset when one is configured.

The shard folder is not a Snakemake output (Snakemake would delete it before a rerun); the summary json is.
So a rerun after an interruption finds the finished shards and img2dataset's incremental mode downloads
only the rest.

Entry: ``python -m workflow_scripts.data.cc3m --tsv T [--subset chat.json] --shards DIR --summary S.json ...``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import time
from collections import Counter
from urllib.parse import urlparse

from workflow_scripts.data.readers import DataFormatError, read_cc3m_tsv, read_llava_json
from workflow_scripts.io import write_json

ALLOWED_SCHEMES = ("http", "https")


def gcc_id(row: int) -> str:
    """LLaVA's id for a CC3M row (``GCC_train_000000042``)."""
    return f"GCC_train_{row:09d}"


def select_rows(tsv: str, subset: str | None, allow_file_urls: bool) -> list[tuple[str, str, str]]:
    """(caption, url, gcc_id) of every row to download; refuses URL schemes other than http(s) (and file://
    when allowed), naming the line."""
    rows = read_cc3m_tsv(tsv)
    allowed = ALLOWED_SCHEMES + (("file",) if allow_file_urls else ())
    for r in rows:
        scheme = urlparse(r.url).scheme
        if scheme not in allowed:
            raise DataFormatError(tsv, f"line {r.line}", f"URL scheme {scheme!r} not allowed (allowed: {allowed};"
                                  " file:// needs data.cc3m_allow_file_urls: true)")
    if subset is not None:
        wanted = {rec.id for rec in read_llava_json(subset)}
        rows = [r for r in rows if gcc_id(r.row) in wanted]
        if not rows:
            raise DataFormatError(subset, "ids", f"no id of the subset matches a row of {tsv}")
    return [(r.caption, r.url, gcc_id(r.row)) for r in rows]


def drop_empty_captions(rows: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Rows with a caption, and the ids of those without: stage 1 learns nothing from an empty caption, and one
    bad row of a web-scraped list should not stop a 3M-row download."""
    kept = [r for r in rows if r[0].strip()]
    return kept, [r[2] for r in rows if not r[0].strip()]


def write_url_list(rows, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(("caption", "url", "gcc_id"))
        w.writerows(rows)
    os.replace(tmp, path)


def summarize(shards: str, requested: int) -> dict:
    """Totals over img2dataset's per-shard ``*_stats.json``: downloaded, failed by reason, shard list."""
    stats = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(shards, "*_stats.json")))]
    reasons = Counter()
    for s in stats:
        for reason, n in s.get("status_dict", {}).items():
            if reason != "success":
                reasons[re.sub(r"'[^']*'", "'...'", reason)] += n  # group errors that differ only by path/URL
    return {
        "requested": requested,
        "downloaded": sum(s["successes"] for s in stats),
        "failed_to_download": sum(s["failed_to_download"] for s in stats),
        "failed_to_resize": sum(s["failed_to_resize"] for s in stats),
        "failed_by_reason": dict(sorted(reasons.items())),
        "shards": sorted(os.path.basename(p) for p in glob.glob(os.path.join(shards, "*.tar"))),
    }


def download(rows, shards: str, image_size: int, processes: int, threads: int, per_shard: int,
             timeout: int) -> None:
    """Run img2dataset into ``shards`` (webdataset tars, plus its parquet and stats files), resuming."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # img2dataset imports albumentations, which phones home
    from img2dataset import download as img2dataset_download  # heavy import, only when downloading

    os.makedirs(shards, exist_ok=True)
    url_list = os.path.join(shards, "_url_list.tsv")
    write_url_list(rows, url_list)
    img2dataset_download(
        url_list=url_list, input_format="tsv", url_col="url", caption_col="caption",
        save_additional_columns=["gcc_id"], output_format="webdataset", output_folder=shards,
        image_size=image_size, resize_mode="keep_ratio", resize_only_if_bigger=True, encode_format="jpg",
        processes_count=processes, thread_count=threads, number_sample_per_shard=per_shard, timeout=timeout,
        retries=0, incremental_mode="incremental", enable_wandb=False, distributor="multiprocessing")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--subset", default=None, help="LLaVA chat.json listing GCC ids to keep")
    ap.add_argument("--shards", required=True, help="output folder of webdataset shards")
    ap.add_argument("--summary", required=True, help="summary json (written last: marks the download complete)")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--per-shard", type=int, default=10000)
    ap.add_argument("--timeout", type=int, default=10)
    ap.add_argument("--allow-file-urls", action="store_true")
    args = ap.parse_args(argv)
    start = time.time()
    rows, empty = drop_empty_captions(select_rows(args.tsv, args.subset, args.allow_file_urls))
    if empty:
        print(f"skipped {len(empty)} row(s) with an empty caption, e.g. {empty[:3]}", flush=True)
    print(f"{len(rows)} rows to fetch into {args.shards}", flush=True)
    download(rows, args.shards, args.image_size, args.processes, args.threads, args.per_shard, args.timeout)
    summary = summarize(args.shards, len(rows))
    summary["skipped_empty_caption"] = len(empty)
    summary["seconds"] = round(time.time() - start, 1)
    write_json(args.summary, summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
