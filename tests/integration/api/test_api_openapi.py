"""The OpenAPI document is the truth: the documented requests fit it, the API accepts
them, a client generated from it works, and it says how to authenticate and what errors
look like."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from postline.runtime import Node
from support.node import add_tenant, api_client, running_node

ROOT = Path(__file__).resolve().parents[3]
DOCUMENT = json.loads((ROOT / "docs/reference/openapi.json").read_text(encoding="utf-8"))
DOCS = ("README.md", "docs/api.md")
NO_DELIVERY = "[delivery]\nenabled = false\n"
PROBLEM = "application/problem+json"
PUBLIC = ("/healthz", "/readyz", "/u/{token}")

_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.M | re.S)
_CURL = re.compile(r"curl\b[^\n]*?(/v1/messages(?:/batch)?)\b(?:[^\n]*\\\n)*?[^\n]*?-d '([^']*)'")


def _request_bodies(doc: str) -> list[tuple[str, str, Any]]:
    """(where, path, body) of each request to POST /v1/messages or /v1/messages/batch that
    ``doc`` shows: a fenced ```json message or batch, or the body of a curl command."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    message_fields = set(DOCUMENT["components"]["schemas"]["MessageIn"]["properties"])
    found: list[tuple[str, str, Any]] = []
    for fence in _FENCE.finditer(text):
        lang, block = fence.group(1), fence.group(2)
        line = text.count("\n", 0, fence.start()) + 1
        if lang == "json":
            try:
                body = json.loads(block)
            except ValueError:
                continue  # an abridged response ("...")
            if not isinstance(body, dict):
                continue
            if set(body) == {"messages"}:
                found.append((f"{doc}:{line}", "/v1/messages/batch", body))
            elif body.keys() <= message_fields and body.keys() & {"to", "cc", "bcc"}:
                found.append((f"{doc}:{line}", "/v1/messages", body))
        elif lang in ("sh", "bash", "console"):
            for curl in _CURL.finditer(block):
                found.append((f"{doc}:{line}", curl.group(1), json.loads(curl.group(2))))
    return found


BODIES = [b for doc in DOCS for b in _request_bodies(doc)]


def _validator(path: str) -> Draft202012Validator:
    """The published schema of the JSON body of POST ``path``, its $refs resolved within
    the document."""
    resource = Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:postline:openapi", resource)
    body = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"]
    return Draft202012Validator({"$ref": "urn:postline:openapi" + ref}, registry=registry)


def _readme_message() -> dict[str, Any]:
    (body,) = [b for where, path, b in BODIES if where.startswith("README") and "to" in b]
    assert isinstance(body, dict)
    return body


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


@pytest.fixture
async def key(node: Node) -> str:
    return await add_tenant(node)


def test_the_docs_show_requests() -> None:
    where = {w.split(":")[0] for w, _, _ in BODIES}
    assert where == set(DOCS), BODIES
    # The README's first request names its sender and recipient as strings.
    message = _readme_message()
    assert isinstance(message["from"], str) and isinstance(message["to"][0], str)


@pytest.mark.parametrize(("where", "path", "body"), BODIES, ids=[b[0] for b in BODIES])
async def test_documented_request_fits_the_schema_and_is_accepted(
    where: str, path: str, body: Any, node: Node, key: str
) -> None:
    errors = [e.message for e in _validator(path).iter_errors(body)]
    assert errors == [], f"{where}: the published schema refuses it"
    batch = {"messages": [body]}
    if path == "/v1/messages":
        assert list(_validator("/v1/messages/batch").iter_errors(batch)) == []
    async with api_client(node, key) as client:
        r = await client.post(path, json=body)
        assert r.status_code == 202, f"{where}: {r.text}"
        if path == "/v1/messages":
            r = await client.post("/v1/messages/batch", json=batch)
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


def test_address_schema_matches_what_the_api_accepts() -> None:
    validate = _validator("/v1/messages")
    for good in (
        {"from": "a@shop.example", "to": "b@example.com", "text": "t"},
        {"from": {"email": "a@shop.example"}, "to": {"email": "b@example.com"}, "text": "t"},
        {"from": "A <a@shop.example>", "to": ["b@example.com", {"email": "c@example.com"}]},
        {"to": ["b@example.com"], "reply_to": "r@shop.example", "cc": [], "bcc": "d@x.example"},
    ):
        assert list(validate.iter_errors(good)) == [], good
    for bad in (
        {"to": 7},
        {"to": [["b@example.com"]]},
        {"from": {"email": "a@shop.example", "nickname": "A"}, "to": ["b@example.com"]},
    ):
        assert list(validate.iter_errors(bad)) != [], bad


def test_security_schemes_cover_the_authenticated_routes() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["AdminToken"] == {**schemes["AdminToken"], "type": "http", "scheme": "bearer"}
    assert "security" not in DOCUMENT  # no global requirement: the probes are public
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            if path.startswith("/v1/"):
                # One API key, with the scope the route needs (test_api_scopes checks them).
                (requirement,) = operation.get("security", [{}])
                assert list(requirement) == ["ApiKey"], where
                assert len(requirement["ApiKey"]) == 1, where
                assert "401" in operation["responses"], where
            elif path.startswith("/admin/v1/"):
                assert operation.get("security") == [{"AdminToken": []}], where
            else:
                assert path in PUBLIC, f"{where}: public or secured?"
                assert "security" not in operation, where


def test_every_error_response_is_a_problem_document() -> None:
    seen = 0
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    seen += 1
                    content = dict(response["content"])
                    if path.startswith("/u/"):
                        # The unsubscribe page answers a browser with a page.
                        content.pop("text/html", None)
                    assert content == {
                        PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
                    }, f"{method.upper()} {path} {status}"
    assert seen > 50
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]


async def test_errors_are_sent_as_documented(node: Node, key: str) -> None:
    async with api_client(node) as anonymous, api_client(node, key) as client:
        no_key = await anonymous.post("/v1/messages", json=_readme_message())
        invalid = await client.post("/v1/messages", json={"to": 7})
    for r, status in ((no_key, 401), (invalid, 422)):
        assert r.status_code == status
        assert r.headers["content-type"] == PROBLEM
        assert r.json().keys() >= set(DOCUMENT["components"]["schemas"]["ProblemOut"]["required"])


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00 not UTF-8"], ids=["syntax", "bytes"])
async def test_a_body_that_is_not_json_gets_the_documented_400(
    node: Node, key: str, body: bytes
) -> None:
    """Whether the route reads its body through a model (webhooks) or itself, a body
    that is not JSON (or not even UTF-8 text) gets the same documented problem."""
    async with api_client(node, key) as client:
        for method, path in (("POST", "/v1/webhooks"), ("POST", "/v1/messages")):
            r = await client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, r.text
            assert r.headers["content-type"] == PROBLEM
            problem = r.json()
            assert problem["type"] == "urn:postline:problem:malformed-json", problem
            assert "JSON" in problem["fix"]
            documented = DOCUMENT["paths"][path][method.lower()]["responses"]
            assert "400" in documented, path


def _generator() -> str:
    for found in (
        os.environ.get("OPENAPI_PYTHON_CLIENT"),
        str(ROOT / ".venv-tools/bin/openapi-python-client"),
        shutil.which("openapi-python-client"),
    ):
        if found and Path(found).is_file():
            return found
    reason = "openapi-python-client is missing: `make tools` installs it in .venv-tools/"
    if os.environ.get("CI"):
        pytest.fail(reason + " (.ci/run does, through make test)")
    pytest.skip(reason)


async def test_generated_client_sends_the_readme_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node: Node, key: str
) -> None:
    generator = _generator()
    pytest.importorskip("attrs", reason="the generated client needs attrs")
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    package = "postline_generated_client"
    document, output = ROOT / "docs/reference/openapi.json", tmp_path / package
    options = ["--meta", "none", "--config", str(config), "--output-path", str(output)]
    subprocess.run(
        [generator, "generate", "--path", str(document), *options],
        check=True,
        capture_output=True,
        timeout=120,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith(package)]:
        monkeypatch.delitem(sys.modules, name)
    generated = importlib.import_module(package)
    send = importlib.import_module(f"{package}.api.messages.send_message_v1_messages_post")
    models = importlib.import_module(f"{package}.models")

    body = models.MessageIn.from_dict(_readme_message())  # raised ValueError before
    assert body.to_dict() == _readme_message()
    host, port = node.api_address or ("", 0)
    url = f"http://{host}:{port}"
    async with generated.AuthenticatedClient(base_url=url, token=key) as client:
        accepted = await send.asyncio_detailed(client=client, body=body)
    assert accepted.status_code == 202, accepted.content
    assert accepted.parsed.recipients[0].address == "ann@example.com"
    async with generated.Client(base_url=url) as anonymous:
        refused = await send.asyncio_detailed(client=anonymous, body=body)
    assert refused.status_code == 401
    assert refused.parsed.detail == "No API key was given."
