"""Where Latent Studio is, and where its engine runs for this Krita.

``install-krita-plugin`` records the Latent Studio environment next to the installed plugin
(``environment.json``: the repository folder, its Python, that Python's version and its site-packages).
:func:`choose` then decides, with no import of ours yet:

* **a server URL the painter gave** (the docker's Engine field): that server;
* **in Krita's process**: Krita's Python has the recorded environment's minor version, so the
  environment's compiled packages (torch, numpy) load in Krita — nothing else runs;
* **a local server process** otherwise (Krita 5.2/5.3's bundled Python 3.10/3.13 against a 3.11
  environment): the environment's own Python runs ``main.py serve`` on loopback with a random token
  (:mod:`.local_server`), and the plugin talks to it with the remote client.

Pure Python, no Qt, no krita: the docker, the self-test and the tests call it.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

RECORD = Path(__file__).resolve().with_name("environment.json")

IN_PROCESS, LOCAL_SERVER, SERVER = "in-process", "local server", "server"


class EnvironmentProblem(Exception):
    """The plugin cannot reach an engine; the text is one sentence for the docker."""


@dataclass(frozen=True)
class Placement:
    kind: str  # IN_PROCESS, LOCAL_SERVER or SERVER
    label: str  # what the docker shows
    url: str = ""


def read_record(path: Path = RECORD) -> dict | None:
    """The recorded environment, or None when the plugin was copied by hand (no record)."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(f"The plugin's environment record {path} cannot be read ({exc}): run `python "
                                 "main.py install-krita-plugin` in Latent Studio's folder again.") from None
    return record if isinstance(record, dict) else None


def write_record(path: Path, root: Path, python: str, version: tuple[int, int], site_packages: list[str]) -> dict:
    record = {"root": str(root), "python": str(python), "python_version": f"{version[0]}.{version[1]}",
              "site_packages": [str(p) for p in site_packages]}
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    return record


def choose(record: dict | None, running: tuple[int, int] | None = None, server_url: str = "") -> Placement:
    """Where the engine runs; raises EnvironmentProblem (one sentence) when nowhere."""
    if server_url.strip():
        url = server_url.strip()
        return Placement(SERVER, f"Engine: the Latent Studio server at {url}", url)
    if not record or not record.get("root"):
        raise EnvironmentProblem("Latent Studio's environment is not recorded: run `python main.py "
                                 "install-krita-plugin` in Latent Studio's folder, then restart Krita.")
    root = Path(record["root"])
    if not (root / "backend").is_dir():
        raise EnvironmentProblem(f"Latent Studio is no longer at {root}: run `python main.py install-krita-plugin` "
                                 "from where it is now, then restart Krita.")
    running = running or sys.version_info[:2]
    wanted = str(record.get("python_version", ""))
    mine = f"{running[0]}.{running[1]}"
    if wanted == mine:
        return Placement(IN_PROCESS, f"Engine: in Krita's process (Python {mine}, {root})")
    if not Path(record.get("python", "")).exists():
        raise EnvironmentProblem(f"Krita's Python is {mine} but Latent Studio's is {wanted or 'unknown'}, and its "
                                 f"Python {record.get('python')} is gone: run install-krita-plugin again.")
    return Placement(LOCAL_SERVER, f"Engine: a local Latent Studio process (Krita's Python {mine}, "
                                   f"Latent Studio's {wanted})")


def activate(record: dict, placement: Placement) -> None:
    """Puts Latent Studio's packages on ``sys.path``: its folder always; in-process also its site-packages
    (first, so torch finds the numpy it was built with; Krita's own PyQt stays where it is, the
    environment has none)."""
    paths = [record["root"]]
    if placement.kind == IN_PROCESS:
        paths += [p for p in record.get("site_packages", []) if Path(p).is_dir()]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    if placement.kind == IN_PROCESS:
        # Triton's own LLVM crashes Krita when torch._dynamo loads it (Debian's Krita 5.1.5: a segmentation fault
        # in libtriton); the engine compiles nothing, so torch is told there is no Triton.
        sys.modules.setdefault("triton", None)
    else:
        try:
            import numpy  # noqa: F401  the remote client's images and the plugin's pixels
            import PIL  # noqa: F401
        except ImportError as exc:
            raise EnvironmentProblem(f"Krita's Python has no {exc.name}, which the plugin needs to talk to a "
                                     "Latent Studio server: install it for Krita's Python, or use a Krita whose "
                                     f"Python is {record.get('python_version')}.") from None
