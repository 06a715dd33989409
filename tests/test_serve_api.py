"""`vary serve`: endpoints, limits and errors, the batching worker, concurrent clients."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

import test_infer_pipeline as support
from vary.inference import GenerationOptions, PageSelection, VaryPipeline
from vary.inference.pipeline import conversation
from vary.inference.server import BatchingWorker, ServerLimits, create_app, running_server
from vary.inference.sources import PageInput

one_thread = support.one_thread
LIMITS = ServerLimits(max_upload_bytes=300_000, max_pages=2, batch_size=4)
OPTIONS = GenerationOptions(max_new_tokens=6)


@pytest.fixture(scope="module")
def pipelines() -> dict[str, VaryPipeline]:
    return {kind: VaryPipeline.from_pretrained(support.saved_model(kind)) for kind in ("tiny", "base")}


@pytest.fixture(scope="module")
def base_client(pipelines):
    with TestClient(create_app(pipelines["base"], LIMITS, OPTIONS)) as client:
        yield client


@pytest.fixture(scope="module")
def tiny_client(pipelines):
    with TestClient(create_app(pipelines["tiny"], LIMITS, OPTIONS)) as client:
        yield client


def upload(name: str, data: bytes, mime: str = "application/octet-stream") -> dict:
    return {"file": (name, data, mime)}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_health_and_page(base_client):
    health = base_client.get("/health").json()
    assert (health["status"], health["model"], health["template"]) == ("ok", "base", "chatml")
    assert health["limits"]["max_pages"] == 2
    page = base_client.get("/")
    assert page.status_code == 200 and "Drop an image or a PDF" in page.text
    assert base_client.get("/v1/models").json()["data"][0]["id"] == "base"


def test_ocr_image_and_pdf_pages(base_client, pipelines, tmp_path):
    image = support.noise(4)
    response = base_client.post("/ocr", files=upload("scan.png", support.png_bytes(image), "image/png"))
    assert response.status_code == 200
    (page,) = response.json()["pages"]
    assert page["token_ids"] == pipelines["base"](image, options=OPTIONS).token_ids
    assert page["source"] == "scan.png" and page["page"] is None

    pdf = support.make_pdf(tmp_path / "doc.pdf", [21, 22, 23])
    response = base_client.post("/ocr", files=upload("doc.pdf", pdf.read_bytes()), data={"pages": "2,3"})
    pages = response.json()["pages"]
    assert [p["page"] for p in pages] == [2, 3]
    expected = pipelines["base"](pdf, pages=PageSelection.parse("2,3"), options=OPTIONS)
    assert [p["token_ids"] for p in pages] == [r.token_ids for r in expected]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"files": upload("notes.txt", b"plain words")}, 415, "not an image or PDF"),
        ({"files": upload("bad.pdf", b"%PDF-1.7 garbage")}, 422, "not a readable PDF"),
        ({"files": upload("bad.png", support.png_bytes(support.noise(1))[:200])}, 422, "damaged image"),
        ({"files": upload("big.bin", b"x" * 400_000)}, 413, "byte limit"),
        ({"files": upload("doc.pdf", b"PDF"), "data": {"pages": "x"}}, 422, "bad page selection"),
        ({"data": {"pages": "1"}}, 422, "file: Field required"),
        ({"files": upload("a.png", b"?"), "data": {"max_new_tokens": "0"}}, 422, "at least 1"),
    ],
)
def test_ocr_errors_are_one_line(base_client, request_kwargs, status, message):
    response = base_client.post("/ocr", **request_kwargs)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert isinstance(detail, str) and message in detail and "\n" not in detail


def test_too_many_pages_and_streamed_bodies(base_client, tmp_path):
    pdf = support.make_pdf(tmp_path / "doc.pdf", [1, 2, 3])
    response = base_client.post("/ocr", files=upload("doc.pdf", pdf.read_bytes()))
    assert response.status_code == 413 and "more than 2 pages" in response.json()["detail"]

    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    body = head + b"y" * 400_000 + b"\r\n--b--\r\n"

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield from (body[i : i + 10_000] for i in range(0, len(body), 10_000))

    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = base_client.post("/ocr", content=chunks(), headers=headers)
    assert response.status_code == 413


def test_chat_endpoints(base_client, tiny_client, pipelines):
    image = support.noise(5)
    files = upload("a.png", support.png_bytes(image), "image/png")
    answer = pipelines["base"].chat(image, "What is it?", OPTIONS)
    response = base_client.post("/chat", files=files, data={"question": "What is it?"})
    assert response.json()["pages"][0]["token_ids"] == answer.token_ids
    response = tiny_client.post("/chat", files=files, data={"question": "What is it?"})
    assert response.status_code == 422 and "Vary-base" in response.json()["detail"]


def openai_body(text: str | None, image: bytes | None, **extra) -> dict:
    parts = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(image)}}] if image else []
    return {"model": "any", "messages": [{"role": "user", "content": parts}], **extra}


def test_openai_chat_completions(base_client, tiny_client, pipelines):
    image = support.noise(6)
    png = support.png_bytes(image)
    response = base_client.post("/v1/chat/completions", json=openai_body("What is it?", png, max_tokens=4))
    body = response.json()
    expected = pipelines["base"].chat(image, "What is it?", GenerationOptions(max_new_tokens=4))
    assert body["object"] == "chat.completion" and body["model"] == "base"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected.text}
    assert body["choices"][0]["finish_reason"] == ("length" if expected.truncated else "stop")
    assert body["usage"]["completion_tokens"] == expected.num_tokens
    assert body["usage"]["total_tokens"] == expected.prompt_tokens + expected.num_tokens

    ocr = tiny_client.post("/v1/chat/completions", json=openai_body(None, png))  # image only: OCR
    assert ocr.json()["choices"][0]["message"]["content"] == pipelines["tiny"](image, options=OPTIONS).text

    remote = openai_body("hi", None)
    remote["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "https://x/y.png"}})
    for client, body, message in [
        (tiny_client, openai_body("What is it?", png), "Vary-base"),
        (base_client, openai_body("What is it?", None), "no image"),
        (base_client, remote, "fetches nothing"),
        (base_client, openai_body("hi", png, stream=True), "stream"),
        (base_client, {"messages": [{"role": "system", "content": "be nice"}]}, "system messages"),
        (base_client, {"messages": "hello"}, "messages"),
    ]:
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_worker_batches_queued_pages(pipelines):
    """Pages queued together (by concurrent requests) share one generate call."""
    worker = BatchingWorker(pipelines["tiny"], batch_size=3)
    pages = [PageInput(support.noise(seed), f"p{seed}") for seed in range(5)]

    async def submit_then_start():
        requests = [worker.submit([page], [conversation()], OPTIONS) for page in pages]
        tasks = [asyncio.ensure_future(r) for r in requests]
        await asyncio.sleep(0)  # every request is queued before the model thread starts
        worker.start()
        return [result for results in await asyncio.gather(*tasks) for result in results]

    try:
        results = asyncio.run(submit_then_start())
    finally:
        worker.stop()
    assert [r.batch_size for r in results] == [3, 3, 3, 2, 2]
    assert [r.token_ids for r in results] == [r.token_ids for r in pipelines["tiny"](
        [p.image for p in pages], options=OPTIONS
    )]  # fmt: skip


def test_concurrent_clients_on_a_real_server(pipelines):
    images = [support.noise(seed) for seed in range(6)]
    expected = [r.token_ids for r in pipelines["tiny"](images, options=OPTIONS)]
    with running_server(create_app(pipelines["tiny"], LIMITS, OPTIONS)) as url:

        def read(image):
            files = upload("page.png", support.png_bytes(image), "image/png")
            response = httpx.post(f"{url}/ocr", files=files, timeout=60)
            response.raise_for_status()
            return response.json()["pages"][0]["token_ids"]

        with ThreadPoolExecutor(max_workers=6) as pool:
            pending = [pool.submit(read, image) for image in images]
            assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"  # the loop is free
            assert [f.result(timeout=60) for f in pending] == expected
