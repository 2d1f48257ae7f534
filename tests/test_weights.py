"""Untrusted checkpoints: a base LLM saved only as a pickle (.bin) is refused unless the config opts in, and then
read with torch.load(weights_only=True); nothing in the project enables remote code or unsafe torch.load."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.weights import UnsafeCheckpointError, check_checkpoint


@pytest.fixture(scope="module")
def pickle_llm(tiny_base_models, tmp_path_factory):
    """The tiny LLM with its weights re-saved as pytorch_model.bin (a pickle) and no safetensors."""
    llm, _ = tiny_base_models
    out = tmp_path_factory.mktemp("pickle") / "llm"
    shutil.copytree(llm, out)
    state = load_file(out / "model.safetensors")
    (out / "model.safetensors").unlink()
    torch.save(state, out / "pytorch_model.bin")
    return str(out)


def test_pickle_only_checkpoint_is_refused_by_default(pickle_llm, tiny_base_models):
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin.*allow_pickle_checkpoints: true"):
        build_mllm(pickle_llm, tiny_base_models[1])


def test_opt_in_loads_the_same_weights(pickle_llm, tiny_base_models):
    from_pickle, _ = build_mllm(pickle_llm, tiny_base_models[1], allow_pickle=True)
    from_safetensors, _ = build_mllm(*tiny_base_models)
    a, b = from_pickle.state_dict(), from_safetensors.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_weights_only_load_rejects_a_pickled_object(tmp_path, tiny_base_models):
    """What the opt-in still protects against: a .bin that holds more than tensors is not unpickled."""
    out = tmp_path / "llm"
    shutil.copytree(tiny_base_models[0], out)
    (out / "model.safetensors").unlink()
    torch.save({"evil": Path("/")}, out / "pytorch_model.bin")  # an arbitrary Python object
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global|Unpickler"):
        build_mllm(str(out), tiny_base_models[1], allow_pickle=True)


def test_safetensors_folder_passes_and_hub_ids_are_left_to_transformers(tiny_base_models):
    check_checkpoint(tiny_base_models[0])
    check_checkpoint("lmsys/vicuna-7b-v1.5")  # not a folder: transformers enforces use_safetensors=True


def test_no_remote_code_and_no_unsafe_torch_load_in_the_code():
    for path in list((REPO / "workflow_scripts").rglob("*.py")) + list((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call, (path, call)
