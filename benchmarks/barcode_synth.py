"""Synthetic training photos for the barcode network (benchmarks/barcode_net_train.py): linear barcodes and 2-D
codes (QR, Data Matrix, PDF417, MaxiCode) printed on label paper among lines of text, or alone, warped onto real photos
(COCO, as backgrounds) and degraded the way phone photos of parcels are (blur, motion, shading, noise, JPEG, a low
resolution, a finger), often cut by the photo's edge.

Every sample is drawn from its own seed (``sample(seed)``), so a set is the same on every machine. The target has two
maps: linear codes' boxes (bars and the digits printed under them, as the evaluation's annotations are drawn), and
2-D codes' boxes; label text, regular stripes (railings, blinds), grids and the background are negatives. No
evaluation photo is read here. The 2-D codes are real encodings: OpenCV's QR encoder, pyStrich's Data Matrix
(Apache-2.0) and pdf417gen's PDF417 (MIT); MaxiCode is drawn as its hexagon grid around a bullseye.
"""

from __future__ import annotations

import io
import string
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pdf417gen
from common import OUT
from PIL import Image, ImageDraw, ImageFont
from pystrich.datamatrix import DataMatrixEncoder

SIZE = 320  # a training crop is SIZE x SIZE grey pixels; the target is a quarter of that each way
STRIDE = 4
BARS, MATRIX = 0, 1  # the target's maps: linear codes, 2-D codes
COCO_MIRROR = Path("/work/.mirror/minto5z+coco_yolo/repo")  # COCO val2017 photos (backgrounds only), a bare mirror
COCO_COMMIT = "4715f5ca05a6ffc148d4c4e5b0a131663655f2be"  # the mirror's commit the committed network was trained on
BACKGROUNDS = OUT / "barcode_backgrounds"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
WIDTHS = np.array([1, 2, 3, 4])
WIDTH_P = np.array([0.45, 0.3, 0.15, 0.1])


def materialise_backgrounds(*, limit: int = 1500) -> list[Path]:
    """The first ``limit`` COCO photos (by path) of the local mirror at COCO_COMMIT, copied into benchmarks/out once.
    Raises SystemExit naming the mirror when it cannot be read."""
    BACKGROUNDS.mkdir(parents=True, exist_ok=True)
    have = sorted(BACKGROUNDS.glob("*.jpg"))
    if len(have) >= limit:
        return have[:limit]
    git = ["git", "--git-dir", str(COCO_MIRROR)]
    listed = subprocess.run([*git, "ls-tree", "-r", "--name-only", COCO_COMMIT], capture_output=True, text=True,
                            check=False)
    if listed.returncode:
        raise SystemExit(f"cannot list the COCO photos at {COCO_COMMIT[:10]} in {COCO_MIRROR}: {listed.stderr.strip()}")
    for n in sorted(n for n in listed.stdout.split() if n.lower().endswith(".jpg"))[:limit]:
        target = BACKGROUNDS / Path(n).name
        if not target.exists():
            target.write_bytes(subprocess.run([*git, "show", f"{COCO_COMMIT}:{n}"], check=True,
                                              capture_output=True).stdout)
    return sorted(BACKGROUNDS.glob("*.jpg"))[:limit]


_fonts: list[Path] = []


def fonts() -> list[Path]:
    """The TrueType fonts of the machine (DejaVu, Liberation), found once."""
    if not _fonts:
        _fonts.extend(sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf")))
    return _fonts


def _font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    """One of the fonts, at ``size`` pixels (at least 6)."""
    return ImageFont.truetype(str(fonts()[rng.integers(len(fonts()))]), max(6, int(size)))


def _text(rng: np.random.Generator, n: int, *, digits: bool = False) -> str:
    """A random string of ``n`` characters (digits only, or letters, digits and punctuation)."""
    alphabet = string.digits if digits else string.ascii_uppercase + string.ascii_lowercase + string.digits + " ,.-#/"
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=n)).strip() or "0"


def bars(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A barcode on white (uint8), bars with or without digits under them, and the code's box (x1, y1, x2, y2)."""
    module = int(rng.integers(2, 5))
    target = int(rng.integers(40, 220))  # modules
    widths = [2, 1, 1]  # a start guard
    while sum(widths) < target:
        widths.append(int(rng.choice(WIDTHS, p=WIDTH_P)))
    if len(widths) % 2 == 0:
        widths.append(1)
    width = sum(widths) * module
    height = int(width * rng.uniform(0.12, 0.7))
    quiet = int(rng.uniform(4, 14) * module)
    with_digits = rng.random() < 0.65
    digit_h = int(max(8, height * rng.uniform(0.15, 0.35))) if with_digits else 0
    canvas = np.full((height + digit_h + 2 * quiet, width + 2 * quiet), 255, np.uint8)
    x = quiet
    for i, w in enumerate(widths):
        if i % 2 == 0:
            canvas[quiet:quiet + height, x:x + w * module] = 0
        x += w * module
    box = [quiet, quiet, quiet + width, quiet + height]
    if with_digits:
        img = Image.fromarray(canvas)
        draw = ImageDraw.Draw(img)
        font = _font(rng, digit_h * 0.9)
        label = _text(rng, int(rng.integers(6, 22)), digits=rng.random() < 0.6)
        tw = draw.textlength(label, font=font)
        tx = quiet + max(0.0, (width - tw) / 2) if rng.random() < 0.7 else quiet
        draw.text((tx, quiet + height + 1), label, fill=0, font=font)
        canvas = np.asarray(img)
        box[3] = quiet + height + digit_h
        box[2] = max(box[2], int(min(canvas.shape[1], tx + tw)))
    return canvas, (box[0], box[1], box[2], box[3])


def qr(rng: np.random.Generator) -> np.ndarray:
    """A real QR code (OpenCV's encoder) on white, with a quiet zone of one to four modules."""
    code = cv2.QRCodeEncoder.create().encode(_text(rng, int(rng.integers(5, 120))))
    quiet = int(rng.integers(1, 5))
    code = cv2.copyMakeBorder(code, quiet, quiet, quiet, quiet, cv2.BORDER_CONSTANT, value=255)
    scale = int(rng.integers(2, 6))
    return cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def data_matrix(rng: np.random.Generator) -> np.ndarray:
    """A real Data Matrix (pyStrich's encoding) with its L-shaped finder and clock track, on white."""
    cells = np.array(DataMatrixEncoder(_text(rng, int(rng.integers(3, 60)))).matrix, dtype=bool)
    n = cells.shape[0]
    symbol = np.zeros((n + 2, n + 2), bool)
    symbol[1:-1, 1:-1] = cells
    symbol[:, 0] = symbol[-1, :] = True  # the solid L, left and bottom
    symbol[0, 0::2] = True  # the clock track, top and right
    symbol[-1::-2, -1] = True
    code = np.where(symbol, 0, 255).astype(np.uint8)
    code = cv2.copyMakeBorder(code, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=255)
    scale = int(rng.integers(2, 7))
    return cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def pdf417(rng: np.random.Generator) -> np.ndarray:
    """A real PDF417 code (pdf417gen's encoding) on white: stacked rows of bars, a 2-D code."""
    codes = pdf417gen.encode(_text(rng, int(rng.integers(10, 160))), columns=int(rng.integers(2, 9)))
    img = pdf417gen.render_image(codes, scale=int(rng.integers(1, 4)), ratio=int(rng.integers(2, 5)), padding=6)
    return np.asarray(img.convert("L"))


def maxicode(rng: np.random.Generator) -> np.ndarray:
    """A MaxiCode-like symbol: 33 rows of 30 hexagons, about half dark, around a three-ring bullseye."""
    unit = int(rng.integers(3, 8))
    w, h = int(30.5 * unit * 1.0), int(33 * unit * 0.866 + unit)
    img = Image.new("L", (w + 4 * unit, h + 4 * unit), 255)
    draw = ImageDraw.Draw(img)
    cx, cy = img.width / 2, img.height / 2
    on = rng.random((33, 30)) < 0.5
    r = unit * 0.5
    for row in range(33):
        for col in range(30):
            x = 2 * unit + col * unit + (unit / 2 if row % 2 else 0) + r
            y = 2 * unit + row * unit * 0.866 + r
            if on[row, col] and (x - cx) ** 2 + (y - cy) ** 2 > (4.2 * unit) ** 2:
                draw.regular_polygon((x, y, r), 6, rotation=30, fill=0)
    for ring in (3.6, 2.4, 1.2):
        draw.ellipse([cx - ring * unit, cy - ring * unit, cx + ring * unit, cy + ring * unit], fill=0)
        draw.ellipse([cx - (ring - 0.6) * unit, cy - (ring - 0.6) * unit, cx + (ring - 0.6) * unit,
                      cy + (ring - 0.6) * unit], fill=255)
    return np.asarray(img)


def matrix_code(rng: np.random.Generator) -> np.ndarray:
    """A 2-D code on white: QR (half the time), Data Matrix, PDF417 or MaxiCode."""
    pick = rng.random()
    if pick < 0.5:
        return qr(rng)
    if pick < 0.75:
        return data_matrix(rng)
    return pdf417(rng) if pick < 0.9 else maxicode(rng)


def grid(rng: np.random.Generator) -> np.ndarray:
    """A regular grid or chequer (tiles, a mesh, a keyboard): a negative for 2-D codes."""
    period = int(rng.integers(6, 40))
    n, m = int(rng.integers(4, 20)), int(rng.integers(4, 20))
    canvas = np.full((period * n, period * m), int(rng.integers(150, 256)), np.uint8)
    dark = int(rng.integers(0, 100))
    if rng.random() < 0.5:
        canvas[::period] = dark
        canvas[:, ::period] = dark
        canvas = cv2.dilate(255 - canvas, np.ones((int(rng.integers(1, 4)),) * 2, np.uint8))
        canvas = 255 - canvas
    else:
        yy, xx = np.mgrid[0:canvas.shape[0], 0:canvas.shape[1]] // period
        canvas[(yy + xx) % 2 == 0] = dark
    return canvas


def stripes(rng: np.random.Generator) -> np.ndarray:
    """Regular stripes (railings, blinds, a grille): bars of one width, a negative."""
    period = int(rng.integers(4, 30))
    n = int(rng.integers(6, 40))
    duty = rng.uniform(0.2, 0.6)
    height = int(period * n * rng.uniform(0.2, 1.5))
    canvas = np.full((max(height, 8), period * n), int(rng.integers(150, 256)), np.uint8)
    dark = int(rng.integers(0, 100))
    for i in range(n):
        canvas[:, i * period:i * period + max(1, int(period * duty))] = dark
    return canvas


def label(rng: np.random.Generator, *, codes: int, matrices: int = 0
          ) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """A label: paper with text lines, rules, ``codes`` barcodes and ``matrices`` 2-D codes; their boxes."""
    parts = [bars(rng) for _ in range(codes)]
    squares = [matrix_code(rng) for _ in range(matrices)]
    width = int(max([p[0].shape[1] for p in parts] + [q.shape[1] for q in squares] + [200]) * rng.uniform(1.0, 1.8))
    line_h = int(rng.integers(10, 40))
    lines = int(rng.integers(0, 9))
    height = sum(p[0].shape[0] for p in parts) + sum(q.shape[0] for q in squares) + lines * int(line_h * 1.4) + 20
    paper = int(rng.integers(200, 256))
    img = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(img)
    boxes, boxes_2d, y = [], [], 10
    for item in rng.permutation(codes + matrices + lines):
        if item < codes:
            code, (x1, y1, x2, y2) = parts[item]
            x = int(rng.integers(0, max(1, width - code.shape[1])))
            img.paste(Image.fromarray(np.minimum(code, paper).astype(np.uint8)), (x, y))
            boxes.append((x + x1, y + y1, x + x2, y + y2))
            y += code.shape[0]
        elif item < codes + matrices:
            square = squares[item - codes]
            x = int(rng.integers(0, max(1, width - square.shape[1])))
            img.paste(Image.fromarray(np.minimum(square, paper).astype(np.uint8)), (x, y))
            left, top, right, bottom = _ink_box(square)
            boxes_2d.append((x + left, y + top, x + right, y + bottom))
            y += square.shape[0]
        else:
            font = _font(rng, line_h * rng.uniform(0.6, 1.0))
            draw.text((int(rng.integers(2, 30)), y), _text(rng, int(rng.integers(4, 40))), fill=int(rng.integers(0, 80)),
                      font=font)
            if rng.random() < 0.15:
                draw.line([(0, y + line_h * 1.3), (width, y + line_h * 1.3)], fill=0, width=int(rng.integers(1, 4)))
            y += int(line_h * 1.4)
    return np.asarray(img).copy(), boxes, boxes_2d


def alone(rng: np.random.Generator) -> tuple[np.ndarray, list, list[tuple[int, int, int, int]]]:
    """A 2-D code by itself (a poster, a screen, a close-up), its box."""
    square = matrix_code(rng)
    return square, [], [_ink_box(square)]


def _ink_box(code: np.ndarray) -> tuple[int, int, int, int]:
    """A code's own extent on white (x1, y1, x2, y2), without its quiet zone: the box of its dark pixels."""
    dark = np.argwhere(code < 128)
    (top, left), (bottom, right) = dark.min(axis=0), dark.max(axis=0) + 1
    return int(left), int(top), int(right), int(bottom)


def _place(rng: np.random.Generator, item: np.ndarray, *, long_side: float) -> np.ndarray:
    """A 3x3 perspective moving ``item`` to a random place, turn and size in the crop (possibly past its edge)."""
    h, w = item.shape[:2]
    scale = long_side / max(h, w)
    angle = rng.uniform(0, 2 * np.pi) if rng.random() < 0.6 else rng.normal(0, 0.2) + rng.integers(4) * np.pi / 2
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    centred = src - [w / 2, h / 2]
    dst = centred @ np.float32([[c, s], [-s, c]])
    dst += rng.normal(0, 0.06 * long_side, size=dst.shape)  # perspective
    dst += rng.uniform(-0.2 * SIZE, 1.2 * SIZE, size=2)
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _background(rng: np.random.Generator, paths: list[Path]) -> np.ndarray:
    """A random square crop of a random background photo, grey, SIZE x SIZE."""
    photo = cv2.imread(str(paths[rng.integers(len(paths))]), cv2.IMREAD_GRAYSCALE)
    h, w = photo.shape
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return cv2.resize(photo[y:y + side, x:x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """The crop as a phone might take it: shading, gamma, contrast, blur, shake, low resolution, noise, JPEG."""
    f = img.astype(np.float32)
    if rng.random() < 0.6:  # shading across the photo
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
        a, b = rng.uniform(-0.5, 0.5, size=2)
        f *= np.clip(1 + a * (xx - 0.5) + b * (yy - 0.5), 0.3, 1.5)
    f = 255 * (np.clip(f, 0, 255) / 255) ** rng.uniform(0.6, 1.7)
    f = f * rng.uniform(0.5, 1.1) + rng.uniform(-20, 40)
    if rng.random() < 0.7:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 2.8))
    if rng.random() < 0.2:
        length = int(rng.integers(3, 12))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1 / length
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        f = cv2.filter2D(f, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.3:
        factor = rng.uniform(1.5, 3.5)
        small = cv2.resize(f, (int(SIZE / factor), int(SIZE / factor)), interpolation=cv2.INTER_AREA)
        f = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    f += rng.normal(0, rng.uniform(0, 8), size=f.shape)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(25, 95)))
        out = np.asarray(Image.open(buf).convert("L"))
    return out


def sample(seed: int, backgrounds: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """One training crop (SIZE x SIZE uint8 grey) and its target (2 x SIZE/STRIDE square: BARS, 1 where a linear code
    is; MATRIX, 1 where a 2-D code is)."""
    rng = np.random.default_rng(seed)
    img = _background(rng, backgrounds).astype(np.float32)
    target = np.zeros((2, SIZE, SIZE), np.float32)
    kind = rng.random()
    items: list[tuple[np.ndarray, list, list]] = []
    if kind < 0.6:
        items.append(label(rng, codes=1 + int(rng.random() < 0.25), matrices=int(rng.random() < 0.35)))
    elif kind < 0.72:
        items.append(alone(rng))
    elif kind < 0.8:
        items.append(label(rng, codes=0, matrices=int(rng.random() < 0.3)))
    elif kind < 0.88:
        items.append((stripes(rng), [], []))
    elif kind < 0.92:
        items.append((grid(rng), [], []))
    if rng.random() < 0.15:
        items.append((stripes(rng), [], []))
    for item, boxes, boxes_2d in items:
        # the item's size in the crop: from a few pixels a module to larger than the crop (log-uniform)
        long_side = float(np.exp(rng.uniform(np.log(30), np.log(900))))
        m = _place(rng, item, long_side=long_side)
        alpha = cv2.warpPerspective(np.ones(item.shape, np.float32), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        warped = cv2.warpPerspective(item.astype(np.float32), m, (SIZE, SIZE), flags=cv2.INTER_AREA
                                     if long_side < max(item.shape) else cv2.INTER_LINEAR)
        img = img * (1 - alpha) + warped * alpha
        for channel, found in ((BARS, boxes), (MATRIX, boxes_2d)):
            for x1, y1, x2, y2 in found:
                quad = cv2.perspectiveTransform(np.float32([[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]), m)[0]
                cv2.fillPoly(target[channel], [np.round(quad * 8).astype(np.int32)], 1.0, shift=3)
    if rng.random() < 0.12:  # a finger or a shadow over part of it
        centre = (int(rng.integers(0, SIZE)), int(rng.integers(0, SIZE)))
        axes = (int(rng.integers(10, 80)), int(rng.integers(20, 120)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.integers(40, 200)), -1)
    out = _degrade(rng, img)
    small = np.stack([cv2.resize(t, (SIZE // STRIDE, SIZE // STRIDE), interpolation=cv2.INTER_AREA) for t in target])
    return out, (small > 0.5).astype(np.uint8)
