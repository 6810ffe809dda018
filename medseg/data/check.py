"""``medseg manifest check``: validate every case before training, reporting all problems."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.cases import load_case
from medseg.data.manifest import Manifest
from medseg.errors import MedsegError
from medseg.progress import track


@dataclass
class Problem:
    """One problem found in a manifest."""

    case: str
    message: str

    def __str__(self) -> str:
        return f"{self.case}: {self.message}"


def check_manifest(manifest: Manifest, require_labels: bool = True) -> list[Problem]:
    """Check that every file exists and loads, image and label grids agree, label values
    belong to the declared classes and channels agree. Returns every problem found."""
    problems: list[Problem] = []
    classes = set(manifest.labels)
    for case in track(manifest.cases, "checking cases"):
        missing = [p for p in case.images if not Path(p).exists()]
        if case.label and not Path(case.label).exists():
            missing.append(case.label)
        if missing:
            for m in missing:
                kind = "label" if m == case.label else "image"
                problems.append(Problem(case.id, f"{kind} file not found: {m}"))
            continue
        if require_labels and not case.label and case.split != "test":
            problems.append(Problem(case.id, "no label given (only test cases may lack one)"))
        try:
            loaded = load_case(case, manifest)
        except MedsegError as exc:
            problems.append(Problem(case.id, str(exc).removeprefix(f"case {case.id}: ")))
            continue
        if loaded.label is not None:
            values = set(np.unique(loaded.label.array).tolist())
            extra = sorted(values - classes)
            if extra:
                problems.append(
                    Problem(case.id, f"label values {extra} are not declared classes {sorted(classes)}")
                )
        if not np.all(np.isfinite(loaded.image.array)):
            problems.append(Problem(case.id, "image holds NaN or infinite values"))
    return problems + group_split_problems(manifest)


def group_split_problems(manifest: Manifest) -> list[Problem]:
    """Groups (patients) whose cases sit in different splits: the held-out or validation cases
    would share a patient with the training cases (a leak that flatters every score)."""
    splits: dict[str, set[str]] = {}
    for case in manifest.cases:
        if case.group:
            splits.setdefault(case.group, set()).add(case.split or "train")
    return [
        Problem(
            group, f"group (patient) has cases in several splits ({', '.join(sorted(s))}): keep them in one"
        )
        for group, s in sorted(splits.items())
        if len(s) > 1
    ]


def require_valid(manifest: Manifest, source: str) -> None:
    """Raise one error listing every problem, or return when the manifest is valid."""
    problems = check_manifest(manifest)
    if problems:
        listing = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise MedsegError(
            f"manifest {source} has {len(problems)} problem(s): {listing}{more}",
            hint=f"run 'medseg manifest check {source}' for the full list and fix them",
        )
