"""Features: run the backbone once per dataset, cache pooled features and logits on disk.

``extract(model, dataset)`` returns a :class:`FeatureSet`; :class:`FeatureCache` lists and
clears what is cached; ``save_featureset`` / ``load_featureset`` read and write the format.
"""

from shapeood.features.cache import CacheEntry, FeatureCache, default_cache_dir
from shapeood.features.extraction import as_feature_model, describe, extract
from shapeood.features.featureset import FeatureSet
from shapeood.features.keys import weights_hash
from shapeood.features.store import load_featureset, save_featureset

__all__ = [
    "CacheEntry",
    "FeatureCache",
    "FeatureSet",
    "as_feature_model",
    "default_cache_dir",
    "describe",
    "extract",
    "load_featureset",
    "save_featureset",
    "weights_hash",
]
