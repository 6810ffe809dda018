"""The preprocessing cache: entries round-trip, and a killed writer's leftovers are swept."""

from __future__ import annotations

import numpy as np

from medseg.data.cache import PreprocessedCache
from medseg.io.atomic import host_tag
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume


def _case():
    image = Volume(np.random.default_rng(0).normal(size=(12, 10, 8)).astype(np.float32), np.eye(4))
    plan = Plan.from_dataset([(image, None)], {0: "bg", 1: "fg"}, target_spacing=None, crop_foreground=False)
    return plan.apply(image)


def test_entries_round_trip_and_stale_temporaries_are_swept(tmp_path):
    cache = PreprocessedCache(tmp_path)
    key = "ab" + "0" * 30
    folder = cache.path(key).parent
    folder.mkdir(parents=True)
    stale = folder / f".{key}.npz.{host_tag()}-999999999.q1.tmp"  # a writer killed mid-save
    stale.mkdir()
    case = _case()
    cache.save(key, case)
    assert not stale.exists()
    loaded = cache.load(key)
    np.testing.assert_array_equal(loaded.image, case.image)
    assert loaded.record == case.record
