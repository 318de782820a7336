"""install-krita-plugin / uninstall-krita-plugin and krita-selftest's refusals (the self-test itself runs in
test_krita_selftest.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from krita_plugin import commands

ROOT = Path(__file__).resolve().parents[2]


def run_main(*args, env=None):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env)


def test_install_copies_the_plugin_records_this_environment_and_says_the_step_left(tmp_path):
    done = run_main("install-krita-plugin", "--dest", str(tmp_path / "pykrita"))
    assert done.returncode == 0, done.stderr
    package = tmp_path / "pykrita" / "latent_studio_krita"
    assert (tmp_path / "pykrita" / "latent_studio_krita.desktop").read_text().count("X-KDE-Library=latent_studio_krita")
    assert {"__init__.py", "controller.py", "docker.py", "qt.py"} <= {p.name for p in package.iterdir()}
    assert not (package / "__pycache__").exists()
    record = json.loads((package / "environment.json").read_text())
    assert record["root"] == str(ROOT) and record["python"] == sys.executable
    assert record["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert any(Path(p, "torch").is_dir() for p in record["site_packages"])
    assert "Python Plugin Manager" in done.stdout and "One step left" in done.stdout
    again = run_main("install-krita-plugin", "--dest", str(tmp_path / "pykrita"))  # replaces its own copy
    assert again.returncode == 0, again.stderr
    gone = run_main("uninstall-krita-plugin", "--dest", str(tmp_path / "pykrita"))
    assert gone.returncode == 0 and list((tmp_path / "pykrita").iterdir()) == []
    twice = run_main("uninstall-krita-plugin", "--dest", str(tmp_path / "pykrita"))
    assert twice.returncode == 2 and "is not installed in" in twice.stderr and len(twice.stderr.splitlines()) == 1


def test_install_leaves_a_folder_of_the_same_name_that_is_not_ours(tmp_path):
    other = tmp_path / "latent_studio_krita"
    other.mkdir()
    (other / "mine.py").write_text("# someone else's")
    done = run_main("install-krita-plugin", "--dest", str(tmp_path))
    assert done.returncode == 2 and "is not Latent Studio's plugin" in done.stderr
    assert (other / "mine.py").exists()


def test_the_default_folder_is_the_users_krita_resource_folder():
    assert commands.default_pykrita({"HOME": "/home/p"}, "linux") == Path("/home/p/.local/share/krita/pykrita")
    assert commands.default_pykrita({"HOME": "/home/p", "XDG_DATA_HOME": "/x"}, "linux") == Path("/x/krita/pykrita")
    assert commands.default_pykrita({"HOME": "/Users/p"}, "darwin") == \
        Path("/Users/p/Library/Application Support/krita/pykrita")
    assert commands.default_pykrita({"HOME": "C:/u", "APPDATA": "C:/u/AppData/Roaming"}, "win32") == \
        Path("C:/u/AppData/Roaming/krita/pykrita")


def test_the_selftest_says_in_one_sentence_what_is_missing():
    nothing = lambda name: None  # noqa: E731
    with pytest.raises(commands.KritaCommandError, match="Krita is not installed"):
        commands.selftest_command(None, which=nothing)
    only_krita = lambda name: "/usr/bin/kritarunner" if name == "kritarunner" else None  # noqa: E731
    with pytest.raises(commands.KritaCommandError, match="xvfb-run is missing"):
        commands.selftest_command(None, which=only_krita)
    assert commands.selftest_command(":0", which=only_krita)[:1] == ["/usr/bin/kritarunner"]


def test_the_selftest_exits_2_with_one_sentence_when_krita_is_missing(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = run_main("krita-selftest", "--out", str(tmp_path / "out.ora"), env=env)
    assert done.returncode == 2 and "Krita is not installed" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out.ora").exists()
