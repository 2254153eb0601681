"""Configuration: defaults < TOML file < environment < flags, and where the data directory comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.config import REPO_ROOT, default_data_dir, load_config
from data.errors import DataError

TOML = """
gpu_workers = 2
run_dir = "from-file"

[lean]
workers = 5
timeout_s = 60

[model]
backend = "vllm"
model = "file/model"
"""


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./subgoal.toml unless a test writes one
    return tmp_path


def test_defaults(in_tmp):
    cfg = load_config(environ={})
    assert cfg.gpu_workers == 1 and cfg.run_dir == Path("runs") and cfg.proverbench_path is None
    assert cfg.model.backend == "transformers" and cfg.model.model is None
    assert cfg.lean.workers >= 1 and cfg.lean.timeout_s == 300.0 and cfg.lean.repl_path is None


def test_precedence_defaults_file_env_flags(in_tmp):
    path = in_tmp / "conf.toml"
    path.write_text(TOML)
    from_file = load_config(path, environ={})
    assert (from_file.gpu_workers, from_file.lean.workers, from_file.model.backend) == (2, 5, "vllm")
    assert from_file.lean.timeout_s == 60 and from_file.lean.memory_mb == 8192  # untouched keys keep defaults
    env = {"SUBGOAL_GPU_WORKERS": "3", "SUBGOAL_LEAN__TIMEOUT_S": "12.5", "SUBGOAL_MODEL__BACKEND": "openai",
           "SUBGOAL_UNRELATED_THING": "ignored", "OTHER": "x"}  # fmt: skip
    from_env = load_config(path, environ=env)
    assert (from_env.gpu_workers, from_env.lean.timeout_s, from_env.model.backend) == (3, 12.5, "openai")
    assert from_env.lean.workers == 5 and from_env.model.model == "file/model"  # file still fills the rest
    flags = {"gpu_workers": 4, "run_dir": None, "model": {"model": "flag/model", "backend": None}}
    from_flags = load_config(path, overrides=flags, environ=env)
    assert from_flags.gpu_workers == 4 and from_flags.model.model == "flag/model"
    assert (
        from_flags.run_dir == Path("from-file") and from_flags.model.backend == "openai"
    )  # None = flag not given


def test_config_file_discovery(in_tmp):
    (in_tmp / "elsewhere.toml").write_text("gpu_workers = 7\n")
    assert load_config(environ={"SUBGOAL_CONFIG": str(in_tmp / "elsewhere.toml")}).gpu_workers == 7
    (in_tmp / "subgoal.toml").write_text("gpu_workers = 6\n")
    assert load_config(environ={}).gpu_workers == 6  # ./subgoal.toml
    assert load_config(in_tmp / "elsewhere.toml", environ={}).gpu_workers == 7  # an explicit path wins


@pytest.mark.parametrize(
    "toml, env, needle",
    [
        ("gpu_workers = 1\nnot_a_key = 3\n", {}, "bad configuration value not_a_key"),
        ("[lean]\nworkers = 0\n", {}, "bad configuration value lean.workers"),
        ("", {"SUBGOAL_GPU_WORKERS": "many"}, "bad configuration value gpu_workers"),
        ("", {"SUBGOAL_MODEL__BACKEND": "tpu"}, "bad configuration value model.backend"),
        ("gpu_workers = = 2\n", {}, "conf.toml"),
    ],
)
def test_bad_configuration_is_one_data_error(in_tmp, toml, env, needle):
    path = in_tmp / "conf.toml"
    path.write_text(toml)
    with pytest.raises(DataError) as e:
        load_config(path, environ=env)
    assert needle in str(e.value)


def test_missing_config_file(in_tmp):
    with pytest.raises(DataError, match="does not exist"):
        load_config(in_tmp / "absent.toml", environ={})


def test_data_dir_resolution(in_tmp, monkeypatch):
    # 1. the environment wins
    assert default_data_dir({"SUBGOAL_DATA_DIR": "/some/where"}) == Path("/some/where")
    assert load_config(environ={"SUBGOAL_DATA_DIR": "/some/where"}).data_dir == Path("/some/where")
    # 2. ../shared/benchmarks beside the checkout
    checkout = in_tmp / "ws" / "main"
    (in_tmp / "ws" / "shared" / "benchmarks").mkdir(parents=True)
    checkout.mkdir()
    assert default_data_dir({}, repo_root=checkout, cwd=in_tmp) == in_tmp / "ws" / "shared" / "benchmarks"
    # ... or beside the working directory
    assert (
        default_data_dir({}, repo_root=in_tmp / "nowhere", cwd=checkout)
        == in_tmp / "ws" / "shared" / "benchmarks"
    )
    # 3. else ./data
    assert default_data_dir({}, repo_root=in_tmp / "nowhere", cwd=in_tmp) == in_tmp / "data"
    # the real checkout: the shared reference data sits beside it here
    if (REPO_ROOT.parent / "shared" / "benchmarks").is_dir():
        monkeypatch.delenv("SUBGOAL_DATA_DIR", raising=False)
        assert load_config(environ={}).data_dir == REPO_ROOT.parent / "shared" / "benchmarks"
    # file < env < flag for data_dir too
    (in_tmp / "subgoal.toml").write_text('data_dir = "from-file"\n')
    assert load_config(environ={}).data_dir == Path("from-file")
    assert load_config(environ={"SUBGOAL_DATA_DIR": "from-env"}).data_dir == Path("from-env")
    assert load_config(
        overrides={"data_dir": Path("flag")}, environ={"SUBGOAL_DATA_DIR": "x"}
    ).data_dir == Path("flag")


def test_unreadable_config_file(in_tmp):
    with pytest.raises(DataError, match="config file .*: cannot read"):
        load_config(in_tmp, environ={})  # a directory
    (in_tmp / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8"):
        load_config(in_tmp / "bad.toml", environ={})
