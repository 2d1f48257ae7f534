"""The command line every report entry shares: ``--config-json`` (the report's config keys) and ``--results``."""

from __future__ import annotations

import argparse
import json


def report_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config-json", required=True)
    ap.add_argument("--results", required=True)
    return ap


def parse(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parsed arguments, with the config decoded as ``args.config``."""
    args = ap.parse_args(argv)
    args.config = json.loads(args.config_json)
    return args
