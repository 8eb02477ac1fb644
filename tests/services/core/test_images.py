"""services.core.images: probe, decode and thumbnail_jpeg on real image bytes made here with PIL."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from services.core.errors import ImageError, InvalidInput
from services.core.images import decode, probe, thumbnail_jpeg

RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


def noisy_jpeg(size=(300, 200), seed=0) -> bytes:
    """A JPEG with real entropy (a flat colour compresses to almost nothing and hides truncation)."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), "JPEG", quality=90)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (what a decompression bomb looks like to a header reader)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def close(pixel, expected, tol=40) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def all_three(data: bytes, **kw):
    """Run probe, decode and thumbnail_jpeg; each must raise ImageError. Returns the three messages."""
    messages = []
    for fn in (probe, decode, thumbnail_jpeg):
        with pytest.raises(ImageError) as info:
            fn(data, **kw)
        messages.append(str(info.value))
    return messages


# --------------------------------------------------------------------------------------------------
# bad input: each is an ImageError (an InvalidInput, so pages show it) with a message a person can act on


def test_image_error_is_a_console_input_error() -> None:
    assert issubclass(ImageError, InvalidInput)


def test_zero_byte_file() -> None:
    for msg in all_three(b""):
        assert "empty" in msg and "0 bytes" in msg


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x01\x02garbage\xff\xfe" * 50, id="random-bytes"),
        pytest.param(b"review_id,review_type\nr1,product\n", id="text-file-named-jpg"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 7, id="jpeg-magic-then-nothing"),
    ],
)
def test_not_an_image(data: bytes) -> None:
    for msg in all_three(data):
        assert msg and ("not an image" in msg or "cannot read" in msg), msg


def test_truncated_jpeg_probes_but_does_not_decode() -> None:
    full = noisy_jpeg()
    half = full[: len(full) // 2]
    # the header is intact, so a cheap probe still answers (ingest keeps it; classification reports it)
    assert probe(half) == (300, 200, "JPEG")
    for fn in (decode, thumbnail_jpeg):
        with pytest.raises(ImageError, match="truncated"):
            fn(half)
    with pytest.raises(ImageError, match="truncated"):
        decode(half, max_side=64)  # the reduced-size (draft) path too


def test_corrupted_bytes_in_the_middle_never_escape_as_other_errors() -> None:
    """Flip bytes, cut files short: every failure is an ImageError, never a raw PIL/struct/zlib error."""
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    originals = [encode(base, "JPEG"), encode(base, "PNG"), encode(base, "WEBP"), encode(base.convert("P"), "GIF"),
                 encode(base, "BMP"), encode(base, "TIFF"), encode(base.convert("RGBA"), "PNG")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about some broken TIFF tags; not what is tested here
        for data in originals:
            for trial in range(40):
                b = bytearray(data)
                if trial % 2:
                    b = b[: int(rng.integers(1, len(b)))]
                else:
                    for _ in range(int(rng.integers(1, 8))):
                        b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
                for fn in (probe, lambda d: decode(d, max_side=32)):
                    try:
                        fn(bytes(b))
                    except ImageError as exc:
                        assert str(exc)


def test_unsupported_format_names_it() -> None:
    ppm = encode(Image.new("RGB", (8, 8), RED), "PPM")
    for msg in all_three(ppm):
        assert "unsupported image format PPM" in msg


def test_over_the_pixel_limit_names_the_size_and_the_limit() -> None:
    data = encode(Image.new("RGB", (2000, 1000), RED), "PNG")
    for msg in all_three(data, max_pixels=1_000_000):
        assert "2000x1000" in msg and "2,000,000" in msg and "1,000,000" in msg and "limit" in msg
    assert probe(data, max_pixels=2_000_000) == (2000, 1000, "PNG")  # exactly at the limit is fine


def test_decompression_bomb_header_is_refused_without_decoding() -> None:
    bomb = png_header_only(20_000, 20_000)  # 400 megapixels claimed in ~60 bytes
    for msg in all_three(bomb):
        assert "too large" in msg and "limit" in msg


def test_raised_pixel_limit_is_honoured_above_pillows_own_default() -> None:
    """A genuine 90-megapixel photo: refused by default with an actionable message, read once the limit is raised."""
    big = png_header_only(10_000, 9_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match=r"10000x9000 = 90,000,000 pixels, over the limit of 80,000,000"):
            probe(big)
        assert probe(big, max_pixels=100_000_000) == (10_000, 9_000, "PNG")


# --------------------------------------------------------------------------------------------------
# odd but valid images


def test_png_with_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 1))
    img.putdata([(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 255, 128), (10, 200, 10, 0)])
    out = decode(encode(img, "PNG"))
    assert out.mode == "RGB" and out.size == (4, 1)
    assert out.getpixel((0, 0)) == WHITE  # fully transparent black -> white, not black
    assert out.getpixel((1, 0)) == RED
    assert close(out.getpixel((2, 0)), (127, 127, 255), tol=3)  # half-transparent blue over white
    assert out.getpixel((3, 0)) == WHITE


def test_la_png_with_alpha_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1))
    img.putdata([(0, 0), (0, 255)])
    out = decode(encode(img, "PNG"))
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((1, 0)) == (0, 0, 0)


def test_gif_palette_with_transparency() -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putpixel((0, 0), 0)  # palette index 0 is the transparent one
    img.putpixel((3, 3), 2)
    data = encode(img, "GIF", transparency=0)
    assert probe(data) == (4, 4, "GIF")
    out = decode(data)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE  # transparent (palette black) -> white
    assert out.getpixel((1, 1)) == RED
    assert out.getpixel((3, 3)) == BLUE


def test_cmyk_jpeg_decodes_to_rgb_with_sensible_colours() -> None:
    img = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # red in CMYK
    img.paste((255, 0, 255, 0), (16, 0, 32, 16))  # right half: green
    data = encode(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode(data)
    assert out.mode == "RGB" and out.size == (32, 16)
    assert close(out.getpixel((4, 8)), RED)
    assert close(out.getpixel((28, 8)), GREEN)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(data)))
    assert thumb.mode == "RGB" and close(thumb.getpixel((4, 8)), RED)


def test_16_bit_png_keeps_its_tones() -> None:
    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode(data)
    arr = np.asarray(out)
    assert out.mode == "RGB" and out.size == (64, 32)
    assert arr.min() <= 2 and arr.max() >= 253  # the full range, not clipped to white
    assert len(np.unique(arr)) > 200  # a real ramp, not all white/black
    assert close(out.getpixel((32, 16)), (128, 128, 128), tol=6)


def test_dark_16_bit_png_stays_dark() -> None:
    """A 16-bit photo whose samples are all small is a dark photo, not an 8-bit one."""
    dark = np.full((8, 8), 200, dtype=np.uint16)  # 0.3% of full scale: black, not 78% grey
    out = decode(encode(Image.fromarray(dark), "PNG"))
    assert close(out.getpixel((0, 0)), (0, 0, 0), tol=1)
    dim = np.full((8, 8), 1000, dtype=np.uint16)
    assert close(decode(encode(Image.fromarray(dim), "PNG")).getpixel((0, 0)), (4, 4, 4), tol=1)


def test_exif_rotated_jpeg_is_decoded_upright() -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    assert probe(data) == (20, 40, "JPEG")
    out = decode(data)
    assert out.size == (20, 40)
    assert close(out.getpixel((10, 5)), RED)  # stored left edge is the visual top
    assert close(out.getpixel((10, 35)), BLUE)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(data, size=16)))
    assert thumb.size == (8, 16)


def test_broken_exif_orientation_does_not_fail_the_image() -> None:
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    data = encode(Image.new("RGB", (40, 20), RED), "JPEG", exif=exif.tobytes())
    assert probe(data) == (40, 20, "JPEG")
    assert decode(data).size == (40, 20)


def _framed(size: tuple[int, int]) -> Image.Image:
    """A picture with a coloured band on each edge, to see that nothing is cropped."""
    w, h = size
    img = Image.new("RGB", size, (128, 128, 128))
    band = max(w, h) // 20
    img.paste(RED, (0, 0, band, h))
    img.paste(BLUE, (w - band, 0, w, h))
    img.paste(GREEN, (band, 0, w - band, band))
    img.paste(YELLOW, (band, h - band, w - band, h))
    return img


def _assert_framed(out: Image.Image) -> None:
    w, h = out.size
    assert close(out.getpixel((1, h // 2)), RED)
    assert close(out.getpixel((w - 2, h // 2)), BLUE)
    assert close(out.getpixel((w // 2, 1)), GREEN)
    assert close(out.getpixel((w // 2, h - 2)), YELLOW)


@pytest.mark.parametrize("size", [(3000, 2000), (1000, 3001), (449, 10)])
def test_large_jpeg_decoded_at_max_side_keeps_aspect_and_everything(size: tuple[int, int]) -> None:
    data = encode(_framed(size), "JPEG", quality=92)
    out = decode(data, max_side=448)
    w, h = out.size
    assert max(w, h) == 448 and out.mode == "RGB"
    assert abs(w / h - size[0] / size[1]) / (size[0] / size[1]) < 0.02
    if min(w, h) > 40:
        _assert_framed(out)


def test_small_image_is_not_enlarged() -> None:
    out = decode(encode(Image.new("RGB", (30, 20), RED), "PNG"), max_side=448)
    assert out.size == (30, 20)


def test_rotated_large_jpeg_with_max_side() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(_framed((3000, 2000)), "JPEG", exif=exif.tobytes(), quality=92)
    assert probe(data)[:2] == (2000, 3000)
    out = decode(data, max_side=448)
    assert out.size in ((298, 448), (299, 448))
    # upright: the stored left (red) band is now at the top, the stored bottom (yellow) on the left
    assert close(out.getpixel((out.width // 2, 1)), RED)
    assert close(out.getpixel((1, out.height // 2)), YELLOW)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "BMP", "TIFF", "GIF"])
def test_other_formats_decode(fmt: str) -> None:
    img = _framed((200, 100))
    data = encode(img if fmt != "GIF" else img.convert("P", palette=Image.Palette.ADAPTIVE), fmt)
    assert probe(data) == (200, 100, fmt)
    out = decode(data, max_side=100)
    assert out.mode == "RGB" and out.size == (100, 50)
    _assert_framed(out)


def test_webp_with_alpha() -> None:
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (10, 0, 20, 10))
    out = decode(encode(img, "WEBP", lossless=True))
    assert out.getpixel((2, 5)) == WHITE and out.getpixel((15, 5)) == BLUE


def test_thumbnail_jpeg_is_a_small_upright_jpeg() -> None:
    data = noisy_jpeg((1200, 800))
    thumb = thumbnail_jpeg(data)
    with Image.open(io.BytesIO(thumb)) as t:
        assert t.format == "JPEG" and t.mode == "RGB" and t.size == (256, 171)
    with Image.open(io.BytesIO(thumbnail_jpeg(encode(Image.new("RGBA", (64, 128), (0, 0, 0, 0)), "PNG"), size=32))) as t:
        assert t.size == (16, 32) and close(t.getpixel((8, 16)), WHITE, tol=3)


def test_grayscale_and_palette_without_transparency_become_rgb() -> None:
    assert decode(encode(Image.new("L", (4, 4), 77), "PNG")).getpixel((0, 0)) == (77, 77, 77)
    assert decode(encode(Image.new("1", (4, 4), 1), "PNG")).getpixel((0, 0)) == WHITE
    p = Image.new("RGB", (4, 4), BLUE).convert("P")
    assert decode(encode(p, "PNG")).getpixel((0, 0)) == BLUE
