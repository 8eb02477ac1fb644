"""How long and how much a dataset filter scan will take, said before launch: "100,000 images, about $100, about
40 minutes at 50 requests a second".

Rekognition's pace is the lower of the account's rate (``rekognition_requests_per_second``) and what the
requests in flight allow at a typical latency (``rekognition_in_flight`` / 0.25 s), times the share of that
the whole job reaches end to end (reading, deciding, copying, writing the results: ``CLOUD_EFFICIENCY``,
measured by ``benchmarks/cloud_concurrency.py``). The local detector's pace is the one measured on this
server (``benchmarks/filter_throughput.py``). Early stopping only shortens a scan.
"""

from __future__ import annotations

from typing import Any

from services.core.errors import InvalidInput

TYPICAL_LATENCY_S = 0.25  # one DetectLabels request, as seen from a server in the same region (150-300 ms)
CLOUD_EFFICIENCY = 0.8  # share of the rate limit a whole filter job reaches (benchmarks/cloud_concurrency.py: 0.81-0.84)
LOCAL_IMAGES_PER_S = 90.0  # local detector, web-size JPEGs, 2 cores (benchmarks/filter_throughput.py: 79-107)


def _about(seconds: float) -> str:
    """A duration rounded as a person would say it: "about 40 seconds", "about 35 minutes", "about 2.5 hours"."""
    if seconds < 60:
        shown_s = max(1, round(seconds / 5) * 5 if seconds >= 10 else round(seconds))
        return f"about {shown_s} second{'s' if shown_s != 1 else ''}"
    minutes = seconds / 60
    if minutes < 90:
        shown = round(minutes) if minutes < 10 else round(minutes / 5) * 5
        return f"about {shown} minute{'s' if shown != 1 else ''}"
    hours = minutes / 60
    if hours < 48:
        shown_h = round(hours * 2) / 2
        return f"about {shown_h:g} hours"
    return f"about {round(hours / 24):g} days"


def _dollars(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 10 else f"${usd:,.2f}"


def scan_estimate(images: int, *, detector: str, cost_per_image: float, rate: float, in_flight: int,
                  latency_s: float = TYPICAL_LATENCY_S) -> dict[str, Any]:
    """{"images", "expected_cost_usd", "images_per_s", "expected_seconds", "rate_limit", "in_flight", "bound_by",
    "message"} for scanning ``images`` images. ``bound_by``: "rate" (the account's quota), "in_flight" (too few
    requests at once for the latency) or "local" (this server's speed). Raises InvalidInput for a negative
    count, a rate or latency not above 0, or fewer than 1 request in flight."""
    if images < 0 or rate <= 0 or in_flight < 1 or latency_s <= 0:
        raise InvalidInput("an estimate needs a count of images of 0 or more, a rate above 0, at least 1 request in "
                           "flight and a latency above 0")
    cost = images * cost_per_image
    if detector == "local":
        per_s, bound = LOCAL_IMAGES_PER_S, "local"
        pace = f"at about {per_s:g} images a second on this server"
    else:
        by_window = in_flight / latency_s
        bound = "rate" if rate <= by_window else "in_flight"
        per_s = min(rate, by_window) * CLOUD_EFFICIENCY
        pace = (f"at {rate:g} requests a second" if bound == "rate" else
                f"at about {by_window:g} requests a second ({in_flight} in flight at about "
                f"{latency_s * 1000:.0f} ms each; the rate limit allows {rate:g})")
    seconds = images / per_s if images else 0.0
    price = "free (local)" if cost == 0 else f"about {_dollars(cost)}"
    message = f"{images:,} image{'s' if images != 1 else ''}, {price}, {_about(seconds)} {pace}"
    return {"images": images, "expected_cost_usd": round(cost, 4), "images_per_s": round(per_s, 2),
            "expected_seconds": round(seconds, 1), "rate_limit": float(rate), "in_flight": int(in_flight),
            "bound_by": bound, "message": message}
