"""``margin_tune.verify``: a saved model on a verification protocol's fixed pairs (LFW's
``pairs.txt``), scored fold by fold as the protocol prescribes; what ``verify`` runs.

Only the images the pairs name are embedded, in the evaluation view the model was trained with.
A model trained on the very dataset it is verified on (LFW with ``split: seeded``) has seen some
of the pairs' identities; the result counts those pairs, and ``classes="test"`` keeps only the
pairs whose two identities are among the model's test classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from margin_tune.pipeline.api.config import Overrides
from margin_tune.pipeline.api.embedding import data_config, load_saved, part_indices
from margin_tune.pipeline.outputs.folders import check_new_file, json_text, write_new_file
from margin_tune.trainables.data import Samples, load_dataset
from margin_tune.trainables.data.files import ImageFiles, ProtocolPairs
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metrics.pairs_protocol import ProtocolReport, protocol_report
from margin_tune.trainables.saved_model import SavedEmbedder

#: Which of the protocol's pairs are scored: every one, or those of two test-class identities.
PAIR_CLASSES = ("all", "test")


@dataclass(frozen=True)
class VerifyResult:
    """The protocol's report, and which pairs it rests on."""

    report: ProtocolReport
    pairs: int
    pairs_with_seen_identities: int
    """Pairs showing an identity of the model's training or validation classes, when the data is
    the dataset the model was trained on (0 otherwise: nothing to tell)."""
    dataset: Samples
    model: SavedEmbedder
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.name,
            "pairs_scored": self.pairs,
            "pairs_with_seen_identities": self.pairs_with_seen_identities,
            **self.report.to_dict(),
        }


def verify(
    model: str | Path,
    overrides: Overrides = (),
    *,
    classes: str = "all",
    out: str | Path | None = None,
    tracking_uri: str | None = None,
) -> VerifyResult:
    """Score the model saved at ``model`` (as :func:`margin_tune.embed` takes it) on the fixed
    pairs of its dataset, or of the dataset ``overrides`` name (e.g.
    ``{"dataset.name": "lfw", "dataset.path": "/data/lfw"}``).

    Args:
        classes: ``all`` pairs, or only ``test``: those whose two identities are both among the
            test classes of the model's own split of this dataset.
        out: a new ``.json`` file for the report; it must not exist. None writes nothing.

    Raises:
        ConfigError: naming ``--model``, ``--set``, ``--classes`` or ``--out``; a dataset
            without protocol pairs names ``dataset.name``.
    """
    if classes not in PAIR_CLASSES:
        raise ConfigError(
            "--classes", f"unknown value {classes!r}; allowed: {', '.join(PAIR_CLASSES)}"
        )
    target = Path(out) if out is not None else None
    if target is not None:
        check_new_file(target, ".json")
    saved = load_saved(model, tracking_uri)
    config = data_config(saved.config, None, overrides)
    dataset = load_dataset(config)
    pairs = dataset.pairs if isinstance(dataset, ImageFiles) else None
    if pairs is None:
        raise ConfigError(
            "dataset.name",
            f"{config.name} has no verification protocol pairs; lfw with a pairs.txt has",
        )
    own = config == saved.config.dataset
    seen = _seen(dataset, saved, pairs) if own else np.zeros(len(pairs.first), dtype=bool)
    if classes == "test":
        if not own:
            raise ConfigError(
                "--classes", "test needs the dataset the model was trained on (no --set)"
            )
        chosen = ~seen
    else:
        chosen = np.ones(len(pairs.first), dtype=bool)
    first, second = pairs.first[chosen], pairs.second[chosen]
    used, inverse = np.unique(np.concatenate([first, second]), return_inverse=True)
    embeddings = saved.embed_samples(dataset, used)
    left, right = embeddings[inverse[: len(first)]], embeddings[inverse[len(first) :]]
    scores = -np.linalg.norm(left.astype(np.float64) - right, axis=1)
    try:
        report = protocol_report(scores, pairs.same[chosen], pairs.fold[chosen])
    except ValueError as error:
        raise ConfigError("--classes", f"{classes}: {error}") from None
    result = VerifyResult(report, int(chosen.sum()), int(seen[chosen].sum()), dataset, saved)
    if target is not None:
        text = json_text(result.to_dict()) + "\n"
        write_new_file(target, lambda path: path.write_text(text, encoding="utf-8"))
        result = VerifyResult(
            report, result.pairs, result.pairs_with_seen_identities, dataset, saved, target
        )
    return result


def _seen(dataset: Samples, saved: SavedEmbedder, pairs: ProtocolPairs) -> np.ndarray:
    """Whether each pair shows an identity outside the model's test classes."""
    test = np.zeros(len(dataset.labels), dtype=bool)
    test[part_indices(dataset, saved.config)["test"]] = True
    return ~(test[pairs.first] & test[pairs.second])
