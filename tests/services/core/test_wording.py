"""Figures in words for the pages: no dict or list repr reaches a person (issue 20 item 9)."""

from services.core.wording import certified_text, params_text, thresholds_text, value_text


def test_parameters_thresholds_and_figures_are_said_in_words():
    assert params_text({"C": 0.1}) == "C = 0.1"
    assert params_text({"epochs": 5, "blocks": 2}) == "epochs = 5, blocks = 2"
    assert params_text({"C": [0.1, 0.3, 1.0]}) == "C 0.1, 0.3, 1"
    assert params_text({}) == params_text(None) == "defaults"
    assert thresholds_text({"package": 0.9, "full_length": 1.0}) == "package 0.90 · full length people decide"
    assert certified_text({"automatic_share": 0.9166666666666666, "automatic_accuracy": 0.98, "automatic_photos": 55}) == (
        "92% decided automatically, 98.0% of them right (55 held-back photos)")
    assert certified_text({"text": "certified: 0% automatic at 98%", "automatic_share": 0.0}) == (
        "certified: 0% automatic at 98%")
    assert value_text(0.9166666666666666) == "0.9167" and value_text(None) == "–" and value_text([1, 2]) == "1, 2"
    for said in (params_text({"C": 0.1}), thresholds_text({"a": 0.5}), certified_text({"automatic_share": 0.5})):
        assert "{" not in said and "[" not in said and "'" not in said
