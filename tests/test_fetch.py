"""The fetch stage against loopback stand-ins: a file server with Range requests and the hub's HTTP API
(HF_ENDPOINT). Resume after an interruption, a corrupt download, offline mode, the real archive layouts, a gated
repo without a token, a .bin-only repo converted once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from loopback import FileServer, HubServer

from workflow_scripts.fetch import data as fetch_data
from workflow_scripts.fetch.files import FetchError, download, unpack
from workflow_scripts.io import sha256_file

REV = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    server = FileServer(web)
    yield web, server
    server.close()


def test_interrupted_download_resumes_from_its_part_file(files, tmp_path):
    web, server = files
    blob = os.urandom(300_000)
    (web / "big.bin").write_bytes(blob)
    dest = tmp_path / "data" / "big.bin"
    dest.parent.mkdir()
    # an earlier run stopped after 100,000 bytes
    (dest.parent / "big.bin.part").write_bytes(blob[:100_000])
    expected = hashlib.sha256(blob).hexdigest()  # known: a damaged prefix would be caught, so resuming is safe
    found = download(f"{server.url}/big.bin", dest, size=len(blob), sha256=expected)
    assert dest.read_bytes() == blob and not (dest.parent / "big.bin.part").exists()
    assert found["sha256"] == sha256_file(dest)
    assert ("GET", "/big.bin", "bytes=100000-") in server.requests  # only the rest was asked for


def test_connection_cut_mid_transfer_still_ends_with_the_whole_file(files, tmp_path):
    web, server = files
    blob = os.urandom(200_000)
    (web / "cut.bin").write_bytes(blob)
    server.cut_after["cut.bin"] = 50_000
    dest = tmp_path / "cut.bin"
    download(f"{server.url}/cut.bin", dest, size=len(blob))
    assert dest.read_bytes() == blob  # retried by the client; the cut bytes never leave a hole or a duplicate
    assert len([p for (_, p, _) in server.requests if p == "/cut.bin"]) == 2


def test_corrupt_download_is_set_aside_and_never_used(files, tmp_path):
    web, server = files
    (web / "f.json").write_text('{"a": 1}')
    dest = tmp_path / "f.json"
    with pytest.raises(FetchError, match="does not match"):
        download(f"{server.url}/f.json", dest, sha256="0" * 64)
    assert not dest.exists()
    assert len(list(tmp_path.glob("f.json.part.corrupt-*"))) == 1
    # the right hash fetches it cleanly
    download(f"{server.url}/f.json", dest, sha256=sha256_file(web / "f.json"))
    assert json.loads(dest.read_text()) == {"a": 1}


def test_offline_uses_what_is_there_and_downloads_nothing(files, tmp_path):
    web, server = files
    (web / "x.txt").write_text("x")
    with pytest.raises(FetchError, match="offline"):
        download(f"{server.url}/x.txt", tmp_path / "x.txt", offline=True)
    (tmp_path / "x.txt").write_text("x")
    assert download(f"{server.url}/x.txt", tmp_path / "x.txt", size=1, offline=True)["size"] == 1
    with pytest.raises(FetchError, match="1 bytes, expected 2"):  # present but wrong: an error, kept in place
        download(f"{server.url}/x.txt", tmp_path / "x.txt", size=2, offline=True)
    assert server.requests == [] and (tmp_path / "x.txt").exists()


def _zip(path: Path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)


def test_karpathy_and_vqav2_archives_unpack_into_the_configured_layout(files, tmp_path):
    """The real archives' member names: caption_datasets.zip holds the three dataset_*.json at its top level;
    v2_Questions_Val_mscoco.zip holds v2_OpenEnded_mscoco_val2014_questions.json; val2014.zip holds val2014/."""
    web, server = files
    _zip(web / "caption_datasets.zip", {"dataset_coco.json": b"{}", "dataset_flickr30k.json": b"{}",
                                        "dataset_flickr8k.json": b"{}"})
    _zip(web / "v2_Questions_Val_mscoco.zip", {"v2_OpenEnded_mscoco_val2014_questions.json": b"{}"})
    _zip(web / "val2014.zip", {"val2014/COCO_val2014_000000000042.jpg": b"jpg"})
    _zip(web / "train2014.zip", {"train2014/COCO_train2014_000000000009.jpg": b"jpg"})
    table = yaml.safe_load((ROOT / "config" / "sources.yaml").read_text())
    root = tmp_path / "data"
    for name in ("karpathy_splits", "vqav2_val_questions", "coco_val2014", "coco_train2014"):
        entry = {**table[name], "url": f"{server.url}/{Path(table[name]['url']).name}"}
        receipt = fetch_data.fetch_entry(name, entry, str(root))
        assert receipt["sha256"] == sha256_file(root / entry["to"])
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    from workflow_scripts import study

    config["data_root"] = str(root)
    for key in ("coco_karpathy_json", "flickr30k_karpathy_json", "vqav2_questions", "vqav2_images", "pope_images"):
        assert os.path.exists(study.data_path(config, key)), key
    assert (root / "coco" / "train2014").is_dir() and (root / "coco" / "val2014").is_dir()  # both under coco/


def test_unpack_refuses_an_archive_without_the_expected_members(tmp_path):
    _zip(tmp_path / "a.zip", {"other/x": b"1"})
    with pytest.raises(FetchError, match="no entries under 'val2014/'"):
        unpack(tmp_path / "a.zip", tmp_path / "out", "val2014/")
    assert not any((tmp_path / "out").iterdir())  # nothing half-unpacked left behind


def test_manual_input_fails_with_its_steps_and_counts_once_placed(tmp_path):
    table = fetch_data.load_sources(str(ROOT / "config" / "sources.yaml"))
    with pytest.raises(FetchError, match="ConceptualCaptions/download") as e:
        fetch_data.fetch_entry("cc3m_tsv", table["cc3m_tsv"], str(tmp_path))
    assert "cc3m/Train_GCC-training.tsv" in str(e.value)
    (tmp_path / "cc3m").mkdir()
    (tmp_path / "cc3m" / "Train_GCC-training.tsv").write_text("a cat\thttp://x/1.jpg\n")
    assert fetch_data.fetch_entry("cc3m_tsv", table["cc3m_tsv"], str(tmp_path))["source"] == "placed by hand"


def test_every_configured_input_has_a_source():
    """config.yaml's data keys are each filled by an entry of the sources table."""
    from workflow_scripts import study

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    table = fetch_data.load_sources(str(ROOT / "config" / "sources.yaml"))
    provided = {k for e in table.values() for k in e.get("provides", [])}
    assert {k for k in study.DATA_KEYS if study.data_path(config, k) is not None} <= provided
    chosen = set(fetch_data.wanted(config, table))
    assert chosen == {n for n in table if not n.startswith("pope_current")}  # LLaVA's POPE commit by default
    config["benchmarks"]["pope"]["root"] = "pope_current"
    assert set(fetch_data.wanted(config, table)) == chosen - {"pope_random", "pope_popular", "pope_adversarial"} | {
        "pope_current_random", "pope_current_popular", "pope_current_adversarial"}
    del config["benchmarks"]["vqav2"]["train_questions"]  # an unset key needs nothing
    assert "vqav2_train_questions" not in fetch_data.wanted(config, table)


# --- the hub ------------------------------------------------------------------------------------------------

def _tiny_llama(folder: Path, as_bin: bool = False) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    model.save_pretrained(folder)
    if as_bin:  # as older repos ship: PyTorch pickles only
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "README.md").write_text("not fetched: only configs, tokenizer files and weights are")


def _fetch_model(hub: HubServer, repo: str, out: Path, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(out.parent / "hf_home"), HF_HUB_DISABLE_XET="1")
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "workflow_scripts.fetch.model", "--repo", repo, "--revision", REV,
                           "--folder", str(out), "--receipt", str(out / "fetched.json")],
                          capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture
def hub(tmp_path):
    server = HubServer()
    yield server
    server.close()


def test_model_at_a_pinned_revision_is_fetched_with_hashes(hub, tmp_path):
    from transformers import LlamaForCausalLM

    _tiny_llama(tmp_path / "repo")
    hub.add("org/tiny-llama", tmp_path / "repo", REV)
    run = _fetch_model(hub, "org/tiny-llama", tmp_path / "models" / "org" / "tiny-llama")
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "models" / "org" / "tiny-llama"
    receipt = json.loads((folder / "fetched.json").read_text())
    assert receipt["revision"] == REV and receipt["weights_as_published"] == "safetensors"
    assert receipt["files"]["model.safetensors"]["sha256"] == sha256_file(tmp_path / "repo" / "model.safetensors")
    assert not (folder / "README.md").exists()
    LlamaForCausalLM.from_pretrained(folder, use_safetensors=True)


def test_gated_repo_without_token_names_the_licence_page(hub, tmp_path):
    _tiny_llama(tmp_path / "repo")
    hub.add("meta-llama/Tiny-2-hf", tmp_path / "repo", REV, gated=True)
    run = _fetch_model(hub, "meta-llama/Tiny-2-hf", tmp_path / "out")
    assert run.returncode == 1
    assert "https://huggingface.co/meta-llama/Tiny-2-hf" in run.stderr and "HF_TOKEN is unset" in run.stderr
    assert not (tmp_path / "out" / "fetched.json").exists()
    assert _fetch_model(hub, "meta-llama/Tiny-2-hf", tmp_path / "out", token=hub.token).returncode == 0


def test_wrong_revision_fails_before_any_download(hub, tmp_path):
    _tiny_llama(tmp_path / "repo")
    hub.add("org/tiny-llama", tmp_path / "repo", "f" * 40)
    run = _fetch_model(hub, "org/tiny-llama", tmp_path / "out")
    assert run.returncode == 1 and f"revision {REV} does not exist" in run.stderr


def test_bin_only_repo_is_converted_once_with_weights_only_loading(hub, tmp_path):
    from transformers import LlamaForCausalLM

    _tiny_llama(tmp_path / "repo", as_bin=True)
    hub.add("lmsys/tiny-vicuna", tmp_path / "repo", REV)
    folder = tmp_path / "out"
    run = _fetch_model(hub, "lmsys/tiny-vicuna", folder)
    assert run.returncode == 0, run.stderr
    receipt = json.loads((folder / "fetched.json").read_text())
    assert receipt["weights_as_published"] == "bin"
    (conv,) = receipt["converted"]
    assert conv["from_sha256"] == sha256_file(tmp_path / "repo" / "pytorch_model.bin")
    assert conv["to_sha256"] == sha256_file(folder / "model.safetensors")
    assert not (folder / "pytorch_model.bin").exists()
    loaded = LlamaForCausalLM.from_pretrained(folder, use_safetensors=True)
    original = torch.load(tmp_path / "repo" / "pytorch_model.bin", weights_only=True)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def test_hub_data_file_is_fetched_and_unpacked(hub, tmp_path):
    """MME from its hub mirror: a zip that unpacks one level deeper than the release."""
    repo = tmp_path / "mme_repo"
    repo.mkdir()
    _zip(repo / "MME_Benchmark_release_version.zip",
         {"MME_Benchmark_release_version/MME_Benchmark/count/000000006040.jpg": b"jpg",
          "MME_Benchmark_release_version/MME_Benchmark/count/000000006040.txt": b"Is there a cat?\tYes\n"})
    hub.add("darkyarding/MME", repo, REV, repo_type="dataset")
    table = fetch_data.load_sources(str(ROOT / "config" / "sources.yaml"))
    table["mme"]["hub"]["revision"] = REV
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(table))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1")
    run = subprocess.run([sys.executable, "-m", "workflow_scripts.fetch.data", "--name", "mme",
                          "--sources", str(tmp_path / "sources.yaml"), "--data-root", str(tmp_path / "data"),
                          "--receipt", str(tmp_path / "mme.json")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "data" / "MME_Benchmark_release_version" / "MME_Benchmark" / "count").is_dir()
    from workflow_scripts.data import readers

    assert len(readers.read_mme(tmp_path / "data" / "MME_Benchmark_release_version")) == 1


def test_a_hub_model_needs_a_pinned_revision():
    from workflow_scripts import study

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    study.check_config(config)
    del config["models"]["llama2-7b"]["revision"]
    with pytest.raises(study.ConfigError, match="models.llama2-7b: hub id 'meta-llama/Llama-2-7b-hf' without a rev"):
        study.check_config(config)


def test_jobs_start_with_the_hub_switched_off():
    run = subprocess.run([sys.executable, "-m", "workflow_scripts.gpu_lease", "--gpus", "0", "--launch", "--", "-c",
                          "import os; print(os.environ['HF_HUB_OFFLINE'])"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "1", run.stderr


def test_a_part_file_that_is_already_complete_is_used_not_refused(files, tmp_path):
    """Killed after the last byte but before the rename: the server answers the Range request with 416."""
    web, server = files
    blob = os.urandom(50_000)
    _zip(web / "done.zip", {"val2014/a.jpg": blob})
    dest = tmp_path / "done.zip"
    (tmp_path / "done.zip.part").write_bytes((web / "done.zip").read_bytes())
    found = download(f"{server.url}/done.zip", dest)
    assert found["sha256"] == sha256_file(web / "done.zip") and dest.exists()
    assert [r for (_, p, r) in server.requests if p == "/done.zip"] == []  # the 416 said "bytes */<its length>"


def test_without_a_hash_only_an_archive_resumes_and_its_crc_catches_a_damaged_prefix(files, tmp_path):
    web, server = files
    _zip(web / "a.zip", {"val2014/x.jpg": os.urandom(80_000)})
    (web / "plain.json").write_text(json.dumps({"x": list(range(5000))}))
    # a damaged prefix of the archive (zeros where the first bytes should be), then the rest resumed
    (tmp_path / "a.zip.part").write_bytes(b"\0" * 20_000)
    with pytest.raises(FetchError, match="set aside"):
        download(f"{server.url}/a.zip", tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists() and list(tmp_path.glob("a.zip.part.corrupt-*"))
    # a plain file without a hash is not resumed: a damaged part file is discarded and the file fetched whole
    (tmp_path / "plain.json.part").write_bytes(b"garbage")
    download(f"{server.url}/plain.json", tmp_path / "plain.json")
    assert json.loads((tmp_path / "plain.json").read_text())["x"][-1] == 4999


def test_first_fetch_records_the_hash_and_a_later_change_is_caught(files, tmp_path):
    web, server = files
    (web / "q.json").write_text('{"questions": []}')
    dest = tmp_path / "q.json"
    found = download(f"{server.url}/q.json", dest)
    assert (tmp_path / "q.json.sha256").read_text().split() == [str(found["size"]), found["sha256"]]
    dest.write_text('{"questions": [1]}')  # changed on disk after the fetch
    with pytest.raises(FetchError, match="left in place"):
        download(f"{server.url}/q.json", dest, offline=True)


def test_a_damaged_archive_fails_cleanly_naming_what_to_do(tmp_path):
    (tmp_path / "caption_datasets.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FetchError, match="damaged .* move it away"):
        unpack(tmp_path / "caption_datasets.zip", tmp_path / "karpathy")


def test_an_archive_unpacked_by_hand_counts_online_and_offline(tmp_path):
    """MME requested from its authors and unpacked by hand; COCO unpacked and its zip deleted to save disk."""
    table = fetch_data.load_sources(str(ROOT / "config" / "sources.yaml"))
    (tmp_path / "MME_Benchmark_release_version" / "OCR").mkdir(parents=True)
    for offline in (True, False):
        receipt = fetch_data.fetch_entry("mme", table["mme"], str(tmp_path), offline=offline)
        assert receipt["source"] == "already unpacked"
    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    assert fetch_data.fetch_entry("coco_val2014", table["coco_val2014"], str(tmp_path), True)["source"] == \
        "already unpacked"
    with pytest.raises(FetchError, match="missing, and fetching is offline"):  # only val2014 is there
        fetch_data.fetch_entry("coco_train2014", table["coco_train2014"], str(tmp_path), True)


def test_a_bad_token_is_named_not_a_traceback(hub, tmp_path):
    """The hub answers 401 to a mistyped or revoked token, on public repos too."""
    _tiny_llama(tmp_path / "repo")
    hub.add("org/tiny-llama", tmp_path / "repo", REV)
    hub.reject_token = "hf_revoked"
    run = _fetch_model(hub, "org/tiny-llama", tmp_path / "out", token="hf_revoked")
    assert run.returncode == 1 and "HTTP 401" in run.stderr and "check HF_TOKEN" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_sharded_bin_repo_is_converted_and_never_downloaded_again(hub, tmp_path):
    from transformers import LlamaForCausalLM

    repo = tmp_path / "repo"
    _tiny_llama(repo, as_bin=True)
    state = torch.load(repo / "pytorch_model.bin", weights_only=True)
    names = sorted(state)
    half = len(names) // 2
    shards = {"pytorch_model-00001-of-00002.bin": names[:half], "pytorch_model-00002-of-00002.bin": names[half:]}
    for shard, keys in shards.items():
        torch.save({k: state[k] for k in keys}, repo / shard)
    (repo / "pytorch_model.bin").unlink()
    (repo / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    hub.add("lmsys/tiny-sharded", repo, REV)
    folder = tmp_path / "out"
    assert _fetch_model(hub, "lmsys/tiny-sharded", folder).returncode == 0
    receipt = json.loads((folder / "fetched.json").read_text())
    assert set(receipt["files"]) >= {"model-00001-of-00002.safetensors", "model.safetensors.index.json"}
    assert not any(name.endswith(".bin") or name.startswith("pytorch_model") for name in receipt["files"])
    assert not list(folder.glob("pytorch_model*"))
    LlamaForCausalLM.from_pretrained(folder, use_safetensors=True)
    # the receipt lost: fetching again takes the converted shards, not 2 x the .bin files
    (folder / "fetched.json").unlink()
    served = len(hub.requests)
    assert _fetch_model(hub, "lmsys/tiny-sharded", folder).returncode == 0
    assert not [p for (_, p, _) in hub.requests[served:] if p.endswith(".bin")]
    assert json.loads((folder / "fetched.json").read_text())["converted"] == "by an earlier fetch"



def test_a_damaged_archive_in_place_is_refused_before_anything_is_recorded(files, tmp_path):
    """Its hash must not become the record a correct download is later held to."""
    web, server = files
    _zip(web / "a.zip", {"val2014/x.jpg": os.urandom(30_000)})
    good = (web / "a.zip").read_bytes()
    dest = tmp_path / "a.zip"
    dest.write_bytes(good[:-200] + b"\0" * 200)  # damaged in place (a bad copy)
    with pytest.raises(FetchError, match="left in place"):
        download(f"{server.url}/a.zip", dest)
    assert not (tmp_path / "a.zip.sha256").exists()
    dest.unlink()  # as the message says: move it away, download again
    assert download(f"{server.url}/a.zip", dest)["sha256"] == hashlib.sha256(good).hexdigest()


def test_a_part_file_longer_than_the_file_is_not_taken_for_complete(files, tmp_path):
    """No size known, the server answers 416 to a Range past its end: the file is fetched whole once more, since
    an archive's CRCs do not see trailing bytes."""
    web, server = files
    _zip(web / "b.zip", {"val2014/y.jpg": os.urandom(30_000)})
    good = (web / "b.zip").read_bytes()
    (tmp_path / "b.zip.part").write_bytes(good + b"trailing garbage")
    download(f"{server.url}/b.zip", tmp_path / "b.zip")
    assert (tmp_path / "b.zip").read_bytes() == good


def test_an_archive_without_what_the_table_says_it_makes_is_refused(tmp_path):
    _zip(tmp_path / "val2017.zip", {"val2017/z.jpg": b"1"})
    with pytest.raises(FetchError, match=r"holds \['val2017'\], not \['val2014'\]"):
        unpack(tmp_path / "val2017.zip", tmp_path / "coco", makes=["val2014"])


def test_a_receipt_says_what_a_file_was_checked_against(files, tmp_path):
    web, server = files
    (web / "p.json").write_text("{}")
    entry = {"url": f"{server.url}/p.json", "to": "pope/p.json", "provides": ["pope_root"]}
    first = fetch_data.fetch_entry("p", entry, str(tmp_path))
    assert first["source"] == entry["url"] and first["checked_against"].startswith("nothing yet")
    again = fetch_data.fetch_entry("p", entry, str(tmp_path), offline=True)
    assert again["source"] == "already present (not downloaded)"
    assert again["checked_against"] == "sha256 recorded at its first fetch"
