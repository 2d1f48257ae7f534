"""The fetch stage inside the DAG: from an empty data root, Snakemake fetches every input (a loopback file server)
and every pinned model (a stand-in for the hub, HF_ENDPOINT) before preflight; a rerun fetches nothing; offline,
with the servers gone, what is there is verified and used."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import snakemake, subprocess_env
from loopback import FileServer, HubServer

from workflow_scripts import study

REV = "0123456789abcdef0123456789abcdef01234567"


def _serve_world(world_config: dict, web: Path, hub: HubServer, url: str) -> dict:
    """The toy world's inputs as downloads: files as they are, folders as zip archives (the folder at the
    archive's top level, as COCO's val2014.zip holds val2014/); the instruct json as a hub dataset file."""
    table = {}
    for key in study.DATA_KEYS:
        path = study.data_path(world_config, key)
        if path is None:
            continue
        rel = os.path.relpath(path, world_config["data_root"])
        if key == "instruct_json":
            repo = web / "hub_instruct"
            repo.mkdir()
            shutil.copy(path, repo / Path(path).name)
            hub.add("liuhaotian/Toy-Instruct", repo, REV, repo_type="dataset")
            table[key] = {"provides": [key], "to": rel,
                          "hub": {"repo": "liuhaotian/Toy-Instruct", "revision": REV, "file": Path(path).name}}
        elif os.path.isdir(path):
            archive = web / f"{key}.zip"
            with zipfile.ZipFile(archive, "w") as z:
                for f in sorted(Path(path).rglob("*")):
                    if f.is_file():
                        z.write(f, (Path(Path(path).name) / f.relative_to(path)).as_posix())
            table[key] = {"provides": [key], "url": f"{url}/{archive.name}", "to": f"downloads/{archive.name}",
                          "unpack": {"into": os.path.dirname(rel) or ".", "makes": [Path(path).name]}}
        else:
            shutil.copy(path, web / f"{key}{Path(path).suffix}")
            table[key] = {"provides": [key], "url": f"{url}/{key}{Path(path).suffix}", "to": rel}
    return table


@pytest.fixture
def fetch_study(smoke_world, tiny_base_models, tmp_path):
    world_config, _ = smoke_world
    web = tmp_path / "web"
    web.mkdir()
    files, hub = FileServer(web), HubServer()
    llm, vision = tiny_base_models
    hub.add("toy/llm", llm, REV)
    hub.add("toy/vision", vision, REV)
    table = _serve_world(world_config, web, hub, files.url)
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(table))
    config = {k: v for k, v in world_config.items() if k != "toy_world"}
    config.update(data_root=str(tmp_path / "data"), results_root=str(tmp_path / "results"),
                  fetch={"sources": str(tmp_path / "sources.yaml")})
    config["models"] = {"smoke-vicuna": {**world_config["models"]["smoke-vicuna"], "path": "toy/llm",
                                         "revision": REV}}
    config["vision"] = {**world_config["vision"], "path": "toy/vision", "revision": REV}
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1")
    yield config, table, env, files, hub
    files.close()
    hub.close()


def _run(tmp_path: Path, config: dict, env: dict, *args: str):
    """Snakemake on ``config``: ``args`` (preflight's output when no target is among them)."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    preflight = f"{config['results_root']}/preflight/inputs.json"
    targets = [] if any(a.startswith("/") for a in args) else ["fetch", preflight]
    return snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2", *args, *targets, env=env)


def test_the_dag_fetches_every_input_and_model_before_preflight(fetch_study, tmp_path):
    config, table, env, files, hub = fetch_study
    run = _run(tmp_path, config, env)
    assert run.returncode == 0, run.stderr[-4000:]
    data = Path(config["data_root"])
    for name in table:
        receipt = json.loads((data / "fetched" / f"{name}.json").read_text())
        # (an archive whose folder another one already brought, e.g. coco/train2017 inside coco/, is not fetched)
        assert receipt.get("sha256") or receipt["source"] == "already unpacked", name
    for repo in ("toy/llm", "toy/vision"):
        receipt = json.loads((data / "models" / repo / "fetched.json").read_text())
        assert receipt["revision"] == REV and "model.safetensors" in receipt["files"]
    found = json.loads((Path(config["results_root"]) / "preflight" / "inputs.json").read_text())
    assert set(found) - {"data_root"} == set(table)  # preflight read every fetched input
    # the jobs get the fetched folder, never the hub id
    dry = _run(tmp_path, config, env, "-n", "--forcerun", "pretrain_connector", "--",
               f"{config['results_root']}/pretrain/smoke-vicuna/"
               "connector.safetensors")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert f"--llm {data}/models/toy/llm " in dry.stdout and f"--vision {data}/models/toy/vision " in dry.stdout
    # every repo request was one the stand-in serves (the client also asks for unrelated endpoints)
    assert [u for u in hub.unknown if u.startswith(("/api/models/", "/api/datasets/"))] == []

    # a rerun fetches nothing
    before = len(files.requests)
    again = _run(tmp_path, config, env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]
    assert len(files.requests) == before

    # switching to offline, or filling in a file's published size and hash, reruns nothing
    offline = {**config, "fetch": {**config["fetch"], "offline": True}}
    receipt = json.loads((data / "fetched" / "cc3m_subset.json").read_text())
    table["cc3m_subset"].update(size=receipt["size"], sha256=receipt["sha256"])
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(table))
    dry = _run(tmp_path, offline, env, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]

    # offline on a node without the servers: receipts gone, files there -> verified and used, nothing fetched
    files.close()
    hub.close()
    shutil.rmtree(data / "fetched")
    for repo in ("toy/llm", "toy/vision"):
        (data / "models" / repo / "fetched.json").unlink()
    run = _run(tmp_path, offline, env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert all((data / "fetched" / f"{name}.json").exists() for name in table)

    # offline and a file missing: the fetch fails naming it
    (data / "fetched" / "cc3m_subset.json").unlink()
    os.remove(study.data_path(config, "cc3m_subset"))
    run = _run(tmp_path, offline, env, str(data / "fetched" / "cc3m_subset.json"))
    assert run.returncode != 0
    log = (Path(config["results_root"]) / "logs" / "fetch_data" / "cc3m_subset.log").read_text()
    assert "missing, and fetching is offline" in log and "cc3m_subset" in log
