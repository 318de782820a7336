"""Latent Studio: opens the app, or with a subcommand runs headless.

    python main.py                 # the painting app
    python main.py FILE.ora        # the app, opening FILE
    python main.py inpaint ...     # headless; `python main.py --help` lists them
"""
from __future__ import annotations

import os
import sys

# How torch's threads wait (backend/threads.py); this must be set before torch is imported anywhere.
from backend.threads import openmp_defaults  # noqa: E402

openmp_defaults()

# Each module registers its own subcommands: register(subparsers) adds parsers
# whose `func(args) -> int` runs the command. Adding a command means adding a
# module here, nothing else.
COMMAND_MODULES = (
    "cli.generate",
    "cli.training",
    "cli.serve",
    "krita_plugin.commands",
)


def build_parser():
    import importlib

    from cli.contract import Parser

    parser = Parser(
        prog="latent-studio",
        description="Latent Studio: paint, inpaint, outpaint, vary and upscale with latent diffusion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent module
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].lower().endswith((".ora", ".png", ".jpg", ".jpeg", ".webp")) \
            and not os.path.exists(argv[0]):
        print(f"error: {argv[0]} does not exist: check the file name.", file=sys.stderr)
        return 2
    if not argv or (len(argv) == 1 and not argv[0].startswith("-") and os.path.exists(argv[0])):
        from studio.app import run_app

        return run_app(argv[0] if argv else None)
    # The error contract (cli/contract.py): bad input is one line and exit 2 before the job, a job that
    # fails is one line and exit 1 with the details in the log file.
    from cli.contract import fail, run

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already said in one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        return fail(f"No command was given: name one, such as inpaint (see `{parser.prog} --help`).")
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
