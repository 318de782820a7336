"""The Krita plugin's commands (registered in main.py's COMMAND_MODULES):

    python main.py install-krita-plugin [--dest DIR]     # copies the plugin into Krita's pykrita folder
    python main.py uninstall-krita-plugin [--dest DIR]
    python main.py krita-selftest --out FILE.ora [--image IMG] [--steps N]

Bad input raises :class:`KritaCommandError` (one sentence, exit 2, by main.py's error contract).
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.errors import BackendError
from backend.threads import OPENMP_DEFAULTS

HERE = Path(__file__).resolve().parent
PACKAGE = "latent_studio_krita"
ROOT = HERE.parent
SELFTEST_IMAGE = HERE / "selftest" / "coffee-256x192.png"
ENABLE_STEP = ("Restart Krita, tick \"Latent Studio\" in Settings ▸ Configure Krita ▸ Python Plugin Manager and "
               "restart it again; the docker is in Settings ▸ Dockers ▸ Latent Studio.")


class KritaCommandError(BackendError):
    """One sentence for the terminal (exit 2)."""


def register(sub) -> None:
    p = sub.add_parser("install-krita-plugin", help="copy the Krita plugin into Krita's pykrita folder",
                       description="Copies the Latent Studio plugin into Krita's pykrita folder and records this "
                                   "environment (its Python and packages) for it.")
    p.add_argument("--dest", help="the pykrita folder (default: the user's Krita resource folder's pykrita, "
                                  f"here {default_pykrita()})")
    p.set_defaults(func=_install)
    p = sub.add_parser("uninstall-krita-plugin", help="remove the Krita plugin from Krita's pykrita folder")
    p.add_argument("--dest", help=f"the pykrita folder (default: {default_pykrita()})")
    p.set_defaults(func=_uninstall)
    p = sub.add_parser("krita-selftest", help="inpaint inside Krita headless through the plugin, save an .ora",
                       description="Runs Krita headless (kritarunner, under xvfb-run without a display): opens IMG, "
                                   "selects a rectangle in its middle, inpaints it through the plugin with the "
                                   "embedded model and saves the document as FILE.ora. Exit 0 only when a result "
                                   "layer was added.")
    p.add_argument("--out", required=True, help="the .ora file to write")
    p.add_argument("--image", default=str(SELFTEST_IMAGE),
                   help="the image to open (default: a 256x192 photo bundled with the plugin)")
    p.add_argument("--operation", choices=("inpaint", "outpaint", "img2img", "upscale"), default="inpaint",
                   help="inpaint the selected middle (default); outpaint a canvas extended on the left; img2img the "
                        "active layer; upscale by 2")
    p.add_argument("--steps", type=int, default=8, help="denoising steps (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up (default 300)")
    p.set_defaults(func=_selftest)


# --- install ------------------------------------------------------------------------------------------

def default_pykrita(environ=None, platform: str = sys.platform) -> Path:
    """Krita's per-user pykrita folder: ~/.local/share/krita/pykrita on Linux ($XDG_DATA_HOME),
    %APPDATA%\\krita\\pykrita on Windows, ~/Library/Application Support/krita/pykrita on macOS."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or Path.home())
    if platform.startswith("win"):
        base = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "krita" / "pykrita"


def environment_record() -> dict:
    """This environment, as the plugin needs it: the repository, its Python and site-packages."""
    packages = [p for p in site.getsitepackages() if Path(p).is_dir()]
    return {"root": str(ROOT), "python": sys.executable, "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "site_packages": packages}


def install(dest: Path) -> Path:
    """Copies the plugin into ``dest`` (replacing an earlier copy of ours) and records the environment;
    returns the package folder."""
    from .latent_studio_krita.environment import write_record

    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KritaCommandError(f"The folder {dest} cannot be made ({exc.strerror or exc}): give another with "
                                "--dest.") from None
    target = dest / PACKAGE
    if target.exists() and not (target / "environment.json").exists() and not (target / "controller.py").exists():
        raise KritaCommandError(f"{target} exists and is not Latent Studio's plugin: move it away first.")
    try:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(HERE / PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                "environment.json"))
        shutil.copy2(HERE / f"{PACKAGE}.desktop", dest / f"{PACKAGE}.desktop")
        record = environment_record()
        write_record(target / "environment.json", Path(record["root"]), record["python"], sys.version_info[:2],
                     record["site_packages"])
    except OSError as exc:
        raise KritaCommandError(f"The plugin cannot be copied into {dest} ({exc.strerror or exc}): check that "
                                "the folder can be written to.") from None
    return target


def uninstall(dest: Path) -> list[Path]:
    dest = Path(dest).expanduser()
    found = [p for p in (dest / PACKAGE, dest / f"{PACKAGE}.desktop") if p.exists()]
    if not found:
        raise KritaCommandError(f"Latent Studio's Krita plugin is not installed in {dest}: give the folder with "
                                "--dest.")
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return found


def _install(args) -> int:
    target = install(Path(args.dest) if args.dest else default_pykrita())
    print(f"Installed the Krita plugin in {target.parent} (engine: {sys.executable}, Python "
          f"{sys.version_info[0]}.{sys.version_info[1]}).")
    print(f"One step left: {ENABLE_STEP}")
    return 0


def _uninstall(args) -> int:
    removed = uninstall(Path(args.dest) if args.dest else default_pykrita())
    print(f"Removed {', '.join(str(p) for p in removed)}; restart Krita.")
    return 0


# --- self-test ----------------------------------------------------------------------------------------

def selftest_command(display: str | None = None, which=shutil.which) -> list[str]:
    """kritarunner, under xvfb-run when there is no display; KritaCommandError (one sentence) when missing."""
    runner = which("kritarunner")
    if runner is None:
        raise KritaCommandError("Krita is not installed (no kritarunner on PATH): install it, e.g. `sudo apt-get "
                                "install krita xvfb`.")
    command = [runner, "-s", f"{PACKAGE}.selftest", "-f", "main"]
    if not display:
        xvfb = which("xvfb-run")
        if xvfb is None:
            raise KritaCommandError("There is no display and xvfb-run is missing: install it, e.g. `sudo apt-get "
                                    "install xvfb`.")
        command = [xvfb, "-a"] + command
    return command


def _stop_group(process: subprocess.Popen) -> None:
    """Ends the process group the self-test started (only it: its own session)."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _selftest(args) -> int:
    command = selftest_command(os.environ.get("DISPLAY"))
    out = Path(args.out).resolve()
    if out.suffix.lower() != ".ora":
        raise KritaCommandError(f"--out {out.name} must end in .ora.")
    if not out.parent.is_dir():
        raise KritaCommandError(f"The folder of --out ({out.parent}) does not exist: make it first.")
    image = Path(args.image).resolve()
    if not image.is_file():
        raise KritaCommandError(f"The image {args.image} does not exist: check the name.")
    with tempfile.TemporaryDirectory(prefix="latent-studio-krita-selftest-") as tmp:
        status_file = Path(tmp) / "status.json"
        spec = {"image": str(image), "out": str(out), "status": str(status_file), "operation": args.operation,
                "steps": args.steps, "seed": 0,
                "threads": args.threads, "timeout": args.timeout, "record": environment_record()}
        env = dict(os.environ, PYTHONPATH=str(HERE), LATENT_STUDIO_SELFTEST=json.dumps(spec),
                   HF_HUB_OFFLINE="1", **OPENMP_DEFAULTS)
        env.pop("QT_QPA_PLATFORM", None)  # Krita on Qt's offscreen platform stops at an X error: it gets xcb
        started = time.monotonic()
        log = Path(tmp) / "krita.log"
        with open(log, "w") as out_log:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out_log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait(args.timeout + 120)
            except subprocess.TimeoutExpired:
                _stop_group(process)
                print(f"error: Krita did not finish the self-test within {args.timeout + 120:.0f} s.",
                      file=sys.stderr)
                return 1
            finally:
                _stop_group(process)  # xvfb-run's Xvfb, and a Krita that outlived its script
        seconds = time.monotonic() - started
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-3:])
            print(f"error: Krita ran no self-test (exit {returncode}; last lines: {tail[:300]}).",
                  file=sys.stderr)
            return 1
    if not status.get("ok"):
        print(f"error: the self-test failed inside Krita: {status.get('error', 'no result layer was added')}",
              file=sys.stderr)
        if status.get("details"):
            print(status["details"], file=sys.stderr)
        return 1
    job = status["seconds"]
    where = f" over {tuple(status['area'])}" if status.get("area") else ""
    print(f"Krita added the layer {status['layer']!r}{where} to a {status['size'][0]}x{status['size'][1]} document "
          f"and saved {out} ({seconds:.1f} s in all: the job {job['job']:.1f} s; {status['placement']}).")
    return 0
