"""The fallback for a Krita whose Python cannot load the environment: the plugin starts `main.py serve` on
loopback with a random token, runs a job through the remote client and stops the server, leaving nothing."""
import importlib.util
import queue

import numpy as np
import pytest

from backend.events import TERMINAL
from krita_mock import Document
from krita_plugin.commands import environment_record
from krita_plugin.latent_studio_krita import environment
from krita_plugin.latent_studio_krita.controller import Controller
from krita_plugin.latent_studio_krita.engines import engine_for
from operations import SPECS, CommonSettings
from scenes import make_scene

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the cluster extra: make setup-cluster"),
]


def test_another_python_gets_a_local_server_that_inpaints_and_stops():
    record = environment_record()
    placement = environment.choose(record, running=(3, 10))  # Krita 5.2's bundled Python against ours
    assert placement.kind == environment.LOCAL_SERVER
    factory, stop = engine_for(placement, record)
    events = queue.Queue()
    try:
        controller = Controller(factory, lambda func, event: events.put((func, event)), placement.label)
        assert controller.engine.url.startswith("http://127.0.0.1:")
        image, mask = make_scene(96, 128)
        doc = Document(image)
        doc.select(42, 32, 43, 32)
        job = controller.generate(doc, "inpaint", CommonSettings(steps=3, seed=3),
                                  controller.recommended("inpaint", "", SPECS["inpaint"].default_settings()))
        while True:
            func, event = events.get(timeout=300)
            func(event)
            if isinstance(event, TERMINAL):
                break
        assert controller.jobs[job].state == "done", controller.jobs[job].message
        node = controller.apply(0)
        assert [n.name() for n in doc.layers()] == ["Background", "Inpaint · seed 3"] and node is not None
        result = controller.jobs[job].results[0]
        x, y, w, h = result.rect
        outside = np.ones(mask.shape, bool)
        outside[y:y + h, x:x + w] = result.mask == 0
        assert np.array_equal(doc.projection()[outside], image[outside])
        controller.shutdown()
    finally:
        stop()
    with pytest.raises(OSError):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(controller.engine.url.rsplit(":", 1)[1]), timeout=2)
        conn.request("GET", "/hello")
        conn.getresponse()
