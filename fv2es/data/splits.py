"""Train / valid / test splits: seeded random or given id lists.

Both return new utterances with ``split`` set; the input order is kept. The random split's
fractions come from the config (``data.split_ratios``: the seed's 70/10/20 by default).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import fsspec

from fv2es.data.transcripts import decode_text
from fv2es.data.utterance import SPLITS, Utterance
from fv2es.errors import InputError


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Sizes of the splits of ``n`` items (``fractions``: train, valid, test shares): exact shares
    rounded by largest remainder, summing to ``n``."""
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"fractions must be {len(SPLITS)} non-negative numbers summing to 1, got {fractions}"
        )
    shares = [n * f for f in fractions]
    sizes = [int(s) for s in shares]
    # Hand the items lost to rounding down to the largest remainders (earlier split on ties).
    by_remainder = sorted(range(len(shares)), key=lambda i: (sizes[i] - shares[i], i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return tuple(sizes)


def fill_empty_splits(sizes: Sequence[int], fractions: Sequence[float]) -> tuple[int, ...]:
    """``sizes`` of one class's splits, changed so that every split with a share gets at least one
    item when the class has enough for that (three for the seed's 70/10/20): each empty split takes
    one from the largest. Validation picks the thresholds and the best epoch, and a class missing
    from it (5 clips at 70/10/20 round to 4/0/1) leaves that emotion untuned."""
    sizes = list(sizes)
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if sum(sizes) < len(wanted):
        return tuple(sizes)
    for i in wanted:
        if sizes[i] == 0:
            largest = max(range(len(sizes)), key=lambda j: (sizes[j], -j))
            sizes[largest] -= 1
            sizes[i] += 1
    return tuple(sizes)


def assign_random_splits(
    utterances: Sequence[Utterance],
    fractions: Sequence[float],
    seed: int = 0,
    stratify: bool = False,
) -> list[Utterance]:
    """Assign train/valid/test at random in the given proportions, deterministically by ``seed``.

    The draw depends on the set of ids, not on their order, so re-reading a dataset in another
    order gives the same split. With ``stratify`` each label set is split on its own, so every
    split gets each class in proportion (the totals may then differ from exact by rounding), and at
    least one of each label set that has three or more items (:func:`fill_empty_splits`).

    Raises:
        ValueError: bad fractions, or duplicate ids.
    """
    _check_unique(utterances)
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in sorted(range(len(utterances)), key=lambda i: utterances[i].id):
        groups[tuple(sorted(utterances[i].labels)) if stratify else ()].append(i)
    rng = random.Random(seed)
    assigned: dict[int, str] = {}
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        at = 0
        sizes = split_sizes(len(members), fractions)
        for name, size in zip(SPLITS, fill_empty_splits(sizes, fractions) if stratify else sizes):
            for i in members[at : at + size]:
                assigned[i] = name
            at += size
    return [replace(u, split=assigned[i]) for i, u in enumerate(utterances)]


@dataclass(frozen=True)
class SplitAssignment:
    """Result of :func:`assign_split_lists`."""

    # Every input utterance in input order; ``split`` is None for the unlisted ones.
    utterances: tuple[Utterance, ...]
    # Utterance ids that are in no list.
    unlisted: tuple[str, ...]
    # Listed ids with no utterance (e.g. dropped by the reader), per split.
    not_found: Mapping[str, tuple[str, ...]]


def assign_split_lists(
    utterances: Sequence[Utterance], lists: Mapping[str, Iterable[str]]
) -> SplitAssignment:
    """Set ``split`` from given id lists (``{"train": ids, "valid": ids, "test": ids}``).

    Raises:
        ValueError: an unknown split name, an id listed in two splits, or duplicate utterance ids.
    """
    _check_unique(utterances)
    split_of: dict[str, str] = {}
    for name, ids in lists.items():
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        for utt_id in ids:
            if split_of.get(utt_id, name) != name:
                raise InputError(f"id {utt_id!r} is listed in both {split_of[utt_id]!r} and {name!r}")
            split_of[utt_id] = name
    known = {u.id for u in utterances}
    not_found: dict[str, list[str]] = {name: [] for name in lists}
    for utt_id, name in split_of.items():
        if utt_id not in known:
            not_found[name].append(utt_id)
    return SplitAssignment(
        utterances=tuple(replace(u, split=split_of.get(u.id)) for u in utterances),
        unlisted=tuple(u.id for u in utterances if u.id not in split_of),
        not_found={name: tuple(ids) for name, ids in not_found.items()},
    )


def read_split_lists(
    uris: Mapping[str, str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, list[str]]:
    """Read split lists: ``{"train": uri, ...}`` -> ``{"train": [ids], ...}``.

    Each file holds one id per line; blank lines and ``#`` comments are skipped.
    """
    out: dict[str, list[str]] = {}
    for name, uri in uris.items():
        with fsspec.open(uri, "rb", **(storage_options or {})) as f:
            lines = decode_text(f.read()).splitlines()
        out[name] = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    return out


def mesm_split_files(folder_uri: str) -> dict[str, str]:
    """The split list files of MESM's layout: ``<folder>/{train,valid,test}_split.txt``."""
    folder = folder_uri.rstrip("/")
    return {name: f"{folder}/{name}_split.txt" for name in SPLITS}


def _check_unique(utterances: Sequence[Utterance]) -> None:
    duplicates = [i for i, n in Counter(u.id for u in utterances).items() if n > 1]
    if duplicates:
        raise InputError(f"duplicate utterance ids: {duplicates[:5]}")
