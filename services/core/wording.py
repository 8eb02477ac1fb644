"""Settings and figures said in words for the pages (a dict printed as ``{'C': 0.1}`` is developer output)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def name_of(key: str) -> str:
    """``full_length`` -> ``full length``; ``param_C`` -> ``C``. Raises nothing."""
    return key.removeprefix("param_").replace("_", " ")


def value_text(value: Any) -> str:
    """A number as a person reads it (at most four significant digits), a list joined, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value)
    return str(value)


def params_text(params: Mapping[str, Any] | None) -> str:
    """Grid or training parameters in words: ``{'C': 0.1}`` -> ``C = 0.1``; ``{'epochs': [5, 10]}`` ->
    ``epochs 5, 10``. Empty or None: ``defaults``. Raises nothing."""
    if not params:
        return "defaults"
    return ", ".join(f"{name_of(k)} {value_text(v)}" if isinstance(v, list | tuple) else f"{name_of(k)} = {value_text(v)}"
                     for k, v in params.items())


def thresholds_text(thresholds: Mapping[str, float] | None) -> str:
    """Routing thresholds per class in words; 1.0 (or more) is said as 'people decide'. Raises nothing."""
    if not thresholds:
        return "none"
    return " · ".join(f"{name_of(k)} " + ("people decide" if float(v) >= 1.0 else f"{float(v):.2f}")
                      for k, v in thresholds.items())


def certified_text(at: Mapping[str, Any] | None) -> str:
    """What a version decides at its thresholds: the certificate's own sentence when it has one, else the share
    decided automatically and their accuracy. Raises nothing."""
    if not at:
        return "no figures"
    if at.get("text"):
        return str(at["text"])
    share, accuracy, photos = at.get("automatic_share"), at.get("automatic_accuracy"), at.get("automatic_photos")
    if share is None:
        return "no figures"
    said = f"{share:.0%} decided automatically"
    if accuracy is not None:
        said += f", {accuracy:.1%} of them right" + (f" ({photos:,} held-back photos)" if photos else "")
    return said


def duration_text(seconds: float | None) -> str | None:
    """A duration as people say it: 'under a minute', 'about 4 min', 'about 1 h 20 min'; None stays None."""
    if seconds is None:
        return None
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


QUEUE_REASONS = {"low_confidence": "the model is not sure enough", "no_model": "no model had been trained yet",
                 "audit": "a share of automatic decisions is checked by people",
                 "rereview": "an admin asked for another look", "adjudication": "inspectors disagree: an admin decides"}
STATUSES = {"pending": "not classified yet", "queued": "in the queue", "decided": "decided", "failed": "failed"}
SOURCES = {"auto": "the model", "human": "a person"}


def queue_reason_text(reason: str | None) -> str:
    """Why a photo is in the queue, in words (an unknown reason as it is; none is an audit). Raises nothing."""
    return QUEUE_REASONS.get(reason or "audit", reason or "")
