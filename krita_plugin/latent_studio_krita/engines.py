"""The engine for a placement (:mod:`.environment`): an :data:`backend.interface.EngineFactory` and what
to stop when the plugin closes. Called after :func:`.environment.activate`."""
from __future__ import annotations

from .environment import IN_PROCESS, LOCAL_SERVER, EnvironmentProblem, Placement


def engine_for(placement: Placement, record: dict | None, token: str = "", **options):
    """(factory, stop): ``stop()`` ends what was started for it (a local server process)."""
    if placement.kind == IN_PROCESS:
        from backend.engine import engine_factory

        return engine_factory(**options), lambda: None
    from remote.client import remote_engine_factory

    if placement.kind == LOCAL_SERVER:
        from .local_server import LocalServer

        server = LocalServer(record)
        return remote_engine_factory(server.url, server.token), server.stop
    if not placement.url:
        raise EnvironmentProblem("Give the server's address (like http://gpu-box:7860) in the Engine field.")
    return remote_engine_factory(placement.url, token), lambda: None
