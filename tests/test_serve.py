"""The Serve graph on tiny artifacts in a local Ray: parity with the in-process pipeline, a 4xx
for every bad input, and a model swap under a stream of requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings

from mtmh.serving.inprocess import InProcessRetrieval
from mtmh.serving.plan import RequestError, UnknownItemError, plan_i2i, plan_retrieve
from mtmh.serving.run import ServingArtifactError, ServingRun
from mtmh.versions import promote, rollback, version_dir, write_version
from tests.tiny_serving import NUM_CLUSTERS, NUM_ITEMS, make_serving_run

APP = "mtmh-test"
SERVE_APP = Path(__file__).resolve().parents[1] / "serve_app"
# Every test of the running service runs against both modes, each deployed from its config.
CONFIGS = {"graph": SERVE_APP / "config.yaml", "fused": SERVE_APP / "config_fused.yaml"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serving")
    a, b = make_serving_run(root / "a", seed=1), make_serving_run(root / "b", seed=2)
    # Run b serves in ANN order, as a run whose evaluation found the preranker worse on
    # validation does (eval.ranking=auto): the swap goes from one order to the other.
    (b / "eval").mkdir()
    (b / "eval" / "ranking.json").write_text(json.dumps({"chosen": "ann", "how": "test"}))
    return a, b


def _deploy(run_dir: Path, mode: str) -> None:
    """Deploy the `mode` config's application, serving `run_dir`, the way `serve deploy`
    does: the CLI sends the config to the dashboard, which hands it to the Serve controller;
    this hands it to the controller directly (the test's Ray runs no dashboard). Redeploying
    with only the ingress user_config changed is Serve's lightweight update."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    from serve_app.builder import INGRESS_NAME

    config = yaml.safe_load(CONFIGS[mode].read_text())["applications"][0]
    config["name"] = APP
    for deployment in config["deployments"]:
        if deployment["name"] == INGRESS_NAME[mode]:
            deployment["user_config"]["run_dir"] = str(run_dir)
    serve_start().deploy_apps(ServeDeploySchema.model_validate({"applications": [config]}))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def url(ray_local: None, runs: tuple[Path, Path], mode: str) -> Iterator[str]:
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    _deploy(runs[0], mode)
    base = f"http://127.0.0.1:{port}"
    _wait_for_version(base, ServingRun.open(runs[0]).version)
    yield base
    serve.shutdown()


def _wait_for_version(base: str, version: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/healthz", timeout=5)
            if r.status_code == 200 and r.json()["model_version"] == version:
                return
        except requests.RequestException:  # the proxy is up before the app: wait
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} did not serve {version} within {timeout_s} s")


def _served(body: dict[str, Any]) -> list[tuple[int, str, float]]:
    return [(c["item_id"], c["head"], c["score"]) for c in body["candidates"]]


def _reference(ref: InProcessRetrieval, path: str, body: dict[str, Any]) -> list[Any]:
    knobs = (body.get("k"), body.get("alpha"), body.get("user_history"))
    search = (body.get("strategy"), body.get("visit"))
    if path == "/i2i":
        plan = plan_i2i(ref.run, body["item_id"], *knobs, *search)
    else:
        plan = plan_retrieve(ref.run, body["trigger_item_ids"], *knobs, *search)
    return [(c.item_id, c.head, c.score) for c in ref.answer(plan)]


PARITY_REQUESTS = [
    ("/i2i", {"item_id": 3}),
    ("/i2i", {"item_id": 3, "alpha": 0}),
    ("/i2i", {"item_id": 3, "alpha": 100, "k": 7}),
    ("/i2i", {"item_id": 411, "k": 60, "alpha": 30, "user_history": [5, 9, 411, 77]}),
    ("/retrieve", {"trigger_item_ids": [10, 20, 30, 20, 599]}),
    ("/retrieve", {"trigger_item_ids": [42], "k": 5, "alpha": 70}),
    (
        "/retrieve",
        {"trigger_item_ids": list(range(0, 600, 7)), "k": 1000, "user_history": [1, 2, 3]},
    ),
    # Divide and conquer: the run's clusters searched one by one, merged by each strategy.
    ("/i2i", {"item_id": 3, "strategy": "uniform", "visit": 3}),
    ("/i2i", {"item_id": 411, "strategy": "affinity", "user_history": [5, 9, 411, 77]}),
    ("/retrieve", {"trigger_item_ids": [10, 20, 30], "strategy": "score", "visit": 6}),
    ("/retrieve", {"trigger_item_ids": [10, 20, 30], "strategy": "global", "alpha": 70}),
]


@pytest.mark.parametrize(("path", "body"), PARITY_REQUESTS)
def test_serve_answers_like_the_in_process_pipeline(
    url: str, runs: tuple[Path, Path], path: str, body: dict[str, Any]
) -> None:
    ref = InProcessRetrieval(ServingRun.open(runs[0]))
    r = requests.post(url + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["model_version"] == ref.run.version
    want = _reference(ref, path, body)
    assert want, "the reference found no candidates: the comparison would be empty"
    assert [(i, h) for i, h, _ in _served(got)] == [(i, h) for i, h, _ in want]
    np.testing.assert_allclose([s for *_, s in _served(got)], [s for *_, s in want], rtol=1e-6)
    assert all(c["raw_id"] == f"m{c['item_id']}" for c in got["candidates"])
    if path == "/i2i":
        assert len(got["candidates"]) == got["k"]
        assert body["item_id"] not in {c["item_id"] for c in got["candidates"]}
    assert got["strategy"] == body.get("strategy", "global")
    assert all(0 <= c["cluster"] < NUM_CLUSTERS for c in got["candidates"])


def test_a_uniform_request_takes_equal_shares_of_the_clusters_it_visits(url: str) -> None:
    body = {"item_id": 3, "alpha": 100, "strategy": "uniform", "visit": 3, "k": 30}
    r = requests.post(url + "/i2i", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["strategy"], got["visit"]) == ("uniform", 3)
    shares = Counter(c["cluster"] for c in got["candidates"])
    assert sorted(shares.values()) == [10, 10, 10]
    glob = requests.post(url + "/i2i", json={"item_id": 3, "alpha": 100}, timeout=30).json()
    assert glob["visit"] is None and glob["candidates"] != got["candidates"]


# The same requests naming items by the dataset's own ids (the tiny catalog's raw ids are
# "m<item id>"): answered exactly as the catalog-id forms.
RAW_ID_FORMS = [
    ("/i2i", {"raw_id": "m3"}, {"item_id": 3}),
    (
        "/i2i",
        {"raw_id": "m411", "k": 60, "user_history_raw_ids": ["m5", "m9", "m411"]},
        {"item_id": 411, "k": 60, "user_history": [5, 9, 411]},
    ),
    (
        "/retrieve",
        {"trigger_raw_ids": ["m10", "m20", "m10", "m599"]},
        {"trigger_item_ids": [10, 20, 10, 599]},
    ),
]


@pytest.mark.parametrize(("path", "raw", "ids"), RAW_ID_FORMS)
def test_raw_ids_name_the_same_items_as_catalog_ids(
    url: str, path: str, raw: dict[str, Any], ids: dict[str, Any]
) -> None:
    by_raw = requests.post(url + path, json=raw, timeout=30)
    by_id = requests.post(url + path, json=ids, timeout=30)
    assert by_raw.status_code == by_id.status_code == 200, (by_raw.text, by_id.text)
    assert by_raw.json()["candidates"] and by_raw.json() == by_id.json()


BAD_REQUESTS = [
    ("/i2i", {"item_id": NUM_ITEMS}, 404, "unknown item_id 600"),
    ("/i2i", {"item_id": 1, "user_history": [2, 10_000]}, 404, "unknown item_id 10000"),
    ("/retrieve", {"trigger_item_ids": [1, 700, 800]}, 404, "unknown item_id 700, 800"),
    ("/i2i", {"item_id": -1}, 422, "item_id"),
    ("/i2i", {"item_id": 1, "alpha": 100.5}, 422, "alpha"),
    ("/i2i", {"item_id": 1, "alpha": -1}, 422, "alpha"),
    ("/retrieve", {"trigger_item_ids": [1], "alpha": 101}, 422, "alpha"),
    ("/i2i", {"item_id": 1, "k": 0}, 422, "k"),
    ("/i2i", {"item_id": 1, "k": 61}, 422, "K_ann"),  # K_ann is 60 on the tiny catalog
    ("/retrieve", {"trigger_item_ids": [1], "k": 1001}, 422, "k"),
    ("/retrieve", {"trigger_item_ids": []}, 422, "trigger_item_ids"),
    ("/retrieve", {"trigger_item_ids": list(range(201))}, 422, "trigger_item_ids"),
    ("/i2i", {"item_id": "seven"}, 422, "item_id"),
    ("/i2i", {"item_id": 1.5}, 422, "item_id"),
    ("/i2i", {"item_id": True}, 422, "item_id"),
    ("/i2i", {}, 422, "item_id"),
    ("/i2i", {"item_id": 1, "extra": 1}, 422, "extra"),
    ("/i2i", [1, 2], 422, "body"),
    ("/retrieve", {"trigger_item_ids": 5}, 422, "trigger_item_ids"),
    ("/i2i", {"raw_id": "nope"}, 404, "unknown raw_id 'nope'"),
    ("/i2i", {"raw_id": "m1", "user_history_raw_ids": ["m2", "zz"]}, 404, "'zz'"),
    ("/retrieve", {"trigger_raw_ids": ["m1", "x9", "x8"]}, 404, "unknown raw_id 'x8', 'x9'"),
    ("/i2i", {"item_id": 1, "raw_id": "m1"}, 422, "exactly one of item_id or raw_id"),
    ("/i2i", {"raw_id": 5}, 422, "raw_id"),
    ("/i2i", {"raw_id": ""}, 422, "raw_id"),
    (
        "/i2i",
        {"raw_id": "m1", "user_history": [1], "user_history_raw_ids": ["m2"]},
        422,
        "at most one of user_history or user_history_raw_ids",
    ),
    ("/retrieve", {"trigger_item_ids": [1], "trigger_raw_ids": ["m1"]}, 422, "exactly one"),
    ("/retrieve", {"trigger_raw_ids": []}, 422, "trigger_raw_ids"),
    ("/i2i", {"item_id": 1, "strategy": "nearest"}, 422, "strategy"),
    ("/i2i", {"item_id": 1, "strategy": "uniform", "visit": 7}, 422, "visit=7 is outside 1..6"),
    ("/i2i", {"item_id": 1, "visit": 2}, 422, "visit applies to a divide-and-conquer strategy"),
    ("/retrieve", {"trigger_item_ids": [1], "strategy": "score", "visit": 0}, 422, "visit"),
]


@pytest.mark.parametrize(("path", "body", "status", "reason"), BAD_REQUESTS)
def test_bad_input_gets_a_4xx_with_the_reason(
    url: str, path: str, body: Any, status: int, reason: str
) -> None:
    r = requests.post(url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    assert reason in r.text


def test_malformed_bodies_and_wrong_methods_are_4xx(url: str) -> None:
    for data in (b"{not json", b"", b"\xff\xfe", b'{"item_id": 1'):
        r = requests.post(url + "/i2i", data=data, headers=JSON, timeout=30)
        assert r.status_code == 422, (data, r.text)
    assert requests.get(url + "/i2i", timeout=30).status_code == 405
    assert requests.post(url + "/nope", json={}, timeout=30).status_code == 404


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "item_id": st.integers(-5, NUM_ITEMS + 5) | _json,
        "trigger_item_ids": st.lists(st.integers(-5, NUM_ITEMS + 5), max_size=205) | _json,
        "k": st.integers(-2, 1_005) | _json,
        "alpha": st.floats(-10, 110) | _json,
        "user_history": st.lists(st.integers(-5, NUM_ITEMS + 5), max_size=20) | _json,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(["/i2i", "/retrieve"]), body=_bodies | _json)
def test_no_input_makes_a_5xx(url: str, path: str, body: Any) -> None:
    # json.dumps writes NaN and Infinity as bare tokens: malformed JSON the service must survive.
    data = json.dumps(body).encode()
    r = requests.post(url + path, data=data, headers=JSON, timeout=30)
    assert r.status_code in (200, 404, 422), (path, body, r.status_code, r.text)


@contextmanager
def _streaming(url: str) -> Iterator[list[Any]]:
    """Four clients posting /i2i while the block runs; yields their (body, status, answer or
    error) per request, complete once the block has ended."""
    stop = threading.Event()
    results: list[Any] = []
    bodies = [{"item_id": i, "alpha": a} for i in (3, 77, 411) for a in (0, 50, 100)]
    streaming = threading.Thread(target=lambda: results.extend(_stream(url, bodies, stop)))
    streaming.start()
    try:
        yield results
    finally:
        stop.set()
        streaming.join()


def _stream(url: str, bodies: list[dict[str, Any]], stop: threading.Event) -> list[Any]:
    """Four clients posting /i2i until `stop`; (body, status, answer or error) per request."""
    results: list[tuple[dict[str, Any], int, Any]] = []

    def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            body = bodies[(worker + n) % len(bodies)]
            n += 1
            try:
                r = requests.post(url + "/i2i", json=body, timeout=60)
            except requests.RequestException as err:  # a dropped connection is a failure too
                results.append((body, -1, repr(err)))
                continue
            results.append((body, r.status_code, r.json() if r.ok else r.text[:300]))

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return results


def _whole_answers(results: list[Any], refs: dict[str, InProcessRetrieval]) -> set[str]:
    """Checks no request failed and every answer is exactly its own version's (nothing mixed
    two models); returns the versions that answered."""
    failed = [(b, status, out) for b, status, out in results if status != 200]
    assert not failed, failed[:3]
    for body, _, out in results:
        want = _reference(refs[out["model_version"]], "/i2i", body)
        assert [(i, h) for i, h, _ in _served(out)] == [(i, h) for i, h, _ in want]
    return {out["model_version"] for *_, out in results}


def test_swap_during_a_stream_fails_no_request_and_mixes_no_versions(
    url: str, runs: tuple[Path, Path], mode: str
) -> None:
    refs = {ref.run.version: ref for ref in map(InProcessRetrieval, map(ServingRun.open, runs))}
    old, new = (ServingRun.open(r).version for r in runs)
    with _streaming(url) as results:
        time.sleep(2.0)
        _deploy(runs[1], mode)
        _wait_for_version(url, new)
        time.sleep(2.0)

    assert _whole_answers(results, refs) == {old, new}


def test_a_run_with_versions_follows_promotion_and_rollback_under_a_stream(
    url: str, mode: str, tmp_path: Path
) -> None:
    """`mtmh update` promotes by writing RUN/serving.json and `mtmh rollback` goes back the
    same way: each replica follows the file, with no request failed or mixed."""
    root = make_serving_run(tmp_path / "run", seed=3)
    make_serving_run(version_dir(root, 1), seed=4)
    write_version(root, 1, {"version": 1, "made_from": 0, "made_at": 1.0, "promoted": False})
    old, new = (InProcessRetrieval(ServingRun.open(root, number=n)) for n in (0, 1))
    refs = {r.run.version: r for r in (old, new)}
    v0, v1 = old.run.version, new.run.version
    _deploy(root, mode)
    _wait_for_version(url, v0)
    with _streaming(url) as results:
        time.sleep(1.0)
        promote(root, 1, "test")
        _wait_for_version(url, v1)
        assert requests.get(url + "/healthz", timeout=5).json()["version_number"] == 1
        time.sleep(1.0)
        rollback(root)
        _wait_for_version(url, v0)
        time.sleep(1.0)

    assert _whole_answers(results, refs) == {v0, v1}
    health = requests.get(url + "/healthz", timeout=5).json()
    assert health["version_number"] == 0 and Path(health["run_dir"]) == root.resolve()


@pytest.mark.parametrize(("path", "body"), PARITY_REQUESTS)
def test_a_run_served_in_ann_order_answers_like_the_in_process_pipeline(
    url: str, runs: tuple[Path, Path], mode: str, path: str, body: dict[str, Any]
) -> None:
    ref = InProcessRetrieval(ServingRun.open(runs[1]))
    assert ref.run.ranking == "ann"
    _deploy(runs[1], mode)  # live already after the swap test; deploying again changes nothing
    _wait_for_version(url, ref.run.version)
    r = requests.post(url + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    want = _reference(ref, path, body)
    assert want
    assert [(i, h) for i, h, _ in _served(r.json())] == [(i, h) for i, h, _ in want]
    np.testing.assert_allclose([s for *_, s in _served(r.json())], [s for *_, s in want], rtol=1e-5)
    if path == "/i2i":  # one trigger: the candidates come in each head's similarity order
        scores = [s for *_, s in want]
        assert scores == sorted(scores, reverse=True) or body.get("alpha") not in (0, 100)


def test_a_version_id_refuses_artifacts_replaced_in_place(tmp_path: Path) -> None:
    run_dir = make_serving_run(tmp_path / "run", seed=3)
    run = ServingRun.open(run_dir)
    assert ServingRun.from_model_id(run.model_id) == run
    make_serving_run(run_dir, seed=4)  # overwritten with another model
    with pytest.raises(ServingArtifactError, match="replaced in place"):
        ServingRun.from_model_id(run.model_id)
    with pytest.raises(ServingArtifactError, match="pipeline run"):
        ServingRun.open(tmp_path / "missing")


def test_plans_check_their_inputs(runs: tuple[Path, Path]) -> None:
    run = ServingRun.open(runs[0])
    plan = plan_retrieve(run, [5, 3, 5, 9])
    assert plan.triggers.tolist() == [5, 3, 9]
    assert plan.history.tolist() == [9, 3, 5]  # oldest first
    assert plan.seen.tolist() == [9, 3, 5] and plan.k == run.top_k
    assert plan_i2i(run, 4).history.tolist() == [4]
    with pytest.raises(UnknownItemError, match="600"):
        plan_i2i(run, NUM_ITEMS)
    with pytest.raises(RequestError, match="K_ann"):
        plan_i2i(run, 1, k=run.k_ann + 1)
    with pytest.raises(RequestError, match="alpha"):
        plan_retrieve(run, [1], alpha=float("nan"))
    part = plan_i2i(run, 4, strategy="affinity").partition
    assert part is not None and (part.strategy, part.visit) == ("affinity", run.visit)
    assert plan_i2i(run, 4, strategy="global").partition is None


def test_a_run_without_clusters_refuses_divide_and_conquer(tmp_path: Path) -> None:
    import shutil

    run_dir = make_serving_run(tmp_path / "run", seed=5)
    shutil.rmtree(run_dir / "clusters")
    run = ServingRun.open(run_dir)
    assert run.num_clusters == 0 and ".cl-" not in run.version
    with pytest.raises(RequestError, match="has no clusters"):
        plan_i2i(run, 4, strategy="uniform")


# The catalog endpoint and the pages a person opens.
def test_items_search_by_title_and_list_by_id(url: str) -> None:
    r = requests.get(url + "/items", params={"q": "title 41", "limit": 5}, timeout=30)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert 1 <= len(items) <= 5
    assert all("Title 41" in i["title"] for i in items)
    counts = [i["interactions"] for i in items]
    assert counts == sorted(counts, reverse=True)  # most interacted first
    r = requests.get(url + "/items", params={"ids": "7,3"}, timeout=30)
    assert [(i["item_id"], i["raw_id"], i["title"], i["topics"]) for i in r.json()["items"]] == [
        (7, "m7", "Title 7 of topic2", ["topic2"]),
        (3, "m3", "Title 3 of topic3", ["topic3"]),
    ]
    assert (
        requests.get(url + "/items", params={"q": "m12"}, timeout=30).json()["items"][0]["item_id"]
        == 12
    )  # an exact raw id comes first


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({}, 422, "exactly one of q or ids"),
        ({"q": "a", "ids": "1"}, 422, "exactly one of q or ids"),
        ({"ids": "1,x"}, 422, "comma-separated integers"),
        ({"ids": "1,600,-1"}, 404, "unknown item_id [600, -1]"),
        ({"ids": ",".join(["1"] * 201)}, 422, "at most 200 ids"),
        ({"q": "a", "limit": 0}, 422, "limit"),
        ({"q": "x" * 201}, 422, "q"),
    ],
)
def test_bad_item_queries_get_a_4xx_with_the_reason(
    url: str, params: dict[str, Any], status: int, reason: str
) -> None:
    r = requests.get(url + "/items", params=params, timeout=30)
    assert r.status_code == status, r.text
    assert reason in r.text


def test_report_page_renders_the_report_and_serves_only_its_plots(url: str) -> None:
    r = requests.get(url + "/report", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<td>ItemKNN</td>" in r.text and "w_r sweep" in r.text
    assert "<script>alert" not in r.text  # markup in the report is shown as text
    for name in ("alpha_curve.png", "tune/wr_sweep.png"):
        assert f"/report/files/{name}" in r.text
        img = requests.get(f"{url}/report/files/{name}", timeout=30)
        assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
    for name in ("pipeline.yaml", "../a/alpha_curve.png", "%2e%2e/pipeline.yaml", "x.png"):
        assert requests.get(f"{url}/report/files/{name}", timeout=30).status_code == 404, name


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (apt-get install chromium)
# As root in a sandboxed machine: no setuid sandbox, and no background connections to hosts
# this network cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _set_alpha(page: Any, alpha: int) -> list[str]:
    """Move the slider as a person would (an input event), wait for the merged list to be
    redrawn at that alpha, and return its heads in order."""
    page.locator("#alpha").evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(alpha),
    )
    page.wait_for_function(f"document.getElementById('merged-alpha').textContent === '{alpha}'")
    return list(page.locator("#list-merged li").evaluate_all("els => els.map(e => e.dataset.head)"))


def test_explore_page_in_a_real_browser(url: str, browser: Any, tmp_path: Path, mode: str) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('version').textContent.includes('600 items')")
    # The serving version and when it was made (RUN/serving.json; a run never updated is 0).
    assert page.locator("#version").inner_text().startswith("version 0 (made ")

    page.locator("#q").fill("Title 41")
    page.wait_for_selector("#results button")
    found = page.locator("#results button").all_inner_texts()
    assert found and all("Title 41" in text for text in found)
    page.locator("#results button", has_text="Title 41 of topic1").click()
    page.wait_for_selector("#list-merged li")
    assert "Title 41 of topic1" in page.locator("#trigger").inner_text()
    for head in ("engagement", "relevance"):
        shown = page.locator(f"#list-{head} li").evaluate_all("els => els.map(e => e.dataset.head)")
        assert shown and set(shown) == {head}
    assert page.locator("#list-merged li .topic").count() > 0  # titles come with topics

    assert set(_set_alpha(page, 0)) == {"relevance"}
    assert set(_set_alpha(page, 100)) == {"engagement"}
    mixed = _set_alpha(page, 50)
    assert set(mixed) == {"engagement", "relevance"}
    assert page.locator("#list-merged li .cluster").count() == len(mixed)  # coloured chips
    page.screenshot(path=str(tmp_path / f"explore-{mode}.png"), full_page=True)
    # The same item in the merged list and a head's list reads the same (one catalog lookup).
    first = page.locator("#list-merged li").first
    item = first.get_attribute("data-item-id")
    same = page.locator(f"#list-{mixed[0]} li[data-item-id='{item}']")
    assert same.count() == 1 and same.inner_text() == first.inner_text()

    # Divide and conquer, uniform quotas over 2 clusters: the engagement head's list holds
    # exactly two clusters, half each.
    page.locator("#strategy").select_option("uniform")
    page.locator("#visit").fill("2")
    page.locator("#visit").dispatch_event("change")
    page.wait_for_function(
        "new Set([...document.querySelectorAll('#list-engagement .cluster')]"
        ".map(e => e.dataset.cluster)).size === 2"
    )
    chips = page.locator("#list-engagement .cluster").evaluate_all(
        "els => els.map(e => e.dataset.cluster)"
    )
    assert sorted(Counter(chips).values()) == [15, 15]
    page.screenshot(path=str(tmp_path / f"explore-dat-{mode}.png"), full_page=True)

    page.goto(url + "/report")
    assert page.locator("#report table td", has_text="ItemKNN").count() == 1
    widths = page.locator("#plots img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths)  # both plots loaded
    page.screenshot(path=str(tmp_path / f"report-{mode}.png"), full_page=True)
    assert not errors, errors
