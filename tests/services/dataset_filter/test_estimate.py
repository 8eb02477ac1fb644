"""The estimate before launch: cost and time from the rate limit and the requests in flight."""

from __future__ import annotations

import pytest

from services.core.config import set_setting
from services.core.errors import InvalidInput
from services.dataset_filter import params as filter_params
from services.dataset_filter.estimate import CLOUD_EFFICIENCY, scan_estimate
from tests.conftest import jpeg_bytes


def rek(images: int, *, rate: float = 50.0, in_flight: int = 16, latency_s: float = 0.25) -> dict:
    return scan_estimate(images, detector="rekognition", cost_per_image=0.001, rate=rate, in_flight=in_flight,
                         latency_s=latency_s)


def test_the_issue_example_reads_as_a_person_would_say_it():
    out = rek(100_000)
    assert out["message"] == "100,000 images, about $100, about 40 minutes at 50 requests a second"
    assert out["expected_cost_usd"] == pytest.approx(100.0) and out["bound_by"] == "rate"
    assert out["expected_seconds"] == pytest.approx(100_000 / (50 * CLOUD_EFFICIENCY), rel=1e-3)


def test_too_few_requests_in_flight_bound_the_pace_and_the_message_says_so():
    out = rek(100_000, in_flight=4)  # 4 at 250 ms: 16 a second, under the 50 allowed
    assert out["bound_by"] == "in_flight" and out["images_per_s"] == pytest.approx(16 * CLOUD_EFFICIENCY)
    assert "about 2 hours" in out["message"] and "4 in flight" in out["message"] and "allows 50" in out["message"]


def test_a_lower_quota_takes_longer_at_the_same_cost():
    slow, fast = rek(20_000, rate=5), rek(20_000, rate=50)
    assert slow["expected_cost_usd"] == fast["expected_cost_usd"] == pytest.approx(20.0)
    assert slow["expected_seconds"] == pytest.approx(10 * fast["expected_seconds"], rel=1e-3)
    assert slow["message"] == "20,000 images, about $20, about 85 minutes at 5 requests a second"
    assert rek(1_000_000)["message"].endswith("about 7 hours at 50 requests a second")
    assert rek(1)["message"] == "1 image, about $0.00, about 1 second at 50 requests a second"


def test_local_is_free_at_this_servers_pace():
    out = scan_estimate(5000, detector="local", cost_per_image=0.0, rate=50, in_flight=16)
    assert out["message"].startswith("5,000 images, free (local), about ") and out["bound_by"] == "local"


def test_bad_inputs_are_refused():
    with pytest.raises(InvalidInput):
        rek(-1)
    with pytest.raises(InvalidInput):
        rek(10, in_flight=0)


def test_the_service_estimate_uses_the_settings(db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.jpg").write_bytes(jpeg_bytes())
    set_setting(db, key="rekognition_requests_per_second", value=5, actor="admin")
    set_setting(db, key="rekognition_in_flight", value=1, actor="admin")
    p = {"source": str(src), "destination": str(tmp_path / "out"), "labels": ["bird"], "detector": "rekognition"}
    est = filter_params.estimate(db, p)
    assert est["rate_limit"] == 5.0 and est["in_flight"] == 1 and est["bound_by"] == "in_flight"
    assert est["message"].startswith("4 images, about $0.00, about 1 second at about 4 requests a second")
