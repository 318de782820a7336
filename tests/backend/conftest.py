import threading

import pytest

from backend.events import TERMINAL
from scenes import make_scene  # noqa: F401 - the tests here import it from conftest


class Recorder:
    """Collects engine events (called on the worker thread) and waits for a job's end."""

    def __init__(self):
        self.events = []
        self._cond = threading.Condition()
        self.on_event = None  # optional hook(event), runs on the worker thread

    def __call__(self, event):
        if self.on_event is not None:
            self.on_event(event)
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, job_id):
        with self._cond:
            return [e for e in self.events if e.job_id == job_id]

    def wait(self, job_id, timeout=240):
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(e.job_id == job_id and isinstance(e, TERMINAL) for e in self.events), timeout
            )
        assert ok, f"job {job_id} did not finish in {timeout} s"
        return self.of(job_id)


@pytest.fixture(scope="module")
def recorder():
    return Recorder()


@pytest.fixture(scope="module")
def engine(recorder):
    from backend.engine import Engine

    eng = Engine(recorder, preview_interval=0.0, threads=2)
    yield eng
    eng.shutdown()


@pytest.fixture(autouse=True)
def _reset_hook(recorder):
    recorder.on_event = None
    yield
    recorder.on_event = None


@pytest.fixture(scope="session")
def scene():
    return make_scene


def count_calls(monkeypatch, obj, *names) -> dict:
    """Counts the calls of ``obj``'s methods ``names`` (still calling them) for the rest of the test:
    {name: calls so far}."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(obj, name)

        def counted(*a, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(*a, **kw)

        monkeypatch.setattr(obj, name, counted)
    return calls


def result_of(engine, recorder, request):
    """Runs ``request`` on ``engine`` and returns its first result image (the job must succeed)."""
    from backend.events import Result

    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), events[-1]
    return events[-1].images[0]
