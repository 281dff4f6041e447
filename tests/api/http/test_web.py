"""The web page's routes: the HTML shell, its static files and plotly.min.js from the plotly package."""

from __future__ import annotations

import gzip
import re
from importlib import resources

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evoprune.api.http.routes import web


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(web.router)
    return TestClient(app)


def test_index_links_every_asset_with_its_content_hash(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    assert "{{" not in html, "an asset version placeholder was left unfilled"
    linked = dict(re.findall(r'(?:src|href)="static/([\w.]+)\?v=([0-9a-f]{12})"', html))
    assert set(linked) == {*web.PAGE_FILES, web.PLOTLY_FILE}
    for name, version in linked.items():
        body = client.get(f"/static/{name}", headers={"Accept-Encoding": "identity"}).content
        assert web._asset(body, "").version == version, name


def test_page_files_are_served_cacheable_with_their_media_type(client: TestClient) -> None:
    for name, media_type in web.PAGE_FILES.items():
        response = client.get(f"/static/{name}", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        assert "max-age=31536000" in response.headers["cache-control"]
        assert response.content == resources.files("evoprune.api.http").joinpath("web", name).read_bytes()


def test_plotly_comes_from_the_installed_package_gzipped_when_accepted(client: TestClient) -> None:
    expected = resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
    plain = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.content == expected
    assert "content-encoding" not in plain.headers
    # httpx would decode gzip itself; read the raw bytes to see what went over the wire
    with client.stream("GET", "/static/plotly.min.js", headers={"Accept-Encoding": "gzip"}) as packed:
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        wire = b"".join(packed.iter_raw())
    assert len(wire) < len(expected) / 2
    assert gzip.decompress(wire) == expected


def test_unknown_static_file_is_a_404_naming_the_known_ones(client: TestClient) -> None:
    for name in ("nope.js", "index.html", "app.py"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 404
        assert "app.js" in response.json()["detail"]
    # a path outside the folder does not even reach the route
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_static_files_answer_head_requests(client: TestClient) -> None:
    response = client.head("/static/app.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == web.PAGE_FILES["app.js"]


def test_the_page_shows_the_population_fronts_by_default_and_offers_the_archives(client: TestClient) -> None:
    html = client.get("/").text
    selector = re.search(r'<select id="front-kind"[^>]*>(.*?)</select>', html, re.S)
    assert selector is not None
    options = re.findall(r'<option value="(\w+)"( selected)?', selector.group(1))
    assert options == [("population", " selected"), ("archive", "")]
    script = client.get("/static/app.js").text
    assert "front?kind=population" in script
