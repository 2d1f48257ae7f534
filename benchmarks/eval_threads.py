"""Why the demo profile runs evaluations with one thread each: two small-model evaluation jobs side by side
(one thread each) against the same two jobs one after the other (two threads each), on this machine's cores.

Run after `make demo` and `snakemake --profile profiles/demo results/demo/finetune/toy-vicuna/layernorm/0.001/export`
(merged models are temporary outputs): `.venv/bin/python benchmarks/eval_threads.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from snakemake.utils import validate  # noqa: E402

MODEL = "results/demo/finetune/toy-vicuna/layernorm/0.001/export/model"
BENCHES = ("flickr30k", "vqav2")


def evaluation(bench: str, threads: int, out: str, config_json: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate.run", "--bench", bench, "--config-json", config_json,
           "--template", "vicuna_v1", "--model", MODEL, "--out-dir", out, "--threads", str(threads)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))


def main() -> None:
    if not (REPO / MODEL).exists():
        sys.exit(f"{MODEL} is missing: after `make demo`, rebuild the (temporary) merged model with\n"
                 f"  snakemake --profile profiles/demo {MODEL.removesuffix('/model')}")
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    validate(config, str(REPO / "config/schema.yaml"))
    config_json = json.dumps({k: v for k, v in config.items() if k not in ("toy_world", "models", "strategies")})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for bench in BENCHES:
            assert evaluation(bench, 2, f"{tmp}/seq_{bench}", config_json).wait() == 0
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        jobs = [evaluation(bench, 1, f"{tmp}/par_{bench}", config_json) for bench in BENCHES]
        assert all(job.wait() == 0 for job in jobs)
        parallel = time.perf_counter() - start
        same = all(Path(f"{tmp}/seq_{b}/predictions.jsonl").read_text() ==
                   Path(f"{tmp}/par_{b}/predictions.jsonl").read_text() for b in BENCHES)
    print(f"{' + '.join(BENCHES)} one after the other, 2 threads each: {sequential:.1f} s")
    print(f"the same side by side, 1 thread each: {parallel:.1f} s")
    print(f"throughput ratio: {sequential / parallel:.2f}x; identical predictions: {same}")


if __name__ == "__main__":
    main()
