"""The workspace (one data directory) and the settings stored in its database."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from db.database import connect
from services.authz import require
from services.clock import now_iso
from services.errors import InvalidInput
from services.storage import ObjectStore

DATA_DIR_ENV = "REVIEW_CONSOLE_DATA_DIR"
S3_ENDPOINT_ENV = "REVIEW_CONSOLE_S3_ENDPOINT_URL"
CLASSES = ("package", "product", "full_length", "half_length")


def default_data_dir() -> Path:
    """``$REVIEW_CONSOLE_DATA_DIR`` if set, else ``./data`` beside the code."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Workspace:
    """One data directory: the database, the local object store and the model files."""

    root: Path

    @classmethod
    def open(cls, data_dir: str | Path | None = None) -> Workspace:
        """Create (if needed) and return the workspace at ``data_dir`` (default: ``default_data_dir()``)."""
        root = Path(data_dir).expanduser() if data_dir else default_data_dir()
        ws = cls(root.resolve())
        for sub in (ws.objects_dir, ws.models_dir):
            sub.mkdir(parents=True, exist_ok=True)
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "console.db"

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def db(self) -> sqlite_utils.Database:
        """A new connection for the calling thread, schema migrated."""
        return connect(self.db_path)


DEFAULTS: dict[str, Any] = {
    # per-class confidence at or above which a prediction decides automatically
    "thresholds": {"package": 0.9, "product": 0.9, "full_length": 0.9, "half_length": 0.9},
    # per review type: which classes qualify and whether any or all photos must qualify
    "credit_rules": {
        "product": {"classes": ["product"], "mode": "any"},
        "style": {"classes": ["full_length"], "mode": "any"},
    },
    "audit_rate": 0.02,
    "max_pixels": 80_000_000,
    "s3_endpoint_url": "",
    # folders and s3://bucket/prefix the console may read and write ([] = anywhere); the workspace is always in
    "storage_roots": [],
    "hide_suggestion": False,
    # share of queued photos labelled independently by ``overlap_k`` inspectors, then consolidated
    "overlap_rate": 0.1,
    "overlap_k": 3,
    # share of an inspector's queue served from gold items (known answers), unrecognisable as such
    "gold_rate": 0.05,
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
    # gated retraining: train a candidate once this many new human labels exist since the last version, and
    # promote it only if its cross-validated macro-F1 is at least the current model's and at least the floor
    "retrain_auto": True,
    "retrain_min_new_labels": 200,
    "retrain_min_macro_f1": 0.85,
}


def _validate(key: str, value: Any) -> Any:
    if key not in DEFAULTS:
        raise InvalidInput(f"unknown setting '{key}'")
    if key == "thresholds":
        if not isinstance(value, dict) or set(value) - set(CLASSES):
            raise InvalidInput(f"thresholds must map classes {list(CLASSES)} to numbers")
        for cls, v in value.items():
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise InvalidInput(f"threshold for {cls} must be between 0 and 1, got {v!r}")
        return {**DEFAULTS["thresholds"], **{k: float(v) for k, v in value.items()}}
    if key == "credit_rules":
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
    if key == "audit_rate":
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInput(f"audit rate must be between 0 and 1, got {value!r}")
        return float(value)
    if key in ("overlap_rate", "gold_rate", "consensus_min_confidence"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInput(f"{key.replace('_', ' ')} must be between 0 and 1, got {value!r}")
        return float(value)
    if key == "overlap_k":
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 10:
            raise InvalidInput(f"inspectors per overlap photo must be a whole number from 2 to 10, got {value!r}")
        return value
    if key == "shifts":
        return _validate_shifts(value)
    if key == "storage_roots":
        from services.storage import normalise_root

        if not isinstance(value, list):
            raise InvalidInput("storage roots must be a list of absolute folders or s3://bucket/prefix URIs")
        return sorted({normalise_root(v) for v in value if str(v).strip()})
    if key in ("allowed_networks", "trusted_proxies"):
        from services.network import parse_networks

        if not isinstance(value, list):
            raise InvalidInput(f"{key.replace('_', ' ')} must be a list of addresses or CIDR ranges")
        return parse_networks(value)
    if key in ("line_alert_pct", "line_min_confidence"):
        top = 100.0 if key == "line_alert_pct" else 1.0
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= top:
            raise InvalidInput(f"{key.replace('_', ' ')} must be between 0 and {top:g}, got {value!r}")
        return float(value)
    if key in ("line_alert_minutes", "line_silent_seconds", "line_raw_retention_days"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{key.replace('_', ' ')} must be a whole number of at least 1, got {value!r}")
        return value
    if key.startswith("sagemaker_"):
        from services.sagemaker_config import validate_setting

        return validate_setting(key, value)
    if key == "max_pixels":
        if not isinstance(value, int) or value < 1_000_000:
            raise InvalidInput("the pixel limit must be a whole number of at least 1,000,000")
        return value
    if key in ("hide_suggestion", "hold_credit_on_reuse", "retrain_auto"):
        return bool(value)
    if key == "retrain_min_new_labels":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"new labels before retraining must be a whole number of at least 1, got {value!r}")
        return value
    if key == "retrain_min_macro_f1":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInput(f"the macro-F1 floor must be between 0 and 1, got {value!r}")
        return float(value)
    if key in ("sso_identity_claim", "sso_groups_claim"):
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
            raise InvalidInput(f"{key.replace('_', ' ')} must be a claim name such as 'email' or 'groups'")
        return value.strip()
    return str(value).strip()


def _validate_shifts(value: Any) -> list[dict[str, str]]:
    """Shifts: a non-empty list of {name, start "HH:MM", end "HH:MM"} with unique names. Raises InvalidInput."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("shifts must be a non-empty list of {name, start, end}")
    out, names = [], set()
    for shift in value:
        if not isinstance(shift, dict) or not str(shift.get("name", "")).strip():
            raise InvalidInput("every shift needs a name")
        name = str(shift["name"]).strip()
        if name in names:
            raise InvalidInput(f"shift '{name}' is defined twice")
        names.add(name)
        for edge in ("start", "end"):
            text = str(shift.get(edge, ""))
            hh, _, mm = text.partition(":")
            if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise InvalidInput(f"shift '{name}': {edge} must be HH:MM, got {text!r}")
        out.append({"name": name, "start": shift["start"], "end": shift["end"]})
    return out


def get_settings(db: sqlite_utils.Database) -> dict[str, Any]:
    """Every setting: stored values over defaults."""
    out = json.loads(json.dumps(DEFAULTS))
    for row in db.query("SELECT key, value FROM settings"):
        if row["key"] in out:
            out[row["key"]] = json.loads(row["value"])
    if not out["s3_endpoint_url"]:
        out["s3_endpoint_url"] = os.environ.get(S3_ENDPOINT_ENV, "")
    return out


def workspace_root(db: sqlite_utils.Database) -> Path:
    """The workspace folder of an open database (the folder holding its file)."""
    return Path(db.execute("PRAGMA database_list").fetchone()[2]).parent


def object_store(db: sqlite_utils.Database, *, max_attempts: int = 3) -> ObjectStore:
    """The object store as Settings configure it: the S3 endpoint, and the storage roots (with this
    workspace always among them) that every URI read or written must lie inside."""
    settings = get_settings(db)
    roots = settings["storage_roots"]
    return ObjectStore(endpoint_url=settings["s3_endpoint_url"] or None, max_attempts=max_attempts,
                       roots=[*roots, str(workspace_root(db))] if roots else None)


def set_setting(db: sqlite_utils.Database, *, key: str, value: Any, actor: str) -> Any:
    """Validate and store one setting, with an audit entry. Raises InvalidInput."""
    require(db, actor=actor, action="settings.change")
    from services.audit import record

    clean = _validate(key, value)
    with db.atomic():
        db.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by",
            [key, json.dumps(clean), now_iso(), actor],
        )
        record(db, actor=actor, action="setting.change", target=key, detail={"value": clean})
    return clean
