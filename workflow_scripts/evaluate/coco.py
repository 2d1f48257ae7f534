"""MSCOCO captioning (Karpathy test split); see ``captioning``. Rescoring: ``... coco score --predictions F
--data dataset_coco.json --out metrics.json``."""

from workflow_scripts.evaluate.captioning import score_file
from workflow_scripts.evaluate.common import score_cli

if __name__ == "__main__":
    score_cli("coco", score_file)
