"""``mmaif serve``: a local web page and HTTP API for fusing a pair with the model or a
classical method. Starlette + uvicorn; binds 127.0.0.1 unless told otherwise.

API:

- ``GET /api/health`` -> ``{"status": "ok", "model": ..., "version": ...}``
- ``POST /api/fuse`` (multipart: ``a``, ``b`` image files; optional ``more`` (repeated: the
  further shots of an exposure bracket or focus stack, MEF / MFF, nine images in all at
  most), ``task`` = auto | vif | mef | mff, ``prompt`` ("auto": the detector's sentence),
  ``method`` = model | gff | mertens | laplacian) -> ``image/png`` at the inputs' size;
  headers ``X-Mmaif-Task``, ``X-Mmaif-Prompt``, ``X-Mmaif-Seconds``, ``X-Mmaif-Inputs``.
- ``POST /api/detect`` (``a``, ``b``, optional ``task``) -> ``{"task", "a": [{"type",
  "severity", "p"}, ...], "b": [...], "prompt"}`` (as ``mmaif detect --json``); 404 when the
  model has no detector.
  Errors: 4xx with ``{"error": "one line"}`` (the CLI's messages); 5xx never carries a
  traceback (it goes to the server log).
- ``GET /api/demo`` -> the built-in demo pairs; ``GET /api/demo/{name}/{a|b}.png``.

Requests are fused one at a time (a lock; besides the one being fused at most ``queue``
wait, more get 503), so memory stays bounded whatever the number of clients. The prompt in
``X-Mmaif-Prompt`` is percent-encoded UTF-8 (``decodeURIComponent``), at most 512 characters
(``X-Mmaif-Prompt-Truncated: 1`` when cut); prompts over 4096 characters are refused (413).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from mmaif import __version__
from mmaif.data.pairs import MAX_SHOTS
from mmaif.errors import InputError

log = logging.getLogger("mmaif.serve")
METHODS = ("model", "gff", "mertens", "laplacian")

TASKS = ("auto", "vif", "mef", "mff")


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def guess_task(*images: np.ndarray) -> str:
    """The task of a pair or stack from its pixels (:func:`mmaif.data.pairs.guess_stack_task`:
    for a pair, :func:`~mmaif.data.pairs.guess_task`)."""
    from mmaif.data.pairs import guess_stack_task

    return guess_stack_task(list(images))[0]


def _decode(data: bytes, field: str, filename: str, max_pixels: int):
    """Uploaded bytes -> Picture, with the same checks and messages as the CLI's file reader."""
    from mmaif.data.images import read_image

    if not data:
        raise HTTPError(400, f"{field}: empty upload; choose an image file")
    suffix = Path(filename or "").suffix.lower()[:8] or ".img"
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="mmaif-upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return read_image(tmp, max_pixels=max_pixels)
    except InputError as exc:
        status = 413 if "pixels" in str(exc) else 400
        raise HTTPError(status, str(exc).replace(tmp, f"{field} ({filename or 'upload'})")) \
            from None
    finally:
        os.unlink(tmp)


class Fuser:
    """Loads the model once (lazily, on the first model request) and fuses pairs."""

    def __init__(self, model: str | None = None, max_pixels: int = 16_000_000):
        self.model, self.max_pixels = model, max_pixels
        self._pipe = None

    @property
    def pipe(self):
        if self._pipe is None:
            from mmaif.inference.pipeline import FusionPipeline

            self._pipe = FusionPipeline.from_pretrained(self.model)
        return self._pipe

    def fuse(self, files: dict[str, tuple[bytes, str]], task: str, prompt: str | None,
             method: str) -> tuple[bytes, dict[str, str]]:
        """``files``: a, b and, for a stack, more_0, more_1, ... (in order)."""
        from mmaif.classical.fusion import fuse_stack
        from mmaif.data.images import encode_image
        from mmaif.inference.pipeline import default_prompt

        if method not in METHODS:
            raise HTTPError(400, f"method {method!r}: use one of {', '.join(METHODS)}")
        pics, task = self._images(files, task)
        data = [p.data for p in pics]
        t0 = time.perf_counter()
        if method == "model":
            prompt = default_prompt(task) if not (prompt or "").strip() else prompt.strip()
            if prompt == "auto" and len(data) == 2:  # the detector's sentence, in the header
                prompt = self._detect(*pics, task)[2]
            fused = self.pipe(data, prompt=prompt, task=task, output="numpy") \
                if len(data) > 2 else self.pipe(*data, prompt=prompt, task=task, output="numpy")
        else:
            prompt = ""
            fused = fuse_stack(data, method)
        seconds = time.perf_counter() - t0
        log.info("fused task=%s method=%s inputs=%d %.3fs prompt=%r", task, method, len(data),
                 seconds, prompt)
        headers = {"X-Mmaif-Task": task, "X-Mmaif-Method": method,
                   "X-Mmaif-Seconds": f"{seconds:.3f}", "X-Mmaif-Inputs": str(len(data)),
                   **prompt_headers(prompt)}
        return encode_image(fused, ".png"), headers

    def detect(self, files: dict[str, tuple[bytes, str]], task: str) -> dict:
        """What the model's detector finds in each input, and the sentence it would fuse with
        (as ``mmaif detect --json``)."""
        from mmaif.model.detector import detections_json

        return detections_json(*self._detect(*self._pair(files, task)))

    def _pair(self, files: dict[str, tuple[bytes, str]], task: str):
        """(a, b, task) of a two-image upload (:meth:`_images`)."""
        pics, task = self._images(files, task)
        if len(pics) > 2:
            raise HTTPError(400, "the detector reads a pair; send a and b only")
        return (*pics, task)

    def _images(self, files: dict[str, tuple[bytes, str]], task: str):
        """([a, b, more...], task) of an upload: the task checked (``auto`` guessed from the
        darkest and brightest image), every image decoded within the pixel limit and of one
        size; three or more only for MEF / MFF."""
        if task not in TASKS:
            raise HTTPError(400, f"task {task!r}: use one of {', '.join(TASKS)}")
        if len(files) > 2 and task == "vif":
            raise HTTPError(400, f"{len(files)} images sent: VIF fuses two (infrared, visible); "
                            "stacks of three or more are MEF or MFF")
        pics = [_decode(data, k, name, self.max_pixels) for k, (data, name) in files.items()]
        names = list(files)
        for k, p in zip(names[1:], pics[1:], strict=True):
            if p.size != pics[0].size:
                raise HTTPError(400, f"image sizes differ: a is {pics[0].size[0]}x"
                                f"{pics[0].size[1]}, {k} is {p.size[0]}x{p.size[1]}; upload "
                                "registered images of one size")
        return pics, guess_task(*(p.data for p in pics)) if task == "auto" else task

    def _detect(self, a, b, task: str):
        """(task, detections, prompt) of a decoded pair."""
        if self.pipe.detector is None:
            raise HTTPError(404, "this model has no degradation detector; write the "
                            "instruction yourself")
        return self.pipe.detect(a.data, b.data, task)


PROMPT_HEADER_CHARS = 512  # the X-Mmaif-Prompt header carries at most this many characters
MAX_PROMPT_CHARS = 4096    # longer prompts are refused (the text encoder reads 256 tokens)


def prompt_headers(prompt: str) -> dict[str, str]:
    """The prompt used, for the response headers: percent-encoded UTF-8 (so newlines, control
    and non-ASCII characters cannot break or forge headers), its first PROMPT_HEADER_CHARS
    characters; ``X-Mmaif-Prompt-Truncated: 1`` when it was cut."""
    from urllib.parse import quote

    out = {"X-Mmaif-Prompt": quote(prompt[:PROMPT_HEADER_CHARS], safe=",.;:!?'()")}
    if len(prompt) > PROMPT_HEADER_CHARS:
        out["X-Mmaif-Prompt-Truncated"] = "1"
    return out


def check_filename(field: str, name: str | None) -> None:
    """Upload file names reach no path, but a NUL or control character is a malformed
    request: refused with 400."""
    if name and any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise HTTPError(400, f"{field}: the file name contains a NUL or control character; "
                        "rename the file")


def page() -> str:
    return resources.files("mmaif.inference").joinpath("web/index.html").read_text("utf-8")


class _Service:
    """What the handlers share (``app.state.service``): the fuser, the one-at-a-time lock,
    how many requests are in, and the limits."""

    def __init__(self, fuser: Fuser, model: str | None, max_upload_mb: float, queue: int):
        self.fuser, self.model, self.queue = fuser, model, queue
        self.max_upload_mb, self.limit = max_upload_mb, int(max_upload_mb * 1024 * 1024)
        self.lock = asyncio.Lock()
        self.waiting = 0


def _error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


async def _index(request):
    from starlette.responses import HTMLResponse

    return HTMLResponse(page())


async def _health(request):
    from starlette.responses import JSONResponse

    sv: _Service = request.app.state.service
    return JSONResponse({"status": "ok", "model": sv.model or "default", "version": __version__,
                         "busy": sv.lock.locked(), "waiting": sv.waiting})


async def _read_form(request, sv: _Service):
    """(files {a, b, more_0, ...: (bytes, name)}, task, prompt or None, method), or an error
    response."""
    try:
        async with request.form(max_files=MAX_SHOTS, max_fields=8,
                                max_part_size=MAX_PROMPT_CHARS * 4) as form:
            files = {}
            other = sorted({k for k, v in form.multi_items()
                            if not isinstance(v, str) and k not in ("a", "b", "more")})
            if other:
                return _error(400, f"unknown file field {other[0]!r}: send the images as a, b "
                              "and, for a stack's further shots, more (repeated)")
            items = [("a", form.get("a")), ("b", form.get("b"))] + \
                [(f"more_{k}", it) for k, it in enumerate(form.getlist("more"))]
            for key, item in items:
                if item is None or isinstance(item, str):
                    return _error(400, f"missing image file field {key!r} (multipart "
                                  "fields: a, b, and optional more, task, prompt, method)")
                check_filename(key, item.filename)
                data = await item.read()
                if len(data) > sv.limit:
                    return _error(413, f"{key}: over the {sv.max_upload_mb:g} MB upload limit")
                files[key] = (data, item.filename or key)
            task = str(form.get("task") or "auto").lower()
            prompt = form.get("prompt")
            method = str(form.get("method") or "model").lower()
    except HTTPError as exc:
        return _error(exc.status, exc.message)
    except Exception as exc:  # malformed multipart bodies
        text = str(exc).lower()
        if "maximum number of files" in text:
            return _error(400, f"too many file fields: send two images (a, b), or up to "
                          f"{MAX_SHOTS} shots of a stack (a, b, more, more, ...)")
        if "part exceeded maximum size" in text or "max_part_size" in text:
            return _error(413, f"a text field is over {MAX_PROMPT_CHARS * 4} bytes; prompts "
                          f"may have at most {MAX_PROMPT_CHARS} characters")
        return _error(400, f"could not read the form ({type(exc).__name__}); send "
                      "multipart/form-data with fields a and b")
    if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_CHARS:
        return _error(413, f"prompt of {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    return files, task, prompt if isinstance(prompt, str) else None, method


async def _fuse(request):
    from starlette.responses import Response

    sv: _Service = request.app.state.service
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > sv.limit:
        return _error(413, f"upload of {int(size) / 2**20:.1f} MB is over the "
                      f"{sv.max_upload_mb:g} MB limit; send smaller images")
    form = await _read_form(request, sv)
    if not isinstance(form, tuple):
        return form
    result, error = await _one_at_a_time(sv, sv.fuser.fuse, *form, what="fusing")
    if error is not None:
        return error
    png, headers = result
    return Response(png, media_type="image/png", headers=headers)


async def _one_at_a_time(sv: _Service, fn, *args, what: str):
    """(``fn(*args)`` run in a worker thread under the service's lock, None), or (None, an
    error response): 503 when ``queue`` requests already wait, the CLI's one-line messages
    for bad input, a 500 without a traceback (logged) for anything else."""
    from starlette.concurrency import run_in_threadpool

    if sv.waiting > sv.queue:  # one being served + `queue` waiting
        return None, _error(503, f"busy: {sv.waiting - 1} requests are waiting; try again "
                            "shortly")
    sv.waiting += 1
    try:
        async with sv.lock:  # one at a time: bounded memory
            return await run_in_threadpool(fn, *args), None
    except HTTPError as exc:
        return None, _error(exc.status, exc.message)
    except InputError as exc:
        return None, _error(400, str(exc))
    except Exception:
        log.exception("%s failed", what)
        return None, _error(500, f"internal error while {what}; the server log has the "
                            "details")
    finally:
        sv.waiting -= 1


async def _detect(request):
    from starlette.responses import JSONResponse

    sv: _Service = request.app.state.service
    form = await _read_form(request, sv)
    if not isinstance(form, tuple):
        return form
    files, task, _, _ = form
    found, error = await _one_at_a_time(sv, sv.fuser.detect, files, task, what="detecting")
    if error is not None:
        return error
    return JSONResponse(found)


async def _demo_list(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    from mmaif.data.stacks import demo_pairs

    pairs = await run_in_threadpool(_demo_cache, demo_pairs)
    return JSONResponse([{"name": p.name, "task": p.task, "note": p.note} for p in pairs])


async def _demo_image(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    from mmaif.data.images import encode_image
    from mmaif.data.stacks import demo_pairs

    pairs = {p.name: p for p in await run_in_threadpool(_demo_cache, demo_pairs)}
    name, which = request.path_params["name"], request.path_params["which"]
    if name not in pairs or which not in ("a", "b"):
        return _error(404, f"no demo image {name}/{which}; see /api/demo")
    return Response(encode_image(getattr(pairs[name], which), ".png"), media_type="image/png")


async def _not_found(request, exc):
    return _error(exc.status_code, getattr(exc, "detail", "not found"))


async def _server_error(request, exc):
    log.error("unhandled error", exc_info=exc)
    return _error(500, "internal error; the server log has the details")


def create_app(model: str | None = None, max_upload_mb: float = 32.0,
               max_pixels: int = 16_000_000, queue: int = 8, fuser: Fuser | None = None):
    """The Starlette application (``uvicorn.run(create_app(), ...)``): the page, ``GET
    /api/health``, ``POST /api/fuse`` (one fusion at a time, ``queue`` more waiting), ``POST
    /api/detect`` (what the model's detector finds, as JSON), the demo pairs."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    routes = [Route("/", _index), Route("/api/health", _health),
              Route("/api/fuse", _fuse, methods=["POST"]),
              Route("/api/detect", _detect, methods=["POST"]),
              Route("/api/demo", _demo_list),
              Route("/api/demo/{name}/{which}.png", _demo_image)]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found,
                                                       500: _server_error})
    app.state.service = _Service(fuser or Fuser(model, max_pixels), model, max_upload_mb, queue)
    return app


_DEMO: list = []


def _demo_cache(make):
    if not _DEMO:
        _DEMO.extend(make())
    return _DEMO


def serve(host: str = "127.0.0.1", port: int = 7860, model: str | None = None,
          max_upload_mb: float = 32.0, max_pixels: int = 16_000_000) -> None:
    """Load the model, print the URL and serve until interrupted."""
    import socket
    import sys

    import uvicorn

    try:  # a clear one-line error instead of uvicorn's log when the port is taken
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                         "another --port or --host") from None
    fuser = Fuser(model, max_pixels)
    fuser.pipe  # noqa: B018  (load once, before the first request, so errors show at start)
    app = create_app(model, max_upload_mb, max_pixels, fuser=fuser)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    print(f"mmaif serve: http://{shown}:{port}/ (model: {model or 'the shipped default'}; "
          "Ctrl+C to stop)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
