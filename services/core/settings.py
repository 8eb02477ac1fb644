"""The settings schema: every setting's default and the validator that cleans a new value.

One table maps each setting to its validator (``VALIDATORS``); ``clean_setting`` looks a key up there and
nowhere else. Imports only the bottom of ``core`` (errors, shifts, storage roots, networks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from services.core.errors import InvalidInput
from services.core.network import parse_networks
from services.core.shifts import validate_shifts
from services.core.storage import normalise_root

CLASSES = ("package", "product", "full_length", "half_length")

DEFAULTS: dict[str, Any] = {
    # per-class confidence at or above which a prediction decides automatically
    "thresholds": {"package": 0.9, "product": 0.9, "full_length": 0.9, "half_length": 0.9},
    # per review type: which classes qualify and whether any or all photos must qualify
    "credit_rules": {
        "product": {"classes": ["product"], "mode": "any"},
        "style": {"classes": ["full_length"], "mode": "any"},
    },
    "audit_rate": 0.02,
    # per class, the audit rate the audit watch sets (services.hitl.audit_watch: more while evidence is thin); {} = audit_rate
    "class_audit_rates": {},
    "max_pixels": 80_000_000,
    # the largest file or S3 object one read takes, in MB (photos, manifests, videos from S3)
    "max_read_mb": 256,
    "s3_endpoint_url": "",
    # folders and s3://bucket/prefix the console may read and write besides the workspace ([] = the workspace only)
    "storage_roots": [],
    "hide_suggestion": False,
    # share of queued photos labelled independently by ``overlap_k`` inspectors, then consolidated
    "overlap_rate": 0.1,
    "overlap_k": 3,
    # share of an inspector's queue served from gold items (known answers), unrecognisable as such
    "gold_rate": 0.05,
    # a low-confidence photo's label worth (uncertainty, 1 - the top two probabilities' margin) moves it up the
    # queue by up to this many hours of submitted time: it never waits longer than this behind a later photo
    # (0 = oldest first)
    "queue_value_hours": 24.0,
    # consolidated answers below this posterior go to an admin for adjudication
    "consensus_min_confidence": 0.8,
    # packaging lines: shifts (UTC, start inclusive, end exclusive; may cross midnight), alerting, retention
    "shifts": [{"name": "early", "start": "06:00", "end": "14:00"}, {"name": "late", "start": "14:00", "end": "22:00"},
               {"name": "night", "start": "22:00", "end": "06:00"}],
    "line_alert_pct": 15.0,  # more than this % under or over target ...
    "line_alert_minutes": 20,  # ... for this long raises an alert
    "line_silent_seconds": 120,  # a feed without frames this long is shown as silent
    "line_min_confidence": 0.5,  # boxes under this confidence are not counted
    "line_raw_retention_days": 7,  # raw frames older than this are pruned (roll-ups and bins stay)
    "line_feed_uri": "",  # folder or s3:// prefix the worker reads detector frame files from ("" = off)
    # Amazon Rekognition for the dataset filter ("" = the AWS default region / endpoint)
    "rekognition_region": "",
    "rekognition_endpoint_url": "",
    # cloud requests within the account's quotas (services.core.ratelimit): Rekognition image requests
    # (DetectLabels, DetectFaces) a second and at once, per worker process; a throttle halves the rate for a while
    "rekognition_requests_per_second": 50.0,
    "rekognition_in_flight": 16,
    # Rekognition Video face-detection jobs running at once (the service's concurrent-job quota is 20 by default)
    "rekognition_video_jobs": 20,
    # server-side S3 copies of kept images, a second and at once
    "s3_copy_requests_per_second": 200.0,
    "s3_copy_in_flight": 16,
    # Amazon SageMaker (pages/sagemaker.py): the built-in image-classification algorithm trained from the console's
    # labels, grid tuning and batch transform. Region "" = the AWS default region; the role is the execution role
    # SageMaker assumes (it needs S3 access to the bucket); manifests, models and outputs go under bucket/prefix.
    "sagemaker_region": "",
    "sagemaker_role_arn": "",
    "sagemaker_bucket": "",
    "sagemaker_prefix": "review-console/sagemaker",
    # training: ml.p3.2xlarge is the algorithm's usual; a g4dn.xlarge (one T4 GPU) is ample for a few thousand
    # photos and costs a fifth as much
    "sagemaker_train_instance_type": "ml.g4dn.xlarge",
    "sagemaker_train_instance_count": 1,
    # batch transform runs on CPU instances too
    "sagemaker_transform_instance_type": "ml.m5.xlarge",
    "sagemaker_transform_instance_count": 1,
    "sagemaker_max_runtime_seconds": 10_800,  # a training job is stopped after this long (also caps the waiting)
    "sagemaker_endpoint_url": "",  # another SageMaker API endpoint (tests, a local emulator); "" = AWS's
    # network allowlist: CIDR ranges allowed to reach the console ([] = any); proxies whose
    # X-Forwarded-For header is believed
    "allowed_networks": [],
    "trusted_proxies": [],
    # single sign-on (OIDC, configured in .streamlit/secrets.toml): the claim that names a person, and the
    # claim that lists their groups (Cognito: cognito:groups; Okta and Entra ID: groups)
    "sso_identity_claim": "email",
    "sso_groups_claim": "groups",
    # a review with a photo flagged as reused (the same photo, or an edited copy, in another review) earns no
    # credit until an admin clears the flag
    "hold_credit_on_reuse": True,
    # photos classified as packages have their shipping labels found (barcodes, QR codes, text blocks) as a step
    # of classification, the boxes stored for redaction (services.redaction)
    "redact_package_labels": True,
    # gated retraining: train a candidate once this many new human labels exist since the last version, and
    # promote it only if its cross-validated macro-F1 is at least the current model's and at least the floor
    "retrain_auto": True,
    "retrain_min_new_labels": 200,
    "retrain_min_macro_f1": 0.85,
}


def _label(key: str) -> str:
    return key.replace("_", " ")


def _fraction(message: str | None = None) -> Callable[[str, Any], float]:
    """A number from 0 to 1 (booleans refused)."""
    def check(key: str, value: Any) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInput((message or f"{_label(key)} must be between 0 and 1") + f", got {value!r}")
        return float(value)
    return check


def _number_up_to(top: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= top:
            raise InvalidInput(f"{_label(key)} must be between 0 and {top:g}, got {value!r}")
        return float(value)
    return check


def _whole_at_least_one(message: str | None = None) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput((message or f"{_label(key)} must be a whole number of at least 1") + f", got {value!r}")
        return value
    return check


def _thresholds(key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) - set(CLASSES):
        raise InvalidInput(f"thresholds must map classes {list(CLASSES)} to numbers")
    for cls, v in value.items():
        if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise InvalidInput(f"threshold for {cls} must be between 0 and 1, got {v!r}")
    return {**DEFAULTS["thresholds"], **{k: float(v) for k, v in value.items()}}


def _credit_rules(key: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not value:
        raise InvalidInput("credit rules must map each review type to a rule")
    for rtype, rule in value.items():
        if not str(rtype).strip():
            raise InvalidInput("a review type name cannot be empty")
        classes = rule.get("classes") if isinstance(rule, dict) else None
        if not classes or set(classes) - set(CLASSES):
            raise InvalidInput(f"rule for '{rtype}': classes must be a non-empty subset of {list(CLASSES)}")
        if rule.get("mode") not in ("any", "all"):
            raise InvalidInput(f"rule for '{rtype}': mode must be 'any' or 'all'")
    return {str(k).strip(): {"classes": list(v["classes"]), "mode": v["mode"]} for k, v in value.items()}


def _audit_rate(key: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(f"audit rate must be between 0 and 1, got {value!r}")
    return float(value)


def _class_rates(key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) - set(CLASSES):
        raise InvalidInput(f"class audit rates must map classes {list(CLASSES)} to shares between 0 and 1")
    return {str(k): _audit_rate(key, v) for k, v in value.items()}


def _overlap_k(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 10:
        raise InvalidInput(f"inspectors per overlap photo must be a whole number from 2 to 10, got {value!r}")
    return value


def _storage_roots(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput("storage roots must be a list of absolute folders or s3://bucket/prefix URIs")
    return sorted({normalise_root(v) for v in value if str(v).strip()})


def _networks(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{_label(key)} must be a list of addresses or CIDR ranges")
    return parse_networks(value)


def _max_pixels(key: str, value: Any) -> int:
    if not isinstance(value, int) or value < 1_000_000:
        raise InvalidInput("the pixel limit must be a whole number of at least 1,000,000")
    return value


def _claim(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise InvalidInput(f"{_label(key)} must be a claim name such as 'email' or 'groups'")
    return value.strip()


def _flag(key: str, value: Any) -> bool:
    return bool(value)


def _text(key: str, value: Any) -> str:
    return str(value).strip()


# SageMaker: names and ranges the AWS APIs accept
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
MAX_RUNTIME_LIMIT = 2_419_200  # 28 days, SageMaker's ceiling for MaxRuntimeInSeconds


def _rate(key: str, value: Any) -> float:
    """Requests a second: a number from 0.1 to 10,000 (booleans refused)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.1 <= float(value) <= 10_000:
        raise InvalidInput(f"{_label(key)} must be between 0.1 and 10,000 requests a second, got {value!r}")
    return float(value)


def _whole_between(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInput(f"{_label(key)} must be a whole number from {low} to {high:,}, got {value!r}")
        return value
    return check


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str, Any], str]:
    """Empty (the AWS default), or text matching ``pattern``."""
    def check(key: str, value: Any) -> str:
        text = str(value or "").strip()
        if text and not pattern.match(text):
            raise InvalidInput(f"{_label(key)} must be {what}, got {text!r}")
        return text
    return check


def _sagemaker_prefix(key: str, value: Any) -> str:
    text = str(value or "").strip()
    prefix = text.strip("/")
    if ".." in prefix.split("/") or any(c.isspace() for c in prefix):
        raise InvalidInput(f"the SageMaker prefix must be a key prefix without spaces or '..', got {text!r}")
    return prefix


def _endpoint(key: str, value: Any) -> str:
    text = str(value or "").strip()
    if text and not text.startswith(("http://", "https://")):
        raise InvalidInput(f"the SageMaker endpoint must be a URL such as http://127.0.0.1:5000, got {text!r}")
    return text


VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "thresholds": _thresholds,
    "credit_rules": _credit_rules,
    "audit_rate": _audit_rate,
    "class_audit_rates": _class_rates,
    "max_pixels": _max_pixels,
    "max_read_mb": _whole_between(1, 100_000),
    "s3_endpoint_url": _text,
    "storage_roots": _storage_roots,
    "hide_suggestion": _flag,
    "overlap_rate": _fraction(),
    "overlap_k": _overlap_k,
    "gold_rate": _fraction(),
    "queue_value_hours": _number_up_to(720.0),
    "consensus_min_confidence": _fraction(),
    "shifts": lambda key, value: validate_shifts(value),
    "line_alert_pct": _number_up_to(100.0),
    "line_alert_minutes": _whole_at_least_one(),
    "line_silent_seconds": _whole_at_least_one(),
    "line_min_confidence": _number_up_to(1.0),
    "line_raw_retention_days": _whole_at_least_one(),
    "line_feed_uri": _text,
    "rekognition_region": _text,
    "rekognition_endpoint_url": _text,
    "rekognition_requests_per_second": _rate,
    "rekognition_in_flight": _whole_between(1, 256),
    "rekognition_video_jobs": _whole_between(1, 100),
    "s3_copy_requests_per_second": _rate,
    "s3_copy_in_flight": _whole_between(1, 256),
    "sagemaker_region": _matching(_REGION, "an AWS region such as eu-west-1"),
    "sagemaker_role_arn": _matching(_ROLE, "an IAM role ARN such as arn:aws:iam::123456789012:role/SageMakerRole"),
    "sagemaker_bucket": _matching(_BUCKET, "an S3 bucket name (lower case, no s3://)"),
    "sagemaker_prefix": _sagemaker_prefix,
    "sagemaker_train_instance_type": _matching(_INSTANCE, "a SageMaker instance type such as ml.g4dn.xlarge"),
    "sagemaker_train_instance_count": _whole_between(1, 100),
    "sagemaker_transform_instance_type": _matching(_INSTANCE, "a SageMaker instance type such as ml.m5.xlarge"),
    "sagemaker_transform_instance_count": _whole_between(1, 100),
    "sagemaker_max_runtime_seconds": _whole_between(60, MAX_RUNTIME_LIMIT),
    "sagemaker_endpoint_url": _endpoint,
    "allowed_networks": _networks,
    "trusted_proxies": _networks,
    "sso_identity_claim": _claim,
    "sso_groups_claim": _claim,
    "hold_credit_on_reuse": _flag,
    "redact_package_labels": _flag,
    "retrain_auto": _flag,
    "retrain_min_new_labels": _whole_at_least_one("new labels before retraining must be a whole number of at least 1"),
    "retrain_min_macro_f1": _fraction("the macro-F1 floor must be between 0 and 1"),
}
assert set(VALIDATORS) == set(DEFAULTS), "every setting needs a validator"


def clean_setting(key: str, value: Any) -> Any:
    """The clean value of one setting. Raises InvalidInput for an unknown key or a bad value."""
    if key not in VALIDATORS:
        raise InvalidInput(f"unknown setting '{key}'")
    return VALIDATORS[key](key, value)
