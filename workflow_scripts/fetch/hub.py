"""Models and data files from the Hugging Face hub at a pinned revision, into local folders.

Jobs never reach the hub: this runs in the fetch rules (on the submit host under SLURM), and the training and
evaluation jobs read the folders it fills with ``HF_HUB_OFFLINE=1``. The hub's own client does the transfer
(resume, retries, the token from ``HF_TOKEN``); this module lists the revision first, so a gated repo without a
token, a revision that does not exist, or a repo without weights fails before any byte moves, with what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import save_file

from workflow_scripts.fetch.files import FetchError, verify, verify_present
from workflow_scripts.io import sha256_file

# What a model folder needs besides its weights (tokenizer, configs, processor).
SIDE_FILES = ["*.json", "*.model", "*.txt", "*.py.lock"]


def repo_files(repo: str, revision: str, repo_type: str = "model") -> dict[str, dict]:
    """{path: {size, sha256 (LFS files; None for small git files)}} at ``revision``; raises FetchError naming the
    repo and what to do for a gated repo, a missing repo or a missing revision."""
    api = HfApi()
    try:
        entries = api.list_repo_tree(repo, recursive=True, revision=revision, repo_type=repo_type)
        files = {e.path: {"size": e.size, "sha256": e.lfs.sha256 if e.lfs else None}
                 for e in entries if hasattr(e, "size")}
    except GatedRepoError:
        page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo}"
        token = "HF_TOKEN is set, but its account has no access" if os.environ.get("HF_TOKEN") else "HF_TOKEN is unset"
        raise FetchError(f"{repo} is gated ({token}): accept the licence at {page} with your account, then "
                         "export HF_TOKEN=<a read token of that account> and rerun") from None
    except RevisionNotFoundError:
        raise FetchError(f"{repo}: revision {revision} does not exist (config: the model's revision:)") from None
    except RepositoryNotFoundError:
        raise FetchError(f"{repo}: no such {repo_type} repository on the hub (or it is private and HF_TOKEN "
                         "cannot see it)") from None
    except HfHubHTTPError as e:  # e.g. 401 for a mistyped or revoked HF_TOKEN, on public repos too
        status = e.response.status_code if e.response is not None else "?"
        raise FetchError(f"{repo}: the hub answered HTTP {status}: {str(e).splitlines()[0]}"
                         + (" (check HF_TOKEN: unset it for public repos, or create a new read token)"
                            if status == 401 else "")) from None
    return files


def weight_files(files: dict) -> tuple[list[str], str]:
    """The weight files to fetch and their format: safetensors when the revision has them, else PyTorch .bin
    (converted once by ``convert_bin``). Raises FetchError when there are neither."""
    safetensors = sorted(f for f in files if f.endswith(".safetensors") and "/" not in f)
    if safetensors:
        return safetensors, "safetensors"
    bins = sorted(f for f in files if f.endswith(".bin") and "/" not in f and f.startswith("pytorch_model"))
    if bins:
        return bins, "bin"
    raise FetchError(f"no weights at the top level of the repo (files: {sorted(files)[:12]})")


def convert_bin(folder: Path, bins: list[str], hashed: dict[str, str] | None = None) -> list[dict]:
    """PyTorch .bin shards -> safetensors, once, with weights-only loading (a pickle can run code; this cannot).
    The index is rewritten to name the new shards; the .bin files are removed after the conversion is written.
    Returns one record per shard: source and result with their sha256 (``hashed``: shards already hashed)."""
    done, renamed = [], {}
    for name in bins:
        state = torch.load(folder / name, map_location="cpu", weights_only=True)
        # safetensors refuses tensors that share storage (tied weights): store each its own copy
        seen, tensors = set(), {}
        for key, t in state.items():
            ptr = t.untyped_storage().data_ptr()
            tensors[key] = t.clone().contiguous() if ptr in seen else t.contiguous()
            seen.add(ptr)
        out = name.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        tmp = folder / f".{out}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / out)
        renamed[name] = out
        done.append({"from": name, "from_sha256": (hashed or {}).get(name) or sha256_file(folder / name),
                     "to": out, "to_sha256": sha256_file(folder / out)})
    index = folder / "pytorch_model.bin.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {k: renamed[v] for k, v in data["weight_map"].items()}
        (folder / "model.safetensors.index.json").write_text(json.dumps(data, indent=2))
        index.unlink()
    for name in bins:
        (folder / name).unlink()
    return done


def fetch_model(repo: str, revision: str, folder: str | os.PathLike) -> dict:
    """A model repo at ``revision`` into ``folder`` (configs, tokenizer, safetensors weights); returns the record
    a receipt keeps: the revision, every file with its size and sha256, and any .bin conversion."""
    folder = Path(folder)
    try:
        files = repo_files(repo, revision)
        weights, fmt = weight_files(files)
    except FetchError as e:
        raise FetchError(f"model {repo}@{revision}: {e}") from None
    # an earlier fetch converted them: never download the .bin shards again
    converted_before = fmt == "bin" and any((folder / n).exists()
                                            for n in ("model.safetensors", "model.safetensors.index.json"))
    snapshot_download(repo, revision=revision, local_dir=folder,
                      allow_patterns=SIDE_FILES + ([] if converted_before else weights))
    record = {"repo": repo, "revision": revision, "weights_as_published": fmt, "files": {}}
    for name in sorted(f for f in files if (folder / f).is_file()):
        # LFS files carry their sha256 in the listing: a transfer that does not match it is an error here
        record["files"][name] = verify(folder / name, files[name]["size"], files[name]["sha256"])
    if fmt == "bin":
        if converted_before:
            (folder / "pytorch_model.bin.index.json").unlink(missing_ok=True)  # fetched again with the configs
        record["converted"] = "by an earlier fetch" if converted_before else convert_bin(
            folder, weights, {n: f["sha256"] for n, f in record["files"].items()})
        # the folder as it now is: the safetensors shards and their index instead of the .bin ones; files already
        # hashed (the listing's, the conversion's) are not read again
        known = {n: f for n, f in record["files"].items() if (folder / n).exists()}
        if converted_before is False:
            known.update({c["to"]: {"size": (folder / c["to"]).stat().st_size, "sha256": c["to_sha256"]}
                          for c in record["converted"]})
        kept = [p.name for p in folder.iterdir()
                if p.is_file() and (p.name in files or p.name.startswith("model"))]
        record["files"] = {name: known.get(name) or verify(folder / name, None, None) for name in sorted(kept)}
    return record


def fetch_file(repo: str, revision: str, filename: str, dest: str | os.PathLike, repo_type: str = "dataset",
               size: int | None = None, sha256: str | None = None) -> dict:
    """One file of a hub repo at ``revision`` to ``dest``; verified against the listing (and the source table's
    size / sha256 where given). Returns {size, sha256, revision}."""
    try:
        listed = repo_files(repo, revision, repo_type).get(filename)
    except FetchError as e:
        raise FetchError(f"{repo_type} {repo}@{revision}: {e}") from None
    if listed is None:
        raise FetchError(f"{repo}@{revision} has no file {filename}")
    dest = Path(dest)
    got = hf_hub_download(repo, filename, revision=revision, repo_type=repo_type, local_dir=dest.parent / ".hub")
    verify(got, size or listed["size"], sha256 or listed["sha256"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, dest)
    return {**verify_present(dest, size or listed["size"], sha256 or listed["sha256"]), "revision": revision}
