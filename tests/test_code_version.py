"""The code digest that makes code-defined artefacts (the toy world, the toy models) rerun when their code changes."""

from pathlib import Path

from workflow_scripts import code_version


def write_package(root: Path) -> None:
    pkg = root / "workflow_scripts"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "main.py").write_text("import json\nfrom workflow_scripts.sub import helper\nfrom . import util\n")
    (pkg / "sub" / "helper.py").write_text("from .deep import VALUE\n")
    (pkg / "sub" / "deep.py").write_text("VALUE = 1\n")
    (pkg / "util.py").write_text("import workflow_scripts.sub\n")
    (pkg / "unrelated.py").write_text("X = 1\n")


def test_sources_follow_absolute_relative_and_from_imports(tmp_path):
    write_package(tmp_path)
    found = [p.relative_to(tmp_path).as_posix()
             for p in code_version.module_sources("workflow_scripts.main", tmp_path)]
    # ``from . import util`` names the package itself, whose __init__ runs on that import.
    assert found == ["workflow_scripts/__init__.py", "workflow_scripts/main.py", "workflow_scripts/sub/__init__.py",
                     "workflow_scripts/sub/deep.py", "workflow_scripts/sub/helper.py", "workflow_scripts/util.py"]


def test_digest_changes_with_an_imported_module_only(tmp_path):
    write_package(tmp_path)
    before = code_version.sources_sha256("workflow_scripts.main", tmp_path)
    (tmp_path / "workflow_scripts" / "unrelated.py").write_text("X = 2\n")
    assert code_version.sources_sha256("workflow_scripts.main", tmp_path) == before
    (tmp_path / "workflow_scripts" / "sub" / "deep.py").write_text("VALUE = 2\n")
    assert code_version.sources_sha256("workflow_scripts.main", tmp_path) != before


def test_toy_world_digest_covers_the_scenes_and_the_language():
    names = {p.relative_to(code_version.ROOT).as_posix()
             for p in code_version.module_sources("workflow_scripts.toyworld.world")}
    assert {"workflow_scripts/toyworld/scenes.py", "workflow_scripts/toyworld/language.py",
            "workflow_scripts/toyworld/formats.py", "workflow_scripts/toyworld/formats_eval.py",
            "workflow_scripts/data/conversation.py"} <= names
