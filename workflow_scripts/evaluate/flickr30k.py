"""Flickr30k captioning (Karpathy test split); see ``captioning``. Rescoring: ``... flickr30k score --predictions F
--data dataset_flickr30k.json --out metrics.json``."""

from workflow_scripts.evaluate.captioning import score_file
from workflow_scripts.evaluate.common import score_cli

if __name__ == "__main__":
    score_cli("flickr30k", score_file)
