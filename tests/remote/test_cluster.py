"""The engine served by Ray Serve on a local cluster (loopback only), used by two clients at once.

One local Ray cluster for the test run (only this module uses it; module-scoped, so that it stops and
$LATENT_STUDIO_MODELS is restored before other modules run): two CPU replicas with one torch thread
each, serving the tiny SD 1.5 model by name. Skipped, with the reason, where the `cluster` extra (Ray
Serve) is not installed.
"""
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Looked up, not imported: collecting the suite does not import Ray.
def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if not (_installed("ray") and _installed("ray.serve")):
    pytest.skip("the cluster extra (Ray Serve) is not installed: run `make setup-cluster` (pip install -e "
                "'.[cluster]') to test serving", allow_module_level=True)

from backend import Img2ImgRequest, InpaintRequest  # noqa: E402
from backend.errors import InvalidRequest, ModelError  # noqa: E402
from backend.events import TERMINAL, Cancelled, Failed, ModelState, Preview, Progress, Result, Started  # noqa: E402
from remote.client import RemoteEngine  # noqa: E402
from remote.protocol import PROTOCOL, PROTOCOL_HEADER, Limits, RemoteError, RemoteRefused  # noqa: E402
from scenes import make_scene  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "correct horse battery staple"
LIMITS = Limits(max_side=512, max_pixels=512 * 512, max_steps=30, max_count=4)


class Events:
    """A client's events, waited on by job."""

    def __init__(self):
        self.times = []
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.times.append(time.monotonic())
            self.items.append(event)
            self.cond.notify_all()

    def when(self, job, kind):
        with self.cond:
            return next(t for t, e in zip(self.times, self.items) if e.job_id == job and isinstance(e, kind))

    def of(self, job):
        with self.cond:
            return [e for e in self.items if e.job_id == job]

    def wait(self, job, kinds=TERMINAL, timeout=60.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(e.job_id == job and isinstance(e, kinds) for e in self.items),
                                    timeout)
        assert ok, f"job {job}: no {kinds} in {timeout} s; got {[type(e).__name__ for e in self.of(job)]}"
        return self.of(job)


@pytest.fixture(scope="module")
def served_models(tmp_path_factory, tiny_sd15_folder):
    folder = tmp_path_factory.mktemp("served-models")
    (folder / "tiny").symlink_to(tiny_sd15_folder, target_is_directory=True)
    shutil.copytree(tiny_sd15_folder, folder / "tiny-b")  # a second model (a copy: a link would be the same one)
    # A model that passes every check before the job (a well-formed folder whose UNet weights are a
    # valid .safetensors file) and fails while the job loads it: the tensors are not the UNet's.
    broken = folder / "broken"
    shutil.copytree(tiny_sd15_folder, broken)
    from safetensors.numpy import save_file

    for weights in (broken / "unet").glob("*.safetensors"):
        save_file({"not_a_unet_weight": np.zeros(4, np.float32)}, str(weights))
    previous = os.environ.get("LATENT_STUDIO_MODELS")
    os.environ["LATENT_STUDIO_MODELS"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("LATENT_STUDIO_MODELS", None)
    else:
        os.environ["LATENT_STUDIO_MODELS"] = previous


@pytest.fixture(scope="module")
def server(served_models):
    from remote.serve import ServeOptions, start

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = start(ServeOptions(host="127.0.0.1", port=port, replicas=2, threads=1, token=TOKEN,
                             preview_interval=0.0, limits=LIMITS))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clients(server):
    a, b = Events(), Events()
    engines = RemoteEngine(a, server.url, TOKEN), RemoteEngine(b, server.url, TOKEN)
    yield (engines[0], a), (engines[1], b)
    for engine in engines:
        engine.shutdown()


def inpaint(**kw):
    img, mask = make_scene()
    args = dict(model="tiny", steps=3, guidance=5.0, feather=4, grow=2, padding=8, seed=11)
    args.update(kw)
    return InpaintRequest.from_document(img, mask, **args)


def raw(server, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_remote_result_is_bit_identical_to_in_process(clients):
    import torch

    from backend.engine import Engine

    (engine, events), _ = clients
    request = inpaint(count=2)
    job = engine.submit(request)
    local_events = Events()
    threads = torch.get_num_threads()
    local = Engine(local_events, threads=1, preview_interval=0.0)
    try:
        expected = local_events.wait(local.submit(request), timeout=120)[-1]
    finally:
        local.shutdown()
        torch.set_num_threads(threads)
    got = events.wait(job)
    assert isinstance(got[0], Started)
    assert [type(e) for e in got if isinstance(e, (Started, Result))] == [Started, Result]
    assert any(isinstance(e, Preview) for e in got) and any(isinstance(e, Progress) for e in got)
    assert isinstance(expected, Result), expected
    for mine, theirs in zip(got[-1].images, expected.images, strict=True):
        assert np.array_equal(mine.image, theirs.image) and np.array_equal(mine.mask, theirs.mask)
        assert (mine.rect, mine.seed, mine.parameters, mine.notes) == \
               (theirs.rect, theirs.seed, theirs.parameters, theirs.notes)


def test_a_job_goes_to_the_replica_that_has_its_model(clients):
    (engine, events), _ = clients

    def loaded(job) -> bool:  # the engine says "Loading <model>" when the job had to load its model
        return any(isinstance(e, Progress) and e.stage.startswith("Loading ") for e in events.wait(job))

    # one job per model at once: each replica loads one of the two (a replica keeps one model)
    for job in [engine.submit(inpaint(model=m, seed=60)) for m in ("tiny", "tiny-b")]:
        assert isinstance(events.wait(job)[-1], Result)
    # then, one after another, every job finds a replica with its model free and loads nothing
    for i, model in enumerate(("tiny-b", "tiny", "tiny", "tiny-b", "tiny", "tiny-b")):
        job = engine.submit(inpaint(model=model, seed=61 + i))
        assert not loaded(job), f"job {i} ({model}) was sent to the replica that had the other model"


def test_two_clients_see_and_cancel_only_their_own_jobs(clients):
    (a, a_events), (b, b_events) = clients
    ja, jb = a.submit(inpaint(seed=1)), b.submit(inpaint(seed=2))
    assert isinstance(a_events.wait(ja)[-1], Result) and isinstance(b_events.wait(jb)[-1], Result)
    a_seeds = [i.seed for e in a_events.items if isinstance(e, Result) for i in e.images]
    b_seeds = [i.seed for e in b_events.items if isinstance(e, Result) for i in e.images]
    assert 1 in a_seeds and 1 not in b_seeds and 2 in b_seeds and 2 not in a_seeds
    server_job = a._server[ja]  # a's job as the server numbers it, tried with b's session
    with pytest.raises(RemoteError, match=rf"^Job {server_job} is not one of this client's jobs: a client sees and "
                                          r"cancels only the jobs it submitted\.$"):
        b._call("POST", f"/jobs/{server_job}/cancel")
    with pytest.raises(RemoteError, match="is not one of this client's jobs"):
        b._call("GET", f"/jobs/{server_job}")
    assert a.status(ja) == "result"


def test_cancel_lands_and_the_next_job_runs(clients):
    (engine, events), _ = clients
    job = engine.submit(inpaint(steps=30, seed=3))
    events.wait(job, (Preview,))
    t0 = time.monotonic()
    assert engine.cancel(job)
    got = events.wait(job)
    assert isinstance(got[-1], Cancelled) and time.monotonic() - t0 < 10
    assert sum(isinstance(e, TERMINAL) for e in got) == 1
    assert not engine.cancel(job)  # already ended
    after = engine.submit(inpaint(seed=4))
    assert isinstance(events.wait(after)[-1], Result)


def test_a_wrong_or_missing_token_is_refused_in_one_sentence(server):
    headers = {PROTOCOL_HEADER: str(PROTOCOL)}
    status, body = raw(server, "POST", "/session", headers)
    assert status == 401 and body["error"] == ("The server needs a token: give it with --token-file or "
                                               "LATENT_STUDIO_TOKEN (ask the server's administrator for it).")
    status, body = raw(server, "POST", "/session", {**headers, "Authorization": "Bearer guess"})
    assert status == 401 and body["error"] == ("The server refused the token: check the token file or "
                                               "LATENT_STUDIO_TOKEN against the server's.")
    with pytest.raises(RemoteRefused, match="^The server refused the token"):
        RemoteEngine(lambda e: None, server.url, "guess")


def test_the_cli_exits_2_on_a_refused_token_1_on_a_failed_job_and_writes_a_result_otherwise(server, tmp_path, clients):
    from PIL import Image

    img, mask = make_scene()
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (tmp_path / "token").write_text(f"\n  {TOKEN}  \n")
    base = [sys.executable, "main.py", "inpaint", "--image", str(tmp_path / "in.png"), "--mask",
            str(tmp_path / "mask.png"), "--model", "tiny", "--steps", "3", "--seed", "11", "--fill", "original",
            "--strength", "1", "--quiet", "--engine", server.url]
    env = {**os.environ, "LATENT_STUDIO_TOKEN": "wrong"}
    done = subprocess.run(base + ["--out", str(tmp_path / "refused.png")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: The server refused the token"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused.png").exists()
    done = subprocess.run(base + ["--out", str(tmp_path / "out.png"), "--token-file", str(tmp_path / "token")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out.png") and (tmp_path / "out.png").is_file()
    done = subprocess.run(base + ["--out", str(tmp_path / "fail.png"), "--token-file", str(tmp_path / "token"),
                                  "--model", "broken"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "fail.png").exists()


def test_requests_over_the_limits_or_outside_the_model_folders_are_refused(clients):
    (engine, _), _ = clients
    with pytest.raises(RemoteRefused, match=r"^`steps` is 40 but this server runs at most 30 steps a job: ask for "
                                            r"fewer\.$"):
        engine.submit(inpaint(steps=40))
    with pytest.raises(RemoteRefused, match=r"^`count` is 5 but this server makes at most 4 variations"):
        engine.submit(inpaint(count=5))
    big = np.zeros((600, 64, 4), np.uint8)
    with pytest.raises(RemoteRefused, match=r"^An image of 64×600 pixels is larger than this server takes \(at most "
                                            r"512 px a side"):
        engine.submit(Img2ImgRequest(image=big, model="tiny", steps=3))
    with pytest.raises(InvalidRequest, match=r"^`model` '\.\./tiny' is a path, but this server serves models by name"):
        engine.submit(inpaint(model="../tiny"))
    with pytest.raises(InvalidRequest, match="is a path"):
        engine.check(inpaint(model=str(Path.home())))
    with pytest.raises(ModelError, match=r"^`model` 'owner/name' is a hub id, but this server does not download"):
        engine.submit(inpaint(model="owner/name"))
    with pytest.raises(ModelError, match=r"^This server has no model named 'nothing-here'"):
        engine.model_info("nothing-here")
    with pytest.raises(InvalidRequest, match="^This server does not load pickle model files"):
        engine.submit(inpaint(allow_pickle=True))
    assert ("tiny", "folder", "tiny") in engine.list_models()  # the name is how a client asks for it
    assert engine.model_info("tiny").name == "tiny"


def test_preload_answers_with_the_models_state_by_name(clients):
    (engine, events), _ = clients
    engine.preload("tiny")
    with events.cond:
        assert events.cond.wait_for(lambda: any(isinstance(e, ModelState) and e.state == "ready"
                                                for e in events.items), 60)
        states = [e for e in events.items if isinstance(e, ModelState)]
    assert states[-1].name == "tiny" and states[-1].job_id == 0  # the name, never the server's path
    with pytest.raises(InvalidRequest, match="is a path"):
        engine.preload("/etc")


def test_a_client_of_another_protocol_version_is_told_in_one_sentence(server, monkeypatch):
    import remote.client

    status, body = raw(server, "POST", "/session", {PROTOCOL_HEADER: "99", "Authorization": f"Bearer {TOKEN}"})
    expected = (f"The server speaks Latent Studio protocol {PROTOCOL} and this client protocol 99: use the same "
                "version of Latent Studio on both sides.")
    assert status == 400 and body["error"] == expected
    monkeypatch.setattr(remote.client, "PROTOCOL", 99)
    with pytest.raises(RemoteRefused) as info:
        RemoteEngine(lambda e: None, server.url, TOKEN)
    assert str(info.value) == expected


def test_a_dropped_event_stream_reconnects_and_misses_nothing(clients):
    (engine, events), _ = clients
    job = engine.submit(inpaint(steps=12, seed=6))
    events.wait(job, (Started,))
    engine._stream_sock.shutdown(socket.SHUT_RDWR)  # the connection drops mid-job
    got = events.wait(job)
    assert isinstance(got[-1], Result)
    assert sum(isinstance(e, Started) for e in got) == 1 and sum(isinstance(e, TERMINAL) for e in got) == 1
    steps = [e.step for e in got if isinstance(e, Progress) and not e.stage]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_a_server_that_forgot_the_client_fails_its_open_jobs_once(clients, server):
    (engine, events), _ = clients
    job = engine.submit(inpaint(steps=30, seed=8))
    events.wait(job, (Started,))
    raw(server, "DELETE", "/session", {PROTOCOL_HEADER: str(PROTOCOL), "Authorization": f"Bearer {TOKEN}",
                                       "X-Latent-Session": engine._session})  # as after a server restart
    got = events.wait(job, timeout=30)
    assert isinstance(got[-1], Failed) and got[-1].message == "The server restarted and lost this job: submit it again."
    again = engine.submit(inpaint(seed=9))  # the client carries on with a new session
    assert isinstance(events.wait(again)[-1], Result)


def test_the_client_carries_on_when_the_server_stops_and_starts_again(clients, server):
    from remote.serve import start

    (engine, events), _ = clients
    job = engine.submit(inpaint(steps=30, seed=10))
    events.wait(job, (Started,))
    t = time.monotonic()
    server.stop()  # the server and its local cluster, as on Ctrl-C or SIGTERM
    stopped = time.monotonic() - t
    got = events.wait(job, timeout=5)
    assert isinstance(got[-1], Failed), [type(e).__name__ for e in got]
    assert got[-1].message == "The server stopped during this job: submit it again when the server is back."
    assert stopped < 15, f"stopping took {stopped:.1f} s"  # open jobs and streams do not hold it (Ray: 20 s each)
    restarted = start(server.options)  # the same address; a new cluster that knows no client
    server.__dict__.update(restarted.__dict__)  # the module's fixture stops whichever runs at the end
    again = engine.submit(inpaint(seed=9))  # the client opens a new session and its stream reconnects
    assert isinstance(events.wait(again, timeout=120)[-1], Result)
    assert sum(isinstance(e, TERMINAL) for e in events.of(job)) == 1


def test_one_clients_batch_does_not_hold_up_anothers_job(clients):
    (a, a_events), (b, b_events) = clients
    batch = [a.submit(inpaint(seed=30 + i)) for i in range(4)]
    single = b.submit(inpaint(seed=40))
    for job in batch:
        a_events.wait(job)
    assert isinstance(b_events.wait(single)[-1], Result)
    # Two replicas take a's first two jobs; then the clients take turns: b's job before a's last.
    assert b_events.when(single, Started) < a_events.when(batch[3], Started)


def test_a_replica_killed_mid_job_fails_that_job_once_and_the_next_job_runs(clients):
    import ray

    (a, a_events), (b, b_events) = clients
    ja, jb = a.submit(inpaint(steps=30, count=4, seed=50)), b.submit(inpaint(steps=30, count=4, seed=51))
    a_events.wait(ja, (Preview,))
    b_events.wait(jb, (Preview,))
    replicas = [x for x in ray.util.list_named_actors(all_namespaces=True) if "EngineWorker" in x["name"]]
    assert len(replicas) == 2, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(isinstance(e, Failed) for e in a_events.of(ja) + b_events.of(jb)):
        time.sleep(0.05)
    (lost, events), (other, other_events) = ((ja, a_events), (jb, b_events)) if any(
        isinstance(e, Failed) for e in a_events.of(ja)) else ((jb, b_events), (ja, a_events))
    failed = events.wait(lost)[-1]
    assert isinstance(failed, Failed) and failed.message.startswith("The server lost the engine running this job (")
    assert failed.message.endswith("): submit it again.")
    (a if other == ja else b).cancel(other)  # the other replica's job was untouched; no need to wait for it
    assert not isinstance(other_events.wait(other)[-1], Failed)
    for job, evs in ((ja, a_events), (jb, b_events)):
        assert sum(isinstance(e, TERMINAL) for e in evs.of(job)) == 1
    after = a.submit(inpaint(seed=52))
    assert isinstance(a_events.wait(after, timeout=90)[-1], Result)


def test_the_studio_switches_to_the_server_and_applies_its_result(server, qtbot, tmp_path, monkeypatch):
    from dataclasses import replace

    from backend.fake import FakeEngine
    from canvas.geometry import Rect
    from canvas.selection import Selection
    from studio.settings import EngineSettings, Settings
    from studio.window import MainWindow

    monkeypatch.setenv("LATENT_STUDIO_CONFIG", str(tmp_path / "settings.json"))
    settings = Settings()
    settings.generation.common = replace(settings.generation.common, count=1, steps=3)
    settings.generation.random_seed = False
    window = MainWindow(settings, engine_factory=FakeEngine, autosave_dir=tmp_path / "autosave")
    try:
        window.show()
        qtbot.waitExposed(window)
        assert window.use_engine(EngineSettings("server", server.url, TOKEN))
        assert window.status_engine.text() == f"Engine: {server.url}"
        assert isinstance(window.bridge.engine, RemoteEngine)
        window.generation.editor("model").set_value("tiny")
        window.doc.select(Selection.rectangle(Rect(100, 100, 120, 100)))
        layers = len(window.doc.layers)
        window.generate()
        qtbot.waitUntil(lambda: len(window.variations.results) == 1, timeout=60_000)
        window.variations.apply.click()
        assert len(window.doc.layers) == layers + 1 and "Model: tiny" in window.doc.layers[-1].parameters
    finally:
        window.session.forget_changes()
        window.close()
        window.bridge.engine.shutdown(wait=True)
