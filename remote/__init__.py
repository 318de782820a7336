"""The engine over the network: a Ray Serve server and a client that implements the engine interface.

* :mod:`remote.protocol`: the wire format (requests and events encoded from their dataclasses, images
  as PNG, previews as WebP), the protocol version, the server's limits;
* :mod:`remote.client`: :class:`RemoteEngine`, the engine interface over HTTP and server-sent events
  (standard library only: no Ray, no Qt);
* :mod:`remote.server`: the gateway (HTTP, tokens, sessions, limits, fair queueing) and the worker
  that owns one in-process engine per replica;
* :mod:`remote.serve`: ``main.py serve`` — starts or joins Ray and deploys them (the ``cluster`` extra).

It sits beside the operation specs, between the front ends and the engine: it imports ``backend``
only (never ``canvas``, ``operations`` or Qt). Importing it imports neither Ray nor torch.
"""
from .client import RemoteEngine, remote_engine_factory
from .protocol import PROTOCOL, RemoteError, RemoteRefused

__all__ = ["RemoteEngine", "remote_engine_factory", "PROTOCOL", "RemoteError", "RemoteRefused"]
