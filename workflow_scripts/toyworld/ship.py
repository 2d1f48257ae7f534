"""Copy the toy base models that `make toy-models` trained into toy_models/, the folder the demo reads them from
(the demo treats them as inputs, as the paper treats Vicuna and CLIP). Each model folder is replaced whole, and
only once its copy is complete; the training metrics go with it as ``training_metrics.json``.

Entry: ``python -m workflow_scripts.toyworld.ship BUILT SHIPPED METRICS`` (``BUILT/{llm,vision}`` from the toy
rules, ``METRICS/{llm,vision}_metrics.json``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from workflow_scripts.io import atomic_dir

KINDS = ("llm", "vision")


def ship(built: Path, shipped: Path, metrics: Path) -> list[Path]:
    """Replace ``shipped/<kind>`` by the files of ``built/<kind>`` plus its metrics; returns the new folders."""
    for kind in KINDS:  # check everything before replacing anything
        for needed in (built / kind / "config.json", built / kind / "model.safetensors",
                       metrics / f"{kind}_metrics.json"):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed}: missing; run the toy rules first (make toy-models)")
    done = []
    for kind in KINDS:
        target = shipped / kind
        with atomic_dir(target) as staging:
            for f in sorted((built / kind).iterdir()):
                if f.is_file():
                    shutil.copyfile(f, staging / f.name)
            shutil.copyfile(metrics / f"{kind}_metrics.json", staging / "training_metrics.json")
        done.append(target)
    return done


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("built", type=Path)
    ap.add_argument("shipped", type=Path)
    ap.add_argument("metrics", type=Path)
    args = ap.parse_args(argv)
    for folder in ship(args.built, args.shipped, args.metrics):
        print(f"shipped {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")


if __name__ == "__main__":
    main()
