"""Image reading and writing.

Arrays are ``(H, W)`` for gray and ``(H, W, 3)`` for RGB, float32 in [0, 1]. Reading handles
PNG, JPEG, TIFF and BMP in 8 or 16 bits, the modes L / LA / RGB / RGBA / P / I;16, and EXIF
orientation; alpha is dropped (fusion sources are opaque). Writing is atomic (temporary file +
rename) and keeps 16 bits where the format allows and the caller asks.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmaif.errors import InputError

READ_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
WRITE_EXTS = {".png": 16, ".tif": 16, ".tiff": 16, ".jpg": 8, ".jpeg": 8, ".bmp": 8}
DEFAULT_MAX_PIXELS = 200_000_000  # ~14k x 14k; larger headers are treated as decompression bombs
# peak memory of one `mmaif fuse` per pixel of a gray + colour pair, rounded up (model or GFF;
# measured by benchmarks/big_images.py, table in docs/evaluation.md)
BYTES_PER_PIXEL = 64


def fitting_max_pixels() -> int:
    """The largest image (pixels) whose fusion fits in half this machine's physical memory at
    ``BYTES_PER_PIXEL`` (``DEFAULT_MAX_PIXELS`` where the memory cannot be read), at most
    ``DEFAULT_MAX_PIXELS``: the CLI's default ``--max-pixels``."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return DEFAULT_MAX_PIXELS
    return max(1, min(DEFAULT_MAX_PIXELS, mem // 2 // BYTES_PER_PIXEL))


@dataclass
class Picture:
    """An image read from disk: ``data`` (H, W) or (H, W, 3) float32 in [0, 1], and its bit
    depth (8 or 16) so that outputs can keep it."""

    data: np.ndarray
    bits: int = 8
    path: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the way people write image sizes."""
        return self.data.shape[1], self.data.shape[0]

    @property
    def is_gray(self) -> bool:
        return self.data.ndim == 2



# Rec. 601 luma with MATLAB rgb2gray's exact weights (VIFB's metrics use them)
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def to_gray(x: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) RGB -> (..., H, W) luma; a gray (H, W) image passes through. The one
    RGB -> gray conversion of the package."""
    return x if x.ndim == 2 else x @ RGB2GRAY


def to_rgb(x: np.ndarray) -> np.ndarray:
    """(H, W) gray -> (H, W, 3) by replication; RGB passes through. The one gray -> RGB."""
    return np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x


def _check_readable(path: Path) -> None:
    try:
        path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make it readable") from None
    except OSError as exc:  # a symlink loop, a name too long, ...
        raise InputError(f"{path}: cannot open ({exc.strerror or exc}); check the path") \
            from None
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes); re-export or re-download the image")


def _png_is_16bit_colour(path: Path) -> bool:
    """PNG header: bit depth 16 and colour type RGB (2) or RGBA (6); Pillow would drop to 8."""
    with open(path, "rb") as fh:
        head = fh.read(29)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    return head[24] == 16 and head[25] in (2, 6)


def _is_16bit_colour(path: Path, im: Image.Image) -> bool:
    """16-bit RGB(A) files, which Pillow would reduce to 8 bits: decoded with OpenCV instead."""
    if path.suffix.lower() == ".png":
        return _png_is_16bit_colour(path)
    bps = getattr(im, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    return isinstance(bps, tuple) and len(bps) >= 3 and max(bps) >= 16


def _read_with_opencv(path: Path) -> np.ndarray:
    import cv2

    raw = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{path}: cannot decode this image; is the file complete?")
    if arr.ndim == 3:
        arr = arr[..., :3][..., ::-1]  # BGR(A) -> RGB
    return np.ascontiguousarray(arr)


def unit_pixels(arr: np.ndarray, path: str | Path) -> tuple[np.ndarray, int]:
    """Pixels -> float32 in [0, 1] and a bit depth, by a stated rule: 8-bit / 16-bit unsigned by
    their full range; other integers (TIFF 32-bit) taken as 16-bit when they lie in 0..65535;
    float images must already be in [0, 1] (they are used as they are). Anything else — NaN
    or infinite values, negative integers, floats outside [0, 1], integers above 65535 — has
    no mapping that is sure to be right, and is refused rather than clipped or wrapped.
    ``path`` names the image in the messages (a file, or e.g. "an input array")."""
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}; give 8- or 16-bit "
                         "unsigned integers, or floats in [0, 1]")
    if arr.dtype == bool:
        return arr.astype(np.float32), 8
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise InputError(f"{path}: integer pixels in [{lo}, {hi}]; mmaif reads integer images "
                             "as 0..255 (8-bit) or 0..65535 (16-bit): convert it to an unsigned "
                             "8- or 16-bit image")
        return arr.astype(np.float32) / 65535.0, 16
    data = arr.astype(np.float32)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {bad} pixel(s) are NaN or infinite; repair or mask them "
                         "before fusing")
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"{path}: float pixels in [{lo:.4g}, {hi:.4g}]; mmaif reads float "
                         "images as [0, 1]: rescale it (e.g. divide by its white level)")
    return np.clip(data, 0.0, 1.0), 16


def _png_rows_complete(path: Path) -> bool:
    """A PNG's image data holds every row its header declares (Pillow reads missing rows as
    black). Non-PNG files, and PNGs this check cannot parse, pass (the decoder judges them)."""
    import zlib

    with open(path, "rb") as fh:
        data = fh.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return True
    pos, idat, head = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    if head is None:
        return True
    w, h, depth, colour, _, _, interlace = head
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None:
        return True
    def row_bytes(width: int) -> int:
        return (width * channels * depth + 7) // 8

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        need = 0
        for x0, y0, dx, dy in passes:
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw and ph:
                need += ph * (1 + row_bytes(pw))
    else:
        need = h * (1 + row_bytes(w))
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), need)
    except zlib.error:
        return False
    return len(raw) >= need


def image_size(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
               ) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it; refuses a size over
    ``max_pixels``, so that two inputs can be checked before either is decoded."""
    path = Path(path)
    _check_readable(path)
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below, ourselves
    try:
        with Image.open(path) as im:
            size = im.size
            try:  # EXIF orientations 5-8 swap width and height (read_image applies them)
                if im.format in ("JPEG", "TIFF") and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    size = size[::-1]
            except (OSError, SyntaxError, ValueError, struct.error):
                pass
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image; supported: {', '.join(READ_EXTS)}") \
            from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable") from None
    except (OSError, SyntaxError, ValueError, struct.error):
        return (0, 0)  # let read_image give its precise message
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if size[0] * size[1] > max_pixels:
        raise InputError(f"{path}: {size[0]}x{size[1]} is more than {max_pixels} pixels "
                         "(possible decompression bomb); raise the limit with --max-pixels if "
                         "the image is genuine")
    return size


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read an image file into a :class:`Picture`; raise :class:`InputError` on any problem."""
    path = Path(path)
    _check_readable(path)
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if _is_16bit_colour(path, im):
                    arr = _read_with_opencv(path)
                else:
                    arr = _pil_to_array(ImageOps.exif_transpose(im), path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: more than {max_pixels} pixels (possible decompression bomb); "
                         "raise the limit with --max-pixels if the image is genuine") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image; supported: {', '.join(READ_EXTS)}") \
            from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise InputError(f"{path}: cannot decode ({exc}); the file may be truncated or corrupt") \
            from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if not _png_rows_complete(path):
        raise InputError(f"{path}: the PNG's image data ends before its last row (truncated); "
                         "re-export or re-download the image")
    data, bits = unit_pixels(arr, path)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    return Picture(np.ascontiguousarray(data), bits, str(path))


def _pil_to_array(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        arr = np.asarray(im)[..., :3]
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0]
        return arr
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode == "LA":
        return np.asarray(im)[..., 0]
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        arr = np.asarray(im)  # 32-bit signed: unit_pixels refuses what is not 0..65535
        return arr.astype(np.uint16) if arr.size and arr.min() >= 0 and arr.max() <= 65535 \
            else arr
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        arr = np.asarray(im.convert("RGB") if mode not in ("RGB", "RGBA") else im)
        return arr[..., :3]
    try:  # unusual TIFF layouts (e.g. 16-bit RGB) that Pillow cannot represent
        return _read_with_opencv(path)
    except InputError:
        raise InputError(f"{path}: unsupported image mode {mode!r}") from None


def check_output_path(out: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                      exts: tuple[str, ...] = tuple(WRITE_EXTS)) -> Path:
    """Validate an output file path before any work: known extension, existing folder, not one
    of the inputs."""
    out = Path(out)
    ext = out.suffix.lower()
    if out.is_dir():
        raise InputError(f"{out}: is a folder; a pair is fused into one file (e.g. "
                         f"{out / 'fused.png'}); a dataset folder as input writes a folder")
    if ext not in exts:
        raise InputError(f"{out}: unknown output format {ext or '(none)'}; "
                         f"use one of {', '.join(sorted(exts))}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: folder {parent} does not exist; create it first")
    check_writable_folder(parent)
    for p in inputs:
        try:
            same = out.exists() and Path(p).exists() and os.path.samefile(out, p)
            same = same or Path(p).resolve() == out.resolve()
        except (OSError, RuntimeError):  # an input that cannot be resolved (a symlink loop)
            _check_readable(Path(p))     # says so in one line
            continue
        if same:
            raise InputError(f"{out}: output would overwrite an input; choose another path")
    return out


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """An existing folder this process can create files in (tested by creating one: access
    bits do not tell for root or network file systems)."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mmaif-write-test.", dir=folder)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write here ({exc.strerror or exc}); choose a "
                         "folder you can write to") from None
    os.close(fd)
    os.unlink(tmp)
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename. The file
    gets the permissions a plain ``open()`` would give (0666 minus the umask), not mkstemp's
    private 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(data: np.ndarray, ext: str, bits: int = 8, quality: int = 95) -> bytes:
    """Encode a [0, 1] float image to bytes of format ``ext`` ('.png', '.jpg', ...)."""
    import cv2

    ext = ext.lower()
    if ext not in WRITE_EXTS:
        raise InputError(f"unknown output format {ext}; use one of {', '.join(sorted(WRITE_EXTS))}")
    bits = 16 if bits == 16 and WRITE_EXTS[ext] == 16 else 8
    arr = np.clip(np.nan_to_num(np.asarray(data, np.float32)), 0.0, 1.0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    scale, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    q = np.rint(arr * scale).astype(dtype)
    if q.ndim == 3:
        q = q[..., ::-1]  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(q), params)
    if not ok:
        raise InputError(f"could not encode a {q.shape} image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, data: np.ndarray, bits: int = 8) -> Path:
    """Atomically write a [0, 1] float image; 16-bit when ``bits`` is 16 and the format allows."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(data, path.suffix, bits))
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in READ_EXTS and not p.name.startswith("."))


def read_pair(path_a: str | os.PathLike, path_b: str | os.PathLike, *, resize: bool = False,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Picture, Picture]:
    """Read two sources: :func:`read_stack` of ``[path_a, path_b]``."""
    a, b = read_stack([path_a, path_b], resize=resize, max_pixels=max_pixels)
    return a, b


def read_stack(paths, *, resize: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
               ) -> list[Picture]:
    """Read registered sources (a pair, an exposure bracket, a focus stack); sizes must match
    unless ``resize`` (then each is resized to the first's size). Every size is read from
    the headers first: a mismatch or an oversized image is refused before any is decoded."""
    paths = list(paths)

    def differ(p, q, sp, sq):
        return InputError(f"sizes differ: {p} is {sp[0]}x{sp[1]}, {q} is {sq[0]}x{sq[1]}; "
                          "register them, or pass --resize to resize "
                          + ("the second to the first" if len(paths) == 2 else
                             "the others to the first"))

    sizes = [image_size(p, max_pixels=max_pixels) for p in paths]
    for p, size in zip(paths[1:], sizes[1:], strict=True):
        if not resize and (0, 0) not in (sizes[0], size) and size != sizes[0]:
            raise differ(paths[0], p, sizes[0], size)
    pics = [read_image(p, max_pixels=max_pixels) for p in paths]
    for k, pic in enumerate(pics[1:], 1):
        if pic.size != pics[0].size:
            if not resize:
                raise differ(paths[0], paths[k], pics[0].size, pic.size)
            pics[k] = Picture(resize_to(pic.data, pics[0].size), pic.bits, pic.path)
    return pics


def resize_to(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height): area averaging when shrinking, bicubic when enlarging."""
    import cv2

    shrink = size[0] * size[1] < data.shape[0] * data.shape[1]
    out = cv2.resize(data, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def fit_within(shape, max_side: int | None) -> tuple[int, int] | None:
    """(width, height) that brings an image of ``shape`` to a long side of ``max_side``, or
    None when it already fits (or no limit is given)."""
    h, w = shape[:2]
    if not max_side or max(h, w) <= max_side:
        return None
    s = max_side / max(h, w)
    return max(1, round(w * s)), max(1, round(h * s))


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file holding a mapping (configs); one-line errors for the usual problems."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return data
