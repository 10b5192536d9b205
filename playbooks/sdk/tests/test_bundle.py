"""Bundle module listing and loading."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from fakehost import make_bundle, new_hash
from tocsin import Alert, Run
from tocsin._bundle import BundleError, list_modules, load_bundle, module_name, package_name, unload_bundle

PB = '''
from tocsin import playbook

@playbook
async def {name}(alert, run):
    return {{"version": {version}}}
'''


def test_list_modules_rule(tmp_path):
    files = [
        "top.py",
        "pkg/__init__.py",
        "pkg/mod.py",
        "nested/deep/leaf.py",
        "nested/deep/test_leaf.py",
        "nested/deep/leaf_test.py",
        "conftest.py",
        "setup.py",
        "nested/conftest.py",
        "sdk/tocsin/__init__.py",
        "tests/test_a.py",
        "tests/helper.py",
        "nested/tests/x.py",
        "__pycache__/top.cpython-311.py",
        "venv/lib/site.py",
        ".venv/lib/site.py",
        ".git/hooks/x.py",
        ".hidden/x.py",
        "README.md",
        "data.json",
        "notes.pyc",
        "mytest.py",
        "testing.py",
        "a_tests.py",
        "sdkish/ok.py",
    ]
    for rel in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    assert list_modules(tmp_path) == [
        "a_tests.py",
        "mytest.py",
        "nested/deep/leaf.py",
        "pkg/__init__.py",
        "pkg/mod.py",
        "sdkish/ok.py",
        "testing.py",
        "top.py",
    ]


def test_list_modules_ignores_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.py").write_text("")
    (tmp_path / "linked_dir").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "linked.py").symlink_to(tmp_path / "real" / "a.py")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing.py")
    assert list_modules(tmp_path) == ["real/a.py"]


def test_list_modules_missing_dir(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        list_modules(tmp_path / "nope")


def test_module_and_package_names():
    assert module_name("examples/triage.py") == "examples.triage"
    assert module_name("examples/__init__.py") == "examples"
    assert module_name("top.py") == "top"
    assert package_name("0123456789abcdef0123") == "_tocsin_bundle_0123456789abcdef"
    assert package_name("sha256:ab-cd") == "_tocsin_bundle_sha256_ab_cd"
    with pytest.raises(BundleError):
        package_name("")


def test_two_versions_coexist(tmp_path):
    v1 = make_bundle(tmp_path / "v1", {"flows/main.py": PB.format(name="pb", version=1)})
    v2 = make_bundle(tmp_path / "v2", {"flows/main.py": PB.format(name="pb", version=2)})
    h1, h2 = new_hash(), new_hash()
    b1, b2 = load_bundle(v1, h1), load_bundle(v2, h2)
    try:
        assert b1.package != b2.package
        assert f"{b1.package}.flows.main" in sys.modules and f"{b2.package}.flows.main" in sys.modules
        alert, run = Alert.build(), Run()
        assert asyncio.run(b1.playbooks["pb"](alert, run)) == {"version": 1}
        assert asyncio.run(b2.playbooks["pb"](alert, run)) == {"version": 2}
        assert b1.describe()[0]["module"] == "flows.main" and b1.describe()[0]["file"] == "flows/main.py"
    finally:
        unload_bundle(b1.package)
        unload_bundle(b2.package)
    assert not [m for m in sys.modules if m.startswith(b1.package)]


def test_relative_imports_and_packages(tmp_path):
    bundle_dir = make_bundle(tmp_path, {
        "__init__.py": "ROOT = 'root'\n",
        "lib/__init__.py": "",
        "lib/helpers.py": "def shout(s):\n    return s.upper()\n",
        "flows/main.py": '''
            from tocsin import playbook
            from ..lib.helpers import shout
            from .. import ROOT

            @playbook
            async def loud(alert, run):
                return {"title": shout(alert.title), "root": ROOT}
        ''',
        "flows/other.py": '''
            from tocsin import playbook
            from .main import loud  # re-exported, not defined here

            @playbook(name="other", trigger="manual")
            async def other(alert, run):
                return None
        ''',
    })
    bundle = load_bundle(bundle_dir, new_hash())
    try:
        assert list(bundle.playbooks) == ["loud", "other"]
        assert set(bundle.modules) == {"", "flows.main", "flows.other", "lib", "lib.helpers"}
        assert asyncio.run(bundle.playbooks["loud"](Alert.build(title="hi"), Run())) == {"title": "HI", "root": "root"}
        described = {p["name"]: p for p in bundle.describe()}
        assert described["other"]["module"] == "flows.other" and described["other"]["trigger"] == "manual"
    finally:
        unload_bundle(bundle.package)


def test_failed_load_leaves_nothing_behind(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"a.py": "import nonexistent_module_xyz\n"})
    bundle_hash = new_hash()
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir, bundle_hash)
    assert str(info.value) == "a.py:1: ModuleNotFoundError: No module named 'nonexistent_module_xyz'"
    assert not [m for m in sys.modules if m.startswith(package_name(bundle_hash))]


def test_non_identifier_file_name(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"my-flows/x.py": ""})
    with pytest.raises(BundleError, match="my-flows/x.py: cannot import"):
        load_bundle(bundle_dir, new_hash())


def test_system_exit_at_import_is_a_bundle_error(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"a.py": "import sys\nsys.exit(3)\n"})
    with pytest.raises(BundleError, match=r"^a.py:2: SystemExit: 3$"):
        load_bundle(bundle_dir, new_hash())


def test_reloading_same_hash_is_fresh(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"a.py": PB.format(name="pb", version=1)})
    bundle_hash = new_hash()
    first = load_bundle(bundle_dir, bundle_hash)
    second = load_bundle(bundle_dir, bundle_hash)
    try:
        assert first.playbooks["pb"] is not second.playbooks["pb"]
        assert os.path.isabs(second.bundle_dir)
    finally:
        unload_bundle(second.package)
