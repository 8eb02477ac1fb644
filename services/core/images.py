"""Safe image decoding: size limits, EXIF orientation, odd modes, reduced-size JPEG decoding, thumbnails."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from services.core.errors import ImageError

DEFAULT_MAX_PIXELS = 80_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # files read as photos
WRITABLE_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # formats written back in their own format
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}


def _open(data: bytes, *, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        # Pillow only *warns* between its own limit and twice it; the size check below applies the
        # configured limit (which may be higher than Pillow's), so the warning is not turned into an error.
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image, or a format we cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image is too large to decode safely: {exc} (the configured limit is {max_pixels:,} pixels)"
        ) from None
    except OSError as exc:
        raise ImageError(f"cannot read image: {exc}") from None
    if img.format not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported image format {img.format}")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
            "(a possible decompression bomb; raise the limit in Settings if it is genuine)"
        )
    return img


def probe(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """Return (width, height, format) from the header, upright (EXIF orientation applied).

    Raises ImageError for empty, non-image, unsupported or oversized data.
    """
    img = _open(data, max_pixels=max_pixels)
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not fail the image
        orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return w, h, img.format


def decode(data: bytes, *, max_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to an upright RGB image, no side larger than ``max_side`` (aspect kept, nothing cropped).

    JPEGs are decoded at reduced size by the decoder itself (DCT scaling), so a 12-megapixel photo
    costs little. Alpha is composited on white; CMYK, 16-bit and palette images become RGB.
    Raises ImageError for corrupt, truncated, empty, non-image or oversized data.
    """
    img = _open(data, max_pixels=max_pixels)
    try:
        if max_side and img.format == "JPEG":
            # draft() picks a power-of-two scale that keeps both sides >= the request
            w, h = img.size
            scale = max_side / max(w, h)
            if scale < 1:
                img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
        if max_side and max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)  # reducing_gap 2: box-reduce first
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        # I;16 is 16-bit by definition (a dark photo has small values, it is not 8-bit);
        # for 32-bit I/F the range is unknown, so large values are taken as 16-bit samples
        if img.mode.startswith("I;16") or arr.max() > 255:
            arr = arr / 257.0
        return Image.fromarray(np.clip(arr, 0, 255).astype("uint8")).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def thumbnail_jpeg(data: bytes, *, size: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small upright JPEG for tables and previews. Raises ImageError like ``decode``."""
    img = decode(data, max_side=size, max_pixels=max_pixels)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()
