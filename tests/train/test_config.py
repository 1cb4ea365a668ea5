import pytest

from pairlab.train.config import TrainConfig, dump_config, load_config, make_config


def test_defaults_are_the_fmnist_ntxent_demo():
    cfg = make_config()
    assert cfg.dataset == "fmnist" and cfg.objective == "ntxent" and cfg.views == 2
    assert cfg.eval.knn_k == 20 and cfg.eval.knn_temperature == 0.07


def test_unknown_keys_rejected_with_clear_message(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'epoch'.*Valid top-level keys"):
        make_config({"epoch": 3})
    with pytest.raises(ValueError, match="unknown key 'model.depth'"):
        make_config({"model": {"depth": 3}})
    with pytest.raises(ValueError, match="unknown key 'augment.color_jitter'"):
        make_config({"augment": {"color_jitter": 0.4}})
    p = tmp_path / "c.yaml"
    p.write_text("batchsize: 12\n")
    with pytest.raises(ValueError, match=r"c\.yaml.*unknown key 'batchsize'"):
        load_config(p)


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match=r"lr: .*greater than 0.*-1"):
        make_config({"lr": -1})
    with pytest.raises(ValueError, match="batch_size"):
        make_config({"batch_size": "many"})


def test_yaml_then_flags_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 7\nlr: 0.01\nmodel:\n  widths: [8, 16]\n")
    cfg = load_config(p, {"lr": 0.5, "seed": None, "name": "x"})
    assert cfg.epochs == 7 and cfg.lr == 0.5 and cfg.seed == 0 and cfg.name == "x"
    assert cfg.model.widths == (8, 16) and cfg.model.proj_dim == 64  # nested keys merge


def test_yaml_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "l.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(p)
    p.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(Exception, match="(?i)constructor|tag"):  # safe_load refuses python tags
        load_config(p)


def test_dump_round_trip(tmp_path):
    cfg = make_config({"epochs": 3, "model": {"widths": [8, 16]}, "objective_args": {"aggregation": "log_mean"}})
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg and isinstance(cfg, TrainConfig)
