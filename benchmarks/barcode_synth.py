"""Synthetic training photos for the barcode network (benchmarks/barcode_net_train.py): linear barcodes printed on
label paper among lines of text, warped onto real photos (COCO, as backgrounds) and degraded the way phone photos of
parcels are (blur, motion, shading, noise, JPEG, a low resolution, a finger), often cut by the photo's edge.

Every sample is drawn from its own seed (``sample(seed)``), so a set is the same on every machine. The target is the
code's box, bars and the digits printed under them, as the evaluation's annotations are drawn; label text, QR codes,
regular stripes (railings, blinds) and the background are negatives. No evaluation photo is read here.
"""

from __future__ import annotations

import io
import string
import subprocess
from pathlib import Path

import cv2
import numpy as np
from common import OUT
from PIL import Image, ImageDraw, ImageFont

SIZE = 320  # a training crop is SIZE x SIZE grey pixels; the target is a quarter of that each way
STRIDE = 4
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
    """A real QR code (OpenCV's encoder) on white: a negative for the bar network."""
    code = cv2.QRCodeEncoder.create().encode(_text(rng, int(rng.integers(5, 60))))
    scale = int(rng.integers(2, 6))
    return cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


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


def label(rng: np.random.Generator, *, codes: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A label: paper with text lines, rules and ``codes`` barcodes (and sometimes a QR code); the codes' boxes."""
    parts = [bars(rng) for _ in range(codes)]
    width = int(max([p[0].shape[1] for p in parts] + [200]) * rng.uniform(1.0, 1.8))
    line_h = int(rng.integers(10, 40))
    lines = int(rng.integers(0, 9))
    height = sum(p[0].shape[0] for p in parts) + lines * int(line_h * 1.4) + 20
    paper = int(rng.integers(200, 256))
    img = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(img)
    boxes, y = [], 10
    order = rng.permutation(codes + lines)
    for item in order:
        if item < codes:
            code, (x1, y1, x2, y2) = parts[item]
            x = int(rng.integers(0, max(1, width - code.shape[1])))
            img.paste(Image.fromarray(np.minimum(code, paper).astype(np.uint8)), (x, y))
            boxes.append((x + x1, y + y1, x + x2, y + y2))
            y += code.shape[0]
        else:
            font = _font(rng, line_h * rng.uniform(0.6, 1.0))
            draw.text((int(rng.integers(2, 30)), y), _text(rng, int(rng.integers(4, 40))), fill=int(rng.integers(0, 80)),
                      font=font)
            if rng.random() < 0.15:
                draw.line([(0, y + line_h * 1.3), (width, y + line_h * 1.3)], fill=0, width=int(rng.integers(1, 4)))
            y += int(line_h * 1.4)
    canvas = np.asarray(img).copy()
    if rng.random() < 0.3:
        code = qr(rng)
        if code.shape[0] < canvas.shape[0] and code.shape[1] < canvas.shape[1]:
            x, y = int(rng.integers(0, canvas.shape[1] - code.shape[1])), int(rng.integers(0, canvas.shape[0] - code.shape[0]))
            region = canvas[y:y + code.shape[0], x:x + code.shape[1]]
            if not any(x < b[2] and b[0] < x + code.shape[1] and y < b[3] and b[1] < y + code.shape[0] for b in boxes):
                region[:] = np.minimum(region, code)
    return canvas, boxes


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
    """One training crop (SIZE x SIZE uint8 grey) and its target (SIZE/STRIDE square, 1 where a barcode is)."""
    rng = np.random.default_rng(seed)
    img = _background(rng, backgrounds).astype(np.float32)
    target = np.zeros((SIZE, SIZE), np.float32)
    kind = rng.random()
    items: list[tuple[np.ndarray, list]] = []
    if kind < 0.7:
        items.append(label(rng, codes=1 + int(rng.random() < 0.25)))
    elif kind < 0.82:
        items.append(label(rng, codes=0))
    elif kind < 0.9:
        items.append((stripes(rng), []))
    if rng.random() < 0.15:
        items.append((stripes(rng), []))
    for item, boxes in items:
        # the code's width in the crop: from a few pixels a module to larger than the crop (log-uniform)
        long_side = float(np.exp(rng.uniform(np.log(30), np.log(900))))
        m = _place(rng, item, long_side=long_side)
        alpha = cv2.warpPerspective(np.ones(item.shape, np.float32), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        warped = cv2.warpPerspective(item.astype(np.float32), m, (SIZE, SIZE), flags=cv2.INTER_AREA
                                     if long_side < max(item.shape) else cv2.INTER_LINEAR)
        img = img * (1 - alpha) + warped * alpha
        for x1, y1, x2, y2 in boxes:
            quad = cv2.perspectiveTransform(np.float32([[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]), m)[0]
            cv2.fillPoly(target, [np.round(quad * 8).astype(np.int32)], 1.0, shift=3)
    if rng.random() < 0.12:  # a finger or a shadow over part of it
        centre = (int(rng.integers(0, SIZE)), int(rng.integers(0, SIZE)))
        axes = (int(rng.integers(10, 80)), int(rng.integers(20, 120)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.integers(40, 200)), -1)
    out = _degrade(rng, img)
    small = cv2.resize(target, (SIZE // STRIDE, SIZE // STRIDE), interpolation=cv2.INTER_AREA)
    return out, (small > 0.5).astype(np.uint8)
