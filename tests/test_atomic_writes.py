"""A writer killed mid-write leaves no half file at the output path (what Snakemake would take as done), and an
older complete file there survives. Every script writes through workflow_scripts.io (temp sibling + rename)."""

import re
import signal
import subprocess
import sys

import pytest
from conftest import REPO, subprocess_env

# The child writes through io.write_text / io.atomic_dir, but its file writes stall halfway (after flushing
# the first half to disk) until it is killed.
WRITER = """
import pathlib, sys, time
from workflow_scripts import io

def stalled_write(self, text, *args, **kwargs):
    with open(self, "w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        print("half written", flush=True)
        time.sleep(120)

pathlib.Path.write_text = stalled_write
mode, target = sys.argv[1], sys.argv[2]
if mode == "file":
    io.write_json(target, {"rows": list(range(10000))})
else:
    with io.atomic_dir(target) as tmp:
        (tmp / "a.json").write_text('{"complete": true}')
"""


def kill_mid_write(mode: str, target) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, mode, str(target)], stdout=subprocess.PIPE, text=True,
                            env=subprocess_env(), cwd=REPO)
    assert proc.stdout.readline().strip() == "half written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_killed_json_writer_leaves_no_output(tmp_path):
    target = tmp_path / "metrics.json"
    kill_mid_write("file", target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".metrics.json.tmp")  # hidden, never an output


def test_killed_writer_keeps_the_previous_complete_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"previous": true}\n')
    kill_mid_write("file", target)
    assert target.read_text() == '{"previous": true}\n'


def test_killed_folder_writer_leaves_no_output_folder(tmp_path):
    target = tmp_path / "export"
    kill_mid_write("dir", target)
    assert not target.exists()


@pytest.mark.parametrize("path", sorted((REPO / "workflow_scripts").rglob("*.py")), ids=lambda p: p.name)
def test_scripts_write_outputs_only_through_a_rename(path):
    """Every direct write in a script goes to a temporary name that is renamed afterwards, or into a folder
    that atomic_dir renames as a whole; the toy world's data files are exempt: its manifest, written last by
    rename, is the rule's output."""
    text = path.read_text()
    direct = re.findall(r"open\([^)]*\"w\"|\.write_text\(|\.save_pretrained\(|save_file\(", text)
    if not direct or path.name == "io.py" or path.parent.name == "toyworld" and path.name in ("formats.py",
                                                                                             "formats_eval.py"):
        return
    assert re.search(r"\btmp\b|os\.replace|\.replace\(|atomic_dir", text), path
