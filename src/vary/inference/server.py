"""`vary serve`: the pipeline behind an HTTP API and a one-page web UI.

- `GET /` the web page (drop an image or PDF, read the text); `GET /health`; `GET /v1/models`.
- `POST /ocr` multipart `file` (image or PDF) [+ `pages`, `prompt`, `max_new_tokens`].
- `POST /chat` multipart `file` + `question` (Vary-base models).
- `POST /v1/chat/completions` OpenAI-style messages with the image as a `data:` URL part.

The model runs on one worker thread fed by a queue: requests wait without blocking the event
loop, and pages that arrive together (from concurrent requests or one PDF) share a batch.
Errors are one-line `{"detail": ...}` bodies: 413 for too much (bytes, pages), 415 for a file
that is neither image nor PDF, 422 for anything else malformed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import itertools
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vary.data.sample import IMAGE_TOKEN
from vary.inference.pipeline import (
    DEFAULT_OPTIONS,
    ChatUnsupported,
    Conversation,
    GenerationOptions,
    PageResult,
    VaryPipeline,
    conversation,
)
from vary.inference.sources import (
    InputError,
    PageInput,
    PageSelection,
    Rendering,
    UnsupportedInput,
    iter_bytes,
)


class RequestError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ServerLimits:
    max_upload_bytes: int = 20 * 2**20  # whole request body, uploads and base64 JSON alike
    max_pages: int = 16  # PDF pages per request
    batch_size: int = 8  # pages per generate call
    batch_window_s: float = 0.01  # how long a first page waits for company (a generate call is far longer)


DEFAULT_LIMITS = ServerLimits()


# -- the model worker ------------------------------------------------------------------------
@dataclass
class _Job:
    page: PageInput
    conversation: Conversation
    options: GenerationOptions
    future: asyncio.Future[PageResult]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class BatchingWorker:
    """One thread owns the model; jobs queued with the same options are batched together.

    A batch starts with the oldest job and takes the jobs that arrive within `window_s`:
    clients whose uploads are a few milliseconds apart then share a generate call.
    """

    def __init__(self, pipeline: VaryPipeline, batch_size: int, window_s: float = 0.0):
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.window_s = window_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="vary-model", daemon=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    async def submit(
        self, pages: Sequence[PageInput], conversations: Sequence[Conversation], options: GenerationOptions
    ) -> list[PageResult]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in pages]
        for page, conv, future in zip(pages, conversations, futures, strict=True):
            self._queue.put(_Job(page, conv, options, future, loop))
        return list(await asyncio.gather(*futures))

    def _serve(self) -> None:
        carry: Any = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.batch_size:
                try:
                    job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is _STOP or job.options != first.options:
                    carry = job
                    break
                batch.append(job)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        try:
            results = self.pipeline.run(
                [j.page for j in batch], [j.conversation for j in batch], batch[0].options
            )
        except Exception as err:  # one bad batch fails its requests, not the server
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.future, None, err)
            return
        for job, result in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, result, None)


def _settle(future: asyncio.Future, result: PageResult | None, error: BaseException | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# -- request size limit ----------------------------------------------------------------------
class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length or as it streams in.

    A body that turns out too large while the app reads it makes the app fail (FastAPI answers a
    400 for any error while parsing a form); that answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": f"request body over the {self.max_bytes} byte limit"}, 413)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        received = 0
        over = answered = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                over = True
                raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if over:  # the app's answer to the failed read: send the 413 instead
                if not answered:
                    answered = True
                    await too_large(scope, receive, send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not answered:
                await too_large(scope, receive, send)


# -- OpenAI-compatible schema ----------------------------------------------------------------
class ImageUrl(BaseModel):
    url: str


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatCompletionRequest(BaseModel):
    messages: list[ChatMessage]
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False


DATA_URL = re.compile(r"data:[\w/+.-]*(?:;[\w=.-]+)*;base64,(?P<data>.*)", re.DOTALL)


def decode_data_url(url: str) -> bytes:
    match = DATA_URL.fullmatch(url)
    if match is None:
        raise RequestError(422, "image_url must be a base64 data: URL (this server fetches nothing)")
    try:
        return base64.b64decode(match["data"], validate=True)
    except binascii.Error as err:
        raise RequestError(422, f"image_url: bad base64 ({err})") from err


def openai_conversation(messages: Sequence[ChatMessage]) -> tuple[bytes, Conversation]:
    """The one image (as bytes) and the LLaVA-style turns of an OpenAI message list.

    Vary's templates place the image in the first user turn, whichever message carried it.
    """
    image: bytes | None = None
    turns: Conversation = []
    for message in messages:
        if message.role == "system":
            raise RequestError(422, "system messages are not supported: Vary's templates have no system turn")
        parts = (
            [ContentPart(type="text", text=message.content)]
            if isinstance(message.content, str)
            else message.content
        )
        text = "\n".join(p.text for p in parts if p.type == "text" and p.text)
        urls = [p.image_url.url for p in parts if p.type == "image_url" and p.image_url is not None]
        if urls:
            if image is not None or len(urls) > 1 or message.role != "user":
                raise RequestError(422, "send exactly one image, in a user message")
            image = decode_data_url(urls[0])
        turns.append({"from": "human" if message.role == "user" else "gpt", "value": text})
    if image is None:
        raise RequestError(422, "no image: add an image_url content part with a data: URL")
    if not turns or turns[-1]["from"] != "human":
        raise RequestError(422, "the last message must be the user's")
    first = turns[0]["value"]
    turns[0] = {"from": "human", "value": f"{IMAGE_TOKEN}\n{first}" if first else IMAGE_TOKEN}
    return image, turns


def completion(result: PageResult, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": "length" if result.truncated else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.num_tokens,
            "total_tokens": result.prompt_tokens + result.num_tokens,
        },
    }


# -- the app ---------------------------------------------------------------------------------
def create_app(
    pipeline: VaryPipeline,
    limits: ServerLimits = DEFAULT_LIMITS,
    options: GenerationOptions = DEFAULT_OPTIONS,
) -> FastAPI:
    """The FastAPI app; `options` are the defaults, and `max_new_tokens` the most a request gets."""
    worker = BatchingWorker(pipeline, limits.batch_size, limits.batch_window_s)
    page_html = resources.files("vary.inference").joinpath("web/index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        worker.stop()

    app = FastAPI(title="Vary", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.detail}, err.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return JSONResponse({"detail": f"{where}: {first['msg']}"}, 422)

    def request_options(max_tokens: int | None, temperature: float | None = None) -> GenerationOptions:
        if max_tokens is not None and max_tokens < 1:
            raise RequestError(422, "max tokens must be at least 1")
        budget = min(max_tokens or options.max_new_tokens, options.max_new_tokens)
        temperature = options.temperature if temperature is None else temperature
        return dataclasses.replace(options, max_new_tokens=budget, temperature=temperature)

    async def read_upload(data: bytes, name: str, pages: str | None) -> list[PageInput]:
        try:
            selection = PageSelection.parse(pages)
        except ValueError as err:
            raise RequestError(422, str(err)) from err
        found = await asyncio.to_thread(
            _first_pages, data, name, pipeline.rendering, selection, limits.max_pages + 1
        )
        if len(found) > limits.max_pages:
            raise RequestError(
                413, f"{name}: more than {limits.max_pages} pages selected; choose some with pages=, e.g. 1-3"
            )
        return found

    def require_chat() -> None:
        try:
            pipeline.require_chat()
        except ChatUnsupported as err:
            raise RequestError(422, str(err)) from err

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page_html

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": pipeline.name,
            "template": pipeline.template,
            "device": str(pipeline.device),
            "input_size": pipeline.input_size,
            "line_height": pipeline.line_height,
            "queued_pages": worker.queued,
            "limits": dataclasses.asdict(limits),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": pipeline.name, "object": "model", "owned_by": "vary"}]}

    @app.post("/ocr")
    async def ocr(
        file: Annotated[UploadFile, File()],
        pages: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        max_new_tokens: Annotated[int | None, Form()] = None,
    ) -> dict[str, Any]:
        opts = request_options(max_new_tokens)
        name = file.filename or "upload"
        found = await read_upload(await file.read(), name, pages)
        results = await worker.submit(found, [conversation(prompt)] * len(found), opts)
        return {"model": pipeline.name, "source": name, "pages": [r.to_json() for r in results]}

    @app.post("/chat")
    async def chat(
        file: Annotated[UploadFile, File()],
        question: Annotated[str, Form()],
        max_new_tokens: Annotated[int | None, Form()] = None,
    ) -> dict[str, Any]:
        require_chat()
        opts = request_options(max_new_tokens)
        name = file.filename or "upload"
        found = await read_upload(await file.read(), name, "1")
        results = await worker.submit(found, [conversation(question)], opts)
        return {"model": pipeline.name, "source": name, "pages": [r.to_json() for r in results]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any]:
        if body.stream:
            raise RequestError(422, "stream=true is not supported; send stream=false")
        image, turns = openai_conversation(body.messages)
        if len(turns) > 1 or turns[0]["value"] != IMAGE_TOKEN:  # more than plain OCR
            require_chat()
        opts = request_options(body.max_completion_tokens or body.max_tokens, body.temperature)
        found = await read_upload(image, "image_url", "1")
        (result,) = await worker.submit(found, [turns], opts)
        return completion(result, pipeline.name)

    return app


def _first_pages(
    data: bytes, name: str, rendering: Rendering, pages: PageSelection, limit: int
) -> list[PageInput]:
    """Up to `limit` pages of an upload; 415 / 422 for what cannot be read."""
    try:
        return list(itertools.islice(iter_bytes(data, name, rendering, pages), limit))
    except UnsupportedInput as err:
        raise RequestError(415, f"{err}: upload a PNG, JPEG, WebP, TIFF, BMP or GIF image, or a PDF") from err
    except InputError as err:
        raise RequestError(422, str(err)) from err


def serve(
    pipeline: VaryPipeline,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits = DEFAULT_LIMITS,
    options: GenerationOptions = DEFAULT_OPTIONS,
) -> None:
    uvicorn.run(create_app(pipeline, limits, options), host=host, port=port, log_level="info")


@contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` on a free port in a background thread; yields the base URL (for tests, notebooks)."""
    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
