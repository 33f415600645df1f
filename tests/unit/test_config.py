import pytest

from facecluster.config import dump_config
from facecluster.errors import ConfigError
from facecluster.resolve import build_config, load_config


def test_study_preset_holds_the_study_settings():
    config = build_config("study")
    assert config.methods["meanshift"].params == {"quantile": 0.0855}
    assert config.methods["birch"].params == {"n_clusters": 4, "threshold": 0.08}
    assert config.reduce.n_components == 2
    assert config.features.extractor == "facenet"


def test_toml_overrides_any_setting(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[faces]\nmargin = 0.3\n[methods.birch]\nalgorithm = "birch"\n'
                    '[methods.birch.params]\nthreshold = 0.05\nn_clusters = 4\n'
                    '[methods.kmeans]\nalgorithm = "kmeans"\nparams = { n_clusters = 2 }\n')
    config = load_config(path)
    assert config.faces.margin == 0.3
    assert config.reduce.n_components == 2  # the rest stays the preset's
    assert config.methods["birch"].params["threshold"] == 0.05
    assert set(config.methods) == {"birch", "kmeans"}  # listed methods replace the preset's


def test_manual_mapping_is_read(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[methods.birch]\nalgorithm = "birch"\nmapping = { "0" = "real", "1" = "fake" }\n')
    assert load_config(path).methods["birch"].mapping == {"0": "real", "1": "fake"}


@pytest.mark.parametrize("text, key", [
    ("[faces]\nmargn = 0.3\n", "faces.margn: unknown key"),
    ("[faces]\nmargin = 'wide'\n", "faces.margin"),
    ("[faces]\nmargin = -1\n", "faces.margin"),
    ("[methods.x]\nalgorithm = 'nope'\n", "methods.x.algorithm"),
    ("seed = [1\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


def test_resolved_config_round_trips(tmp_path):
    config = build_config("study", {"seed": 3, "faces": {"margin": 0.25}})
    path = tmp_path / "resolved.toml"
    path.write_text(dump_config(config))
    assert load_config(path, preset=None) == config


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config("nope")
