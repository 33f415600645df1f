"""facecluster: cluster face embeddings and measure how well clusters separate real from fake faces."""

from facecluster.cluster import CLUSTERERS, QuantileMeanShift, make_clusterer
from facecluster.config import Config, ConfigError, build_config, load_config
from facecluster.dataset import Dataset, DatasetError, Sample, discover
from facecluster.evaluate import majority_mapping, score
from facecluster.pipeline import run
from facecluster.store import FeatureStore

__version__ = "0.1.0"

__all__ = [
    "CLUSTERERS", "Config", "ConfigError", "Dataset", "DatasetError", "FeatureStore", "QuantileMeanShift",
    "Sample", "build_config", "discover", "load_config", "majority_mapping", "make_clusterer", "run", "score",
]
