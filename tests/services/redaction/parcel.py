"""A parcel photo with a shipping label printed onto it: a real doorstep photo (tests/data/parcels, public domain)
with a white label holding a real Code 128 barcode (python-barcode), a real QR code (OpenCV's encoder) and an
address block, pasted onto the box. Shared by the redaction, faces-job and classification tests."""

from __future__ import annotations

import io
from pathlib import Path

import barcode
import cv2
import numpy as np
from barcode.writer import ImageWriter
from PIL import Image, ImageDraw, ImageFont

PHOTO = Path(__file__).resolve().parents[2] / "data" / "parcels" / "doorstep-box.jpg"
TRACKING = "1Z999AA10123456784"
QR_TEXT = "https://track.example/1Z999AA10123456784"
ADDRESS = ("JANE Q CUSTOMER", "221 HIGH STREET APT 4", "SPRINGFIELD IL 62704")


def _barcode() -> Image.Image:
    buf = io.BytesIO()
    barcode.get("code128", TRACKING, writer=ImageWriter()).write(
        buf, options={"write_text": False, "module_width": 0.25, "module_height": 9.0, "quiet_zone": 2.0, "dpi": 200})
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _qr(side: int) -> Image.Image:
    code = cv2.QRCodeEncoder.create().encode(QR_TEXT)  # modules, 0 black / 255 white, without a quiet zone
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    return Image.fromarray(cv2.resize(code, (side, side), interpolation=cv2.INTER_NEAREST)).convert("RGB")


def parcel_photo() -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """(RGB frame, where each printed item is: barcode, qr, text as x1, y1, x2, y2)."""
    photo = Image.open(PHOTO).convert("RGB").crop((100, 600, 420, 1000))  # the box on the doorstep, 320 x 400
    photo = photo.resize((960, 1200), Image.Resampling.LANCZOS)  # as a closer phone photo would have it
    label = Image.new("RGB", (560, 520), (250, 250, 246))
    draw = ImageDraw.Draw(label)
    font = ImageFont.load_default(size=30)
    y = 24
    for line in ADDRESS:
        draw.text((24, y), line, fill=(20, 20, 20), font=font)
        y += 40
    text_box = (24, 24, 24 + max(int(draw.textlength(t, font=font)) for t in ADDRESS), y - 6)
    bars = _barcode()
    bars.thumbnail((500, 130))
    label.paste(bars, (30, 170))
    qr = _qr(180)
    label.paste(qr, (350, 320))
    ox, oy = 150, 420  # where the label sits on the box's front
    photo.paste(label, (ox, oy))
    frame = np.asarray(photo)
    ys, xs = np.nonzero(np.asarray(bars.convert("L")) < 128)  # the bars, without the writer's white margins
    truth = {"text": (ox + text_box[0], oy + text_box[1], ox + text_box[2], oy + text_box[3]),
             "barcode": (ox + 30 + int(xs.min()), oy + 170 + int(ys.min()), ox + 31 + int(xs.max()), oy + 171 + int(ys.max())),
             "qr": (ox + 350 + 18, oy + 320 + 18, ox + 350 + 162, oy + 320 + 162)}
    return frame, truth


def covered(boxes: list, truth: tuple[int, int, int, int], *, kind: str) -> float:
    """The largest share of ``truth`` inside one found box of ``kind``."""
    x1, y1, x2, y2 = truth
    best = 0.0
    for b in boxes:
        if b.kind != kind:
            continue
        ix = max(0.0, min(b.x2, x2) - max(b.x1, x1)) * max(0.0, min(b.y2, y2) - max(b.y1, y1))
        best = max(best, ix / ((x2 - x1) * (y2 - y1)))
    return best


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=92)
    return buf.getvalue()
