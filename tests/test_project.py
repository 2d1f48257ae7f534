"""Project hygiene that users rely on: conda env pins agree with requirements, lint is clean."""

import subprocess
import sys

import pytest
import yaml
from conftest import REPO, subprocess_env


def _pins(lines):
    return dict(line.strip().split("==", 1) for line in lines if "==" in line and not line.strip().startswith("#"))


def test_conda_env_pins_match_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs/study.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = _pins(pip)
    dev_only = {"ruff", "pytest"}
    assert conda_pins == {k: v for k, v in req.items() if k not in dev_only}
    assert "torchvision" not in req  # breaks CLIPImageProcessor on CPU torch here


@pytest.mark.parametrize("configfile", [None, "config/demo.yaml", "config/smoke.yaml"])
def test_snakemake_lint_is_clean(configfile):
    args = [sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)]
    if configfile:
        args += ["--configfile", str(REPO / configfile)]
    proc = subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("profile", ["default", "slurm", "demo"])
def test_profiles_use_only_snakemake_options(profile):
    """Every key of a profile is a Snakemake command-line option (a typo would be an error at start-up on the
    cluster); rule names in set-resources/set-threads exist."""
    help_text = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True,
                               env=subprocess_env(), timeout=120).stdout
    settings = yaml.safe_load((REPO / f"profiles/{profile}/config.yaml").read_text())
    for key in settings:
        assert f"--{key}" in help_text, (profile, key)
    rules = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            for prefix in ("rule ", "checkpoint ", "use rule "):
                if line.startswith(prefix):
                    rules.add(line.split(" as ")[-1].split()[0].rstrip(":") if " as " in line
                              else line[len(prefix):].split(":")[0].strip())
    for section in ("set-resources", "set-threads"):
        assert set(settings.get(section, {})) <= rules, (profile, set(settings.get(section, {})) - rules)
