"""The trainer's commands on bad input: one line on stderr, exit 2, no traceback, before any MindSpore work.
Plus demo-data, which is fast enough to run for real."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from incv4.operator.cli import main

DEMO = "configs/inception_v4_cpu_demo.yaml"


def _one_line_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_demo_data_writes_a_train_and_val_image_folder(demo_data):
    assert sorted(os.listdir(demo_data / "train")) == sorted(os.listdir(demo_data / "val"))
    assert len(os.listdir(demo_data / "train")) == 3
    assert all(len(os.listdir(demo_data / "train" / c)) == 2 for c in os.listdir(demo_data / "train"))


def test_demo_data_refuses_a_folder_that_is_not_a_demo_dataset(tmp_path):
    (tmp_path / "precious.txt").write_text("not a dataset")
    _one_line_usage_error(_run("demo-data", str(tmp_path)), str(tmp_path))


def test_train_missing_recipe_file(repo_root, tmp_path):
    _one_line_usage_error(_run("train", "-c", str(tmp_path / "nope.yaml"), "--workers", "1"), "nope.yaml",
                          "not found")


def test_train_unknown_override_key_suggests_the_right_one(repo_root, demo_data):
    _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data),
                               "--set", "batch_sise=8", "--workers", "1"), "batch_sise", "batch_size")


def test_train_impossible_value(repo_root, demo_data):
    _one_line_usage_error(_run("train", "--config", str(repo_root / DEMO), "--data_dir", str(demo_data),
                               "--set", "batch_size=0", "--distribute", "False"), "batch_size")


def test_train_missing_data_dir(repo_root, tmp_path):
    _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(tmp_path / "absent"),
                               "--workers", "1"), "data_dir", "absent")


def test_train_missing_val_split(repo_root, tmp_path, demo_data):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data / "train", data / "train")
    _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(data), "--workers", "1"),
                          "val")


def test_train_bad_images_are_named(repo_root, tmp_path, demo_data):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    first_class = sorted(os.listdir(data / "train"))[0]
    (data / "train" / first_class / "broken.JPEG").write_bytes(b"this is not a jpeg")
    line = _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(data),
                                      "--workers", "1"))
    assert "broken.JPEG" in line


def test_distribute_false_contradicting_workers(repo_root, demo_data):
    _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data),
                               "--distribute", "False", "--workers", "4"), "--distribute False")


def test_validate_needs_a_checkpoint(repo_root, demo_data, tmp_path):
    _one_line_usage_error(_run("validate", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data)), "ckpt_path")
    _one_line_usage_error(_run("validate", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data),
                               "--ckpt_path", str(tmp_path / "missing.ckpt")), "missing.ckpt")


def test_validate_rejects_an_unknown_output_format(repo_root, demo_data):
    result = _run("validate", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data), "--ckpt-path", "x",
                  "-o", "xml")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_worker_module_reports_a_bad_recipe_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "incv4.trainer.training.worker", "--config",
                           str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: recipe file '{tmp_path / 'nope.yaml'}': not found"]


def test_cli_errors_never_import_mindspore(repo_root, tmp_path):
    code = ("import sys; from click.testing import CliRunner; from incv4.operator.cli import main; "
            f"r = CliRunner().invoke(main, ['train', '-c', {str(repo_root / DEMO)!r}, '--data-dir', "
            f"{str(tmp_path / 'absent')!r}, '--workers', '1']); "
            "assert r.exit_code == 2, r.output; assert 'mindspore' not in sys.modules, 'mindspore imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_demo_whose_training_wrote_no_checkpoint_says_so(tmp_path, monkeypatch):
    # The trainer goes on when a checkpoint write fails (a full disk: its own error line says so); the demo reads
    # its result from the checkpoint manifest, so it must name the missing checkpoint, not a missing evaluation.
    from incv4.trainer import cli as trainer_cli

    calls = []
    monkeypatch.setattr(trainer_cli, "run_training", lambda *args, **kwargs: calls.append(args) or 0)
    result = _run("demo", "--work-dir", str(tmp_path / "demo"), "--train-per-class", "1", "--val-per-class", "1")
    assert len(calls) == 1 and result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: the demo finished but wrote no checkpoint in {tmp_path / 'demo' / 'ckpt'}, so no "
                     f"evaluation was recorded (see the checkpoint error above)"]


@pytest.fixture
def busy_port():
    """A port something else listens on, on every address (as the metrics exporter would)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_train_on_a_busy_metrics_port_is_one_line_and_exit_2(repo_root, demo_data, busy_port):
    line = _one_line_usage_error(_run("train", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data),
                                      "--workers", "2", "--metrics-port", str(busy_port)),
                                 f"port {busy_port}", "give --metrics-port 0")
    assert line.startswith("error: cannot serve metrics")


def test_demo_on_a_busy_metrics_port_is_one_line_and_exit_2(tmp_path, busy_port):
    result = _run("demo", "--work-dir", str(tmp_path / "demo"), "--train-per-class", "1", "--val-per-class", "1",
                  "--metrics-port", str(busy_port))
    _one_line_usage_error(result, f"port {busy_port}", "give --metrics-port 0")


def _ipv6_listener(address: str) -> socket.socket:
    """A listener on an IPv6 address only (IPV6_V6ONLY on): invisible to an IPv4-only check."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, 0))
    except OSError as err:
        sock.close()
        pytest.skip(f"no IPv6 on this host ({err})")
    sock.listen(1)
    return sock


def _check_exit(port: int, capsys):
    from incv4.trainer.cli import _check_metrics_port

    with pytest.raises(SystemExit) as info:
        _check_metrics_port(port)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("address", ["::", "::1"])
def test_a_metrics_port_held_on_ipv6_only_is_reported_taken(address, capsys):
    with _ipv6_listener(address) as held:
        port = held.getsockname()[1]
        code, err = _check_exit(port, capsys)
    assert code == 2
    assert err == (f"error: cannot serve metrics on port {port}: Address already in use "
                   f"(give --metrics-port 0 to turn metrics off)\n")


def test_a_metrics_port_held_on_ipv4_is_reported_taken_by_the_dual_stack_check(busy_port, capsys):
    code, err = _check_exit(busy_port, capsys)
    assert code == 2 and err.count("\n") == 1 and f"port {busy_port}: Address already in use" in err


def test_without_ipv6_the_check_falls_back_to_ipv4(busy_port, monkeypatch, capsys):
    from incv4.trainer import cli

    def no_ipv6(*args, **kwargs):
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    real_socket = socket.socket
    monkeypatch.setattr(socket, "socket", lambda family=socket.AF_INET, *rest: (
        no_ipv6() if family == socket.AF_INET6 else real_socket(family, *rest)))
    code, err = _check_exit(busy_port, capsys)
    assert code == 2 and f"port {busy_port}: Address already in use" in err
    with socket.create_server(("127.0.0.1", 0)) as free:  # closed again before the check binds it
        port = free.getsockname()[1]
    assert cli._check_metrics_port(port) is None and capsys.readouterr().err == ""


def test_a_free_metrics_port_passes_the_check_and_is_let_go(capsys):
    from incv4.trainer.cli import _check_metrics_port

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert _check_metrics_port(port) is None and capsys.readouterr().err == ""
    with socket.create_server(("127.0.0.1", port)):  # the check let go of it
        pass


def test_every_entry_point_serves_metrics_on_the_contract_port_by_default():
    import click

    from incv4.trainer import contract

    for name in ("train", "demo", "launch", "render", "submit"):
        command = main.get_command(click.Context(main), name)
        [port] = [p for p in command.params if p.name == "metrics_port"]
        assert port.default == contract.METRICS_PORT, name


def test_distribute_false_alone_means_one_worker(repo_root, demo_data, monkeypatch):
    from incv4.trainer import cli as trainer_cli

    calls = []
    monkeypatch.setattr(trainer_cli, "run_training", lambda *args: calls.append(args) or 0)
    result = _run("train", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data), "--distribute", "False")
    assert result.exit_code == 0, result.output
    assert calls[0][3] == 1  # workers
    result = _run("train", "-c", str(repo_root / DEMO), "--data-dir", str(demo_data), "--distribute", "False",
                  "--workers", "1")
    assert result.exit_code == 0 and calls[1][3] == 1


def test_mindcvs_distribute_flag_sets_the_recipe_key(repo_root, demo_data, monkeypatch, tmp_path):
    """`--distribute True` is MindCV's flag over the recipe file's `distribute`, never accepted and ignored."""
    from incv4.trainer import cli as trainer_cli

    calls = []
    monkeypatch.setattr(trainer_cli, "run_training", lambda *args: calls.append(args) or 0)
    lone = tmp_path / "lone.yaml"
    lone.write_text((repo_root / DEMO).read_text().replace("distribute: True", "distribute: False", 1))
    result = _run("train", "-c", str(lone), "--data-dir", str(demo_data), "--distribute", "True", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert calls[0][1][-1] == "distribute=True" and calls[0][3] == 2
    _run("train", "-c", str(lone), "--data-dir", str(demo_data), "--distribute", "False")
    assert calls[1][1][-1] == "distribute=False" and calls[1][3] == 1
