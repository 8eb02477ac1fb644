"""The ordered list of migrations: append a new one at the end; never edit or reorder one that has shipped."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from db.migrations.m001_core_schema import m001_core_schema
from db.migrations.m002_latest_decision_on_images import m002_latest_decision_on_images
from db.migrations.m003_queue_claims import m003_queue_claims
from db.migrations.m004_several_inspectors import m004_several_inspectors
from db.migrations.m005_queue_filters_on_images import m005_queue_filters_on_images
from db.migrations.m006_line_counting import m006_line_counting
from db.migrations.m007_dataset_filter import m007_dataset_filter
from db.migrations.m008_users import m008_users
from db.migrations.m009_single_sign_on import m009_single_sign_on
from db.migrations.m010_reused_photos import m010_reused_photos
from db.migrations.m011_retraining_runs import m011_retraining_runs
from db.migrations.m012_grid_searches import m012_grid_searches
from db.migrations.m013_version_activation_time import m013_version_activation_time
from db.migrations.m014_model_alerts import m014_model_alerts
from db.migrations.m015_queue_rank import m015_queue_rank
from db.migrations.m016_estimated_bins import m016_estimated_bins
from db.migrations.m017_sign_in_throttle import m017_sign_in_throttle
from db.migrations.m018_web_sessions import m018_web_sessions
from db.migrations.m019_label_boxes import m019_label_boxes
from db.migrations.m020_label_box_edits import m020_label_box_edits
from db.migrations.m021_catalog_photos import m021_catalog_photos
from db.migrations.m022_job_current_item import m022_job_current_item
from db.migrations.m023_job_current_share import m023_job_current_share

Migration = Callable[[sqlite_utils.Database], None]

# (name, function): the name is what ``_migrations`` records, so it must never change once shipped.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("m001_core_schema", m001_core_schema),
    ("m002_latest_decision_on_images", m002_latest_decision_on_images),
    ("m003_queue_claims", m003_queue_claims),
    ("m004_several_inspectors", m004_several_inspectors),
    ("m005_queue_filters_on_images", m005_queue_filters_on_images),
    ("m006_line_counting", m006_line_counting),
    ("m007_dataset_filter", m007_dataset_filter),
    ("m008_users", m008_users),
    ("m009_single_sign_on", m009_single_sign_on),
    ("m010_reused_photos", m010_reused_photos),
    ("m011_retraining_runs", m011_retraining_runs),
    ("m012_grid_searches", m012_grid_searches),
    ("m013_version_activation_time", m013_version_activation_time),
    ("m014_model_alerts", m014_model_alerts),
    ("m015_queue_rank", m015_queue_rank),
    ("m016_estimated_bins", m016_estimated_bins),
    ("m017_sign_in_throttle", m017_sign_in_throttle),
    ("m018_web_sessions", m018_web_sessions),
    ("m019_label_boxes", m019_label_boxes),
    ("m020_label_box_edits", m020_label_box_edits),
    ("m021_catalog_photos", m021_catalog_photos),
    ("m022_job_current_item", m022_job_current_item),
    ("m023_job_current_share", m023_job_current_share),
]
