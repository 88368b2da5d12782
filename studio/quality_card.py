"""What the quality card says about a run, without Qt (the training panel draws it, the Dreams
tab shows its banner, tests read it directly).

A run's :class:`models.quality.QualityReport` (see that module for how each measure is made)
becomes a :class:`Card`: a headline, rows of ``label · value`` with a one-sentence tooltip each,
the positions of the MMD² bar (floor … model … noise, on a log scale) and the warnings in plain
words. :func:`dreams_banner` is the sentence the Dreams tab shows over the grid when the dreams
have collapsed or copy the training images.

Nothing here imports torch at import time: a report only exists once the engine is loaded, and
the thresholds are read from ``models.quality`` then.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TOOLTIPS", "Card", "CardRow", "bar_positions", "card", "card_for", "dreams_banner", "flags"]

#: One sentence per measure: what it is and which way is good.
TOOLTIPS = {
    "mmd2": ("How far the dreams are, as a whole, from your held-out images (MMD²): lower is better. "
             "The floor is what your own training images score, noise is what random pixels score."),
    "diversity": ("How varied the dreams are next to your held-out images: 1 is as varied, "
                  "near 0 means nearly all dreams are the same image (the chains have collapsed)."),
    "memorisation": ("How far each dream is from its nearest training image, next to how far new images are: "
                     "1 is as new as unseen images, near 0 means the dreams copy training images."),
    "log_likelihood": ("How probable the RBM finds your held-out images, in nats per image (estimated by "
                       "annealed importance sampling): higher is better; compare runs on the same images."),
    "scored": "What the scores were computed on (dreams drawn for it, held-out images) and how long it took.",
    "bar": ("MMD² on a log scale: the floor (your training images against the held-out ones) at the left, "
            "random noise at the right; the dot is this model. Nearer the floor is better."),
}
#: Below this many held-out images the scores are rough (a few images decide them).
FEW_HELDOUT = 20
#: Where the floor and the noise ceiling sit along the bar (fractions of its width).
BAR_FLOOR, BAR_CEILING = 0.12, 0.88


@dataclass(frozen=True)
class CardRow:
    key: str
    label: str
    value: str
    tooltip: str
    warn: bool = False


@dataclass(frozen=True)
class Card:
    """What to show. ``status``: "ready", "scoring", "failed", "none" (a note says why) or
    "hidden" (no card at all: a plain autoencoder, or nothing to say yet)."""

    status: str
    headline: str = ""
    note: str = ""
    rows: tuple[CardRow, ...] = ()
    bar: tuple[float, float, float] | None = None  # floor, model, ceiling positions in [0, 1]
    bar_labels: tuple[str, str] = ("", "")  # under the floor and the noise ends of the bar
    warnings: tuple[str, ...] = ()
    caveat: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def visible(self) -> bool:
        return self.status != "hidden"

    def text(self) -> str:
        """Everything on the card as plain lines (for logs, tests and the clipboard)."""
        lines = [self.headline] if self.headline else []
        if self.note:
            lines.append(self.note)
        if self.bar is not None:
            lines.append(f"MMD² scale: {self.bar_labels[0]} … {self.bar_labels[1]}")
        lines += [f"{r.label}: {r.value}" for r in self.rows]
        lines += list(self.warnings)
        if self.caveat:
            lines.append(self.caveat)
        return "\n".join(lines)


def _get(report: Any, name: str, default: Any = None) -> Any:
    if isinstance(report, dict):
        return report.get(name, default)
    return getattr(report, name, default)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num(x: float) -> str:
    if not _finite(x):
        return "∞" if x == math.inf else "–"
    return f"{x:.3g}"


def flags(report: Any) -> frozenset[str]:
    """Which warnings apply: "collapsed", "copies", "noise" (the report's own thresholds)."""
    from models.quality import COLLAPSE_BELOW, COPIES_BELOW, NOISE_FRACTION

    out = set()
    div, mem = _get(report, "diversity"), _get(report, "memorisation")
    mmd, ceiling = _get(report, "mmd2"), _get(report, "ceiling")
    if isinstance(div, (int, float)) and div < COLLAPSE_BELOW:
        out.add("collapsed")
    if isinstance(mem, (int, float)) and mem < COPIES_BELOW:
        out.add("copies")
    if isinstance(mmd, (int, float)) and isinstance(ceiling, (int, float)) and mmd >= NOISE_FRACTION * ceiling:
        out.add("noise")
    return frozenset(out)


def bar_positions(report: Any) -> tuple[float, float, float] | None:
    """(floor, model, ceiling) along the MMD² bar, each in [0, 1]: log scale with the floor at
    ``BAR_FLOOR`` and the noise at ``BAR_CEILING``; a model better than the floor sits left of
    it, one worse than noise right of it (clamped to the ends). None when the numbers give no
    scale (no noise ceiling above the floor)."""
    floor, mmd, ceiling = (_get(report, k) for k in ("floor", "mmd2", "ceiling"))
    if not all(_finite(v) for v in (floor, mmd, ceiling)) or ceiling <= 0:
        return None
    span = BAR_CEILING - BAR_FLOOR
    if floor > 0 and ceiling > floor:
        lo, hi = math.log(floor), math.log(ceiling)
        x = BAR_FLOOR + span * (math.log(max(mmd, floor * 1e-3)) - lo) / (hi - lo)
    elif ceiling > floor:  # floor 0: a linear scale from 0
        x = BAR_FLOOR + span * mmd / ceiling
    else:
        return None
    return BAR_FLOOR, min(1.0, max(0.0, x)), BAR_CEILING


def card(quality: Any = None, status: str = "", note: str = "", step: int = -1,
         current_step: int | None = None) -> Card:
    """The card for a run: its report (a ``QualityReport`` or its dict), the job's
    ``quality_status`` and ``quality_note``, the step the report is about (see
    :class:`studio.jobs.JobUpdate`) and the model's step now (a report of an earlier step says
    so)."""
    if status == "unavailable" or (not status and not note and quality is None):
        return Card("hidden")
    if status == "scoring":
        return Card("scoring", headline="Quality: scoring…",
                    note="Drawing dreams and comparing them with your held-out images: seconds, "
                         "up to a minute for a binary RBM (its log-likelihood).")
    if status == "failed":
        return Card("failed", headline="Quality: not scored", note=note)
    if quality is None:
        return Card("none", headline="Quality", note=note or "Not scored yet: it is scored when a run ends.")
    if isinstance(quality, dict):  # read back from a checkpoint: the report's own warnings
        from models.quality import QualityReport

        try:
            quality = QualityReport.from_dict(quality)
        except ValueError:
            return Card("failed", headline="Quality: not shown", note="The saved quality report is unreadable.")

    ratio = _get(quality, "mmd2", math.nan) / _get(quality, "floor", math.nan) if _get(quality, "floor", 0) else math.inf
    f = flags(quality)
    mmd = _get(quality, "mmd2")
    times = "" if not _finite(ratio) else f" · {ratio:.1f}× the floor" if ratio < 10 else f" · {ratio:.0f}× the floor"
    rows = [
        CardRow("mmd2", "MMD²", f"{_num(mmd)}{times}", TOOLTIPS["mmd2"], "noise" in f),
        CardRow("diversity", "Diversity", f"{_get(quality, 'diversity'):.2f}  (1 = as varied as your images)",
                TOOLTIPS["diversity"], "collapsed" in f),
        CardRow("memorisation", "Memorisation",
                f"{_get(quality, 'memorisation'):.2f}  (1 = as new as unseen images)",
                TOOLTIPS["memorisation"], "copies" in f),
    ]
    ll = _get(quality, "log_likelihood")
    if ll is not None:
        rows.append(CardRow("log_likelihood", "Log-likelihood", f"{ll:.1f} nats per image",
                            TOOLTIPS["log_likelihood"]))
    n_s, n_h = int(_get(quality, "n_samples", 0)), int(_get(quality, "n_heldout", 0))
    seconds = float(_get(quality, "seconds", 0.0) or 0.0)
    rows.append(CardRow("scored", "Scored on",
                        f"{n_s:,} dreams vs {n_h:,} held-out image{'s' * (n_h != 1)} · {seconds:.1f} s",
                        TOOLTIPS["scored"]))
    warnings = list(quality.warnings()) if hasattr(quality, "warnings") else []
    caveat = (f"Only {n_h} held-out images: rough scores (more images, surer ones)."
              if 0 < n_h < FEW_HELDOUT else "")
    where = f" at step {step:,}" if step >= 0 else ""
    if current_step is not None and step >= 0 and current_step != step and not note:
        note = (f"About the model at step {step:,}; it has trained on since (step {current_step:,}) "
                "and is scored again when the run ends.")
    verdict = "see the warnings" if f else "close to the floor" if _finite(ratio) and ratio < 2 else ""
    headline = f"Quality{where}" + (f" · {verdict}" if verdict else "")
    labels = (f"floor {_num(_get(quality, 'floor'))}", f"noise {_num(_get(quality, 'ceiling'))}")
    return Card("ready", headline=headline, note=note, rows=tuple(rows), bar=bar_positions(quality),
                bar_labels=labels, warnings=tuple(warnings), caveat=caveat, flags=f)


def card_for(info: Any, current_step: int | None = None) -> Card:
    """:func:`card` from a :class:`studio.jobs.JobUpdate` or a job's ``quality_info()`` dict."""
    def get(name: str, default: Any) -> Any:
        return info.get(name, default) if isinstance(info, dict) else getattr(info, name, default)

    return card(get("quality", None), get("quality_status", ""), get("quality_note", ""),
                get("quality_step", -1), current_step=current_step)


def dreams_banner(quality: Any) -> str | None:
    """The Dreams tab's warning for a report whose dreams collapsed or copy the training images,
    in plain words; None when neither applies."""
    if quality is None:
        return None
    f = flags(quality)
    parts = []
    if "collapsed" in f:
        parts.append("These dreams have collapsed: nearly all chains show the same image. "
                     "Try more training or another kind of model.")
    if "copies" in f:
        parts.append("These dreams copy your training images instead of making new ones. "
                     "Try more images, fewer epochs or a smaller model.")
    if not parts:
        return None
    return " ".join(parts) + " (See the quality card in the Training panel.)"
