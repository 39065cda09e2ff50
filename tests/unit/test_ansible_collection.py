"""The Ansible collection (ansible/): ansible-lint clean, its module's documentation true to its parameters, it builds
into an installable tarball that carries the real install script, and the role's unitctl.toml is valid TOML.

ansible-test sanity cannot run here (it downloads pip's bootstrap script from a host outside the package registries),
so ansible-lint (profile production, offline) is the collection's linter; the check of DOCUMENTATION against the
argument spec below is the part of ansible-test's validate-modules that matters most for users.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTION = REPO_ROOT / "ansible"
BIN = Path(sys.prefix) / "bin"


def _collections(tmp: Path, source: Path = COLLECTION) -> Path:
    """Return an ANSIBLE_COLLECTIONS_PATH where unitctl.deploy is ``source``."""
    (tmp / "ansible_collections" / "unitctl").mkdir(parents=True)
    (tmp / "ansible_collections" / "unitctl" / "deploy").symlink_to(source)
    return tmp


def _env(collections: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_LOCAL_TEMP": str(collections / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }


def _lint(where: Path, collections: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--nocolor", *paths],
        cwd=where,
        env=_env(collections),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_collection_passes_ansible_lint_production_profile(tmp_path: Path) -> None:
    proc = _lint(COLLECTION, _collections(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_ansible_lint_catches_a_broken_playbook(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(COLLECTION, copy, symlinks=True)
    playbook = copy / "playbooks" / "rolling-deploy.yml"
    text = playbook.read_text()
    assert "ansible.builtin.set_fact:" in text, "update this test: the playbook no longer sets a fact"
    playbook.write_text(text.replace("ansible.builtin.set_fact:", "set_fact:", 1))
    proc = _lint(copy, _collections(tmp_path / "c", copy), "playbooks/rolling-deploy.yml")
    assert proc.returncode != 0
    assert "fqcn" in proc.stdout + proc.stderr


def _module_docs() -> tuple[dict[str, Any], dict[str, Any], list[Any], dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("unitctl_ansible_apply_docs", COLLECTION / "plugins/modules/apply.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    docs = (yaml.safe_load(mod.DOCUMENTATION), yaml.safe_load(mod.EXAMPLES), yaml.safe_load(mod.RETURN))
    return mod.ARGUMENT_SPEC, *docs


def test_the_module_documents_exactly_its_parameters() -> None:
    argument_spec, doc, examples, ret = _module_docs()
    options = doc["options"]
    assert set(options) == set(argument_spec)
    for name, spec in argument_spec.items():
        opt = options[name]
        assert opt.get("type", "str") == spec.get("type", "str"), name
        assert opt.get("required", False) == spec.get("required", False), name
        assert opt.get("default") == spec.get("default"), name
        assert opt.get("choices") == spec.get("choices"), name
        assert opt.get("aliases") == spec.get("aliases"), name
        assert opt.get("elements") == spec.get("elements"), name
    uses = [task["unitctl.deploy.apply"] for task in examples if "unitctl.deploy.apply" in task]
    assert uses, "EXAMPLES shows the module"
    for used in uses:
        assert set(used) <= set(argument_spec), used
    for field in ("outcome", "exit_code", "rolled_back", "needs_human", "message", "hint", "revision"):
        assert field in ret, field


def test_ansible_doc_reads_the_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", "unitctl.deploy.apply"],
        env=_env(_collections(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["unitctl.deploy.apply"]
    assert doc["doc"]["module"] == "apply" and "needs_human" in doc["return"]


def test_the_collection_builds_and_carries_the_real_install_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path", str(tmp_path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tarball,) = tmp_path.glob("unitctl-deploy-*.tar.gz")
    with tarfile.open(tarball) as tar:
        member = tar.getmember("roles/server/files/install-server.sh")
        assert member.isfile(), "the link out of the collection is stored as the file itself"
        data = tar.extractfile(member)
        assert data is not None and data.read() == (REPO_ROOT / "scripts" / "install-server.sh").read_bytes()
        names = tar.getnames()
    assert "plugins/modules/apply.py" in names and "playbooks/rolling-deploy.yml" in names


def test_the_roles_unitctl_toml_is_valid_toml_with_a_table_per_service(tmp_path: Path) -> None:
    """Render the role's template with the real ansible-playbook on this machine (connection local)."""
    out = tmp_path / "unitctl.toml"
    play = tmp_path / "render.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Render unitctl.toml",
                            "ansible.builtin.template": {
                                "src": str(COLLECTION / "roles/server/templates/unitctl.toml.j2"),
                                "dest": str(out),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    extra = {
        "server_deploy_defaults": {"ready_timeout": 60, "fail_after": 3},
        "server_services": {
            "demoapp": {"repo": "/srv/demo app/app", "ready_url": "http://127.0.0.1:8000/health/ready"},
            "shop@1": {"workers": "auto", "env": {"A": 'quote " and \\ backslash'}, "bind": ["127.0.0.1:1", "[::1]:1"]},
        },
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play), "-e", json.dumps(extra)],
        env={**_env(tmp_path), "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = tomllib.loads(out.read_text())
    assert data["deploy"]["ready_timeout"] == 60 and data["deploy"]["fail_after"] == 3
    assert data["deploy"]["demoapp"]["repo"] == "/srv/demo app/app"
    assert data["deploy"]["shop@1"]["env"] == {"A": 'quote " and \\ backslash'}
    assert data["deploy"]["shop@1"]["bind"] == ["127.0.0.1:1", "[::1]:1"]


@pytest.mark.parametrize("playbook", ["rolling-deploy.yml", "install-unitctl.yml"])
def test_the_playbooks_pass_the_syntax_check(tmp_path: Path, playbook: str) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(COLLECTION / "playbooks" / playbook)],
        env=_env(_collections(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
