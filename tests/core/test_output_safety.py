"""Nothing lost: --overwrite replaces only our folders, swaps are all-or-nothing, one run per
folder at a time, dead runs' leftovers are cleaned, written files get the usual modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import runs, staging
from core.events import ArtifactWritten, CancelToken
from core.exporter.builder import build
from core.exporter.errors import ExportError
from core.jsonio import write_json_atomic
from core.training.config import TrainConfig
from core.training.train import run_training
from tests.core.output_helpers import fail_rename_into, hidden_beside, snapshot, usual_modes, write_stub

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _project(folder: Path) -> Path:
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.py").write_text("print('my project')\n", encoding="utf-8")
    (folder / "notes.txt").write_text("keep me\n", encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------- overwrite rule


def test_cli_export_overwrite_into_a_project_folder_is_refused(tmp_path: Path) -> None:
    """The issue's repro: ``export --output-dir . --overwrite`` in a project deleted it all."""
    stub = write_stub(tmp_path / "model")
    project = _project(tmp_path / "project")
    before = snapshot(project)
    result = _cli("-m", "core.cli", "export", "--model-path", str(stub), "--output-dir", ".", "--overwrite", cwd=project)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1 and "not a TinyForge service" in errors[0] and "model_metadata.json" in errors[0]
    assert "Traceback" not in result.stderr
    assert snapshot(project) == before
    assert hidden_beside(project) == []


def test_builder_script_and_api_refuse_a_folder_that_is_not_a_service(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    project = _project(tmp_path / "project")
    before = snapshot(project)
    result = _cli("core/exporter/builder.py", "--model-path", str(stub), "--output-dir", str(project),
                  "--overwrite", cwd=REPO)
    assert result.returncode == 1 and "not a TinyForge service" in result.stderr
    with pytest.raises(ExportError, match="not a TinyForge service"):
        build(stub, project, overwrite=True, export_onnx=True)
    assert snapshot(project) == before and hidden_beside(project) == []


def test_overwrite_replaces_a_service_whole_and_an_empty_folder(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service, export_onnx=True)
    build(stub, service, overwrite=True)  # without ONNX this time: nothing of the old one is left
    assert not (service / "onnx").exists()
    assert (service / "model_metadata.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    build(stub, empty, overwrite=True)
    assert (empty / "model_metadata.json").is_file()
    assert hidden_beside(service) == [] and hidden_beside(empty) == []


def test_cli_export_overwrite_keeps_a_folder_that_only_has_our_marker(tmp_path: Path) -> None:
    """A ``model_metadata.json`` alone does not make a folder ours: ``src/`` beside it stays."""
    stub = write_stub(tmp_path / "model")
    project = _project(tmp_path / "project")
    (project / "model_metadata.json").write_text("{}", encoding="utf-8")
    before = snapshot(project)
    result = _cli("-m", "core.cli", "export", "--model-path", str(stub), "--output-dir", str(project),
                  "--overwrite", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1 and "notes.txt, src" in errors[0] and "did not write" in errors[0], result.stderr
    assert snapshot(project) == before and hidden_beside(project) == []


def test_overwrite_refuses_a_real_service_that_holds_the_users_files(tmp_path: Path) -> None:
    """An exported service records what it wrote; a user's ``.env`` and ``certs/`` stop a replace."""
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service, export_onnx=True)
    owned = json.loads((service / staging.OWNED_LIST).read_text())["entries"]
    assert {"model_metadata.json", "onnx", "onnx/model.onnx", "export_report.json", "app.py"} <= set(owned)
    (service / ".env").write_text("API_KEY=secret\n")
    (service / "certs").mkdir()
    (service / "certs" / "server.pem").write_text("pem")
    (service / "onnx" / "my_notes.txt").write_text("mine")
    before = snapshot(service)
    with pytest.raises(ExportError, match=r"\.env, certs, certs/server\.pem and 1 more, which TinyForge did not write"):
        build(stub, service, overwrite=True)
    assert snapshot(service) == before and hidden_beside(service) == []
    for path in (service / ".env", service / "certs" / "server.pem", service / "onnx" / "my_notes.txt"):
        path.unlink()
    (service / "certs").rmdir()
    (service / "__pycache__").mkdir()  # Python's own, when the service ran: ours to replace
    (service / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
    build(stub, service, overwrite=True)
    assert not (service / "onnx").exists() and not (service / "__pycache__").exists()


def test_a_service_exported_before_the_list_may_hold_only_what_an_export_writes(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service, export_onnx=True)
    (service / staging.OWNED_LIST).unlink()  # as an older version wrote it
    (service / ".env").write_text("API_KEY=secret\n")
    with pytest.raises(ExportError, match=r"\.env, which TinyForge did not write"):
        build(stub, service, overwrite=True)
    (service / ".env").unlink()
    build(stub, service, overwrite=True)
    assert (service / staging.OWNED_LIST).is_file()


def test_the_current_folder_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service)
    before = snapshot(service)
    monkeypatch.chdir(service)
    with pytest.raises(ExportError, match="current folder"):
        build(stub, service, overwrite=True)
    assert snapshot(service) == before


def test_check_replaceable_for_training_outputs(tmp_path: Path) -> None:
    markers, allowed = ["training_report.json"], ["training_report.json", "model"]
    out = tmp_path / "out"
    staging.check_replaceable(out, markers, "training output", allowed)  # absent
    out.mkdir()
    staging.check_replaceable(out, markers, "training output", allowed)  # empty
    (out / "model").mkdir()
    with pytest.raises(staging.OutputFolderError, match="not a TinyForge training output"):
        staging.check_replaceable(out, markers, "training output", allowed)
    (out / "training_report.json").write_text("{}")
    (out / ".DS_Store").write_text("")
    staging.check_replaceable(out, markers, "training output", allowed)
    (out / "my_notes.md").write_text("mine")
    with pytest.raises(staging.OutputFolderError, match="my_notes.md, which TinyForge did not write"):
        staging.check_replaceable(out, markers, "training output", allowed)
    (tmp_path / "file").write_text("x")
    with pytest.raises(staging.OutputFolderError, match="not a folder"):
        staging.check_replaceable(tmp_path / "file", markers, "training output")


# ----------------------------------------------------------------------------- all or nothing


def test_export_swap_failure_leaves_the_previous_service_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service, export_onnx=True)
    before, inode = snapshot(service), service.stat().st_ino
    failures = fail_rename_into(monkeypatch, service)
    with pytest.raises(OSError, match="No space left"):
        build(stub, service, overwrite=True, export_onnx=True, quantize="none")
    assert failures() == 1
    assert snapshot(service) == before and service.stat().st_ino == inode
    assert hidden_beside(service) == [], "staging folder or lock left behind"


def test_run_stage_promote_failure_keeps_the_previous_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = runs.RunOptions(train=TrainConfig(data_path=str(SAMPLE), output_dir="", dry_run=True))
    run = runs.create_run(tmp_path, options, dataset_sha256="ab" * 32)

    def stage(version: str) -> runs.Stage:
        def fn(run: runs.RunFolder, out: Path, on_event, cancel: CancelToken) -> dict:
            path = write_json_atomic(out / f"{version}.json", {"version": version})
            on_event(ArtifactWritten(str(path)))
            return {}

        return runs.Stage("export", "service", fn)

    assert runs.execute_run(run, [stage("v1")]) == "completed"
    before = snapshot(run.service_dir)
    fail_rename_into(monkeypatch, run.service_dir)
    assert runs.execute_run(run, [stage("v2")], overwrite=True) == "failed"
    assert snapshot(run.service_dir) == before
    assert not [p.name for p in run.path.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert runs.execute_run(run, [stage("v3")], overwrite=True) == "completed"
    assert sorted(p.name for p in run.service_dir.iterdir()) == ["v3.json"]


def test_swap_in_restores_an_old_output_left_aside_by_a_killed_run(tmp_path: Path) -> None:
    """A kill between the swap's two renames leaves no target: the next run puts the old one back."""
    target = tmp_path / "svc"
    target.mkdir()
    (target / "model_metadata.json").write_text("{}")
    dead = _dead_pid()
    os.rename(target, tmp_path / f".svc.tinyforge-{dead}-abcd.old")
    (tmp_path / f".svc.tinyforge-{dead}-ef01.partial").mkdir()
    staging.remove_leftovers(target)
    assert (target / "model_metadata.json").is_file()
    assert hidden_beside(target) == []


# ----------------------------------------------------------------------------- locks and leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_export_or_dry_run_into_a_locked_folder_is_refused(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    out = tmp_path / "busy"
    with staging.output_lock(out):
        with pytest.raises(ExportError, match="in use by another TinyForge run .*pid"):
            build(stub, out)
        with pytest.raises(staging.OutputInUseError, match="in use"):
            run_training(SAMPLE, out, dry_run=True)
        assert not out.exists()
    assert hidden_beside(out) == []  # the lock file goes with the lock
    build(stub, out)
    assert (out / "model_metadata.json").is_file()


def test_a_run_executing_elsewhere_is_refused_untouched(tmp_path: Path) -> None:
    options = runs.RunOptions(actions=["train"], train=TrainConfig(data_path=str(SAMPLE), output_dir="", dry_run=True))
    run = runs.create_run(tmp_path, options, dataset_sha256="ab" * 32)
    before = snapshot(run.path)
    with staging.output_lock(run.path), pytest.raises(staging.OutputInUseError, match="in use"):
        runs.execute_run(run, runs.stages_for(["train"]))
    assert snapshot(run.path) == before
    assert runs.execute_run(run, runs.stages_for(["train"])) == "completed"
    assert (run.model_dir / "model_stub.json").is_file() and hidden_beside(run.path) == []


def test_leftovers_of_dead_processes_go_and_live_ones_stay(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    dead = _dead_pid()
    stale = tmp_path / f".svc.tinyforge-{dead}-0a1b2c3d.partial"
    (stale / "onnx").mkdir(parents=True)
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".svc.tinyforge-{live_proc.pid}-0a1b2c3d.partial"
        live.mkdir()
        other = tmp_path / ".svc.someone-elses"  # not a name we write: never touched
        other.mkdir()
        (tmp_path / ".svc.tinyforge.lock").write_text(f"pid {dead} on host since then\n")  # a crashed holder's
        build(stub, service)
        assert not stale.exists() and live.exists() and other.exists()
        assert not (tmp_path / ".svc.tinyforge.lock").exists()
    finally:
        live_proc.kill()
        live_proc.wait()


def test_kill_9_of_a_training_never_leaves_its_folder_stuck(tmp_path: Path) -> None:
    """A real training holds the folder: a second run is refused; after kill -9 the next run
    works at once and removes the dead run's staging folder."""
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "train", "--data", str(SAMPLE), "--out", str(out),
         "--base-model", "tiny-causal", "--epochs", "100000", "--device", "cpu", "--quiet"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.tinyforge-*.partial")):
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            assert time.monotonic() < deadline, "the training never started"
            time.sleep(0.2)
        stub = write_stub(tmp_path / "model")
        second = _cli("-m", "core.cli", "train", "--data", str(SAMPLE), "--out", str(out), "--dry-run", cwd=REPO)
        assert second.returncode == 1 and "in use by another TinyForge run" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        export = _cli("-m", "core.cli", "export", "--model-path", str(stub), "--output-dir", str(out), cwd=REPO)
        assert export.returncode == 1 and "in use" in export.stderr
        assert not out.exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert list(tmp_path.glob(".out.tinyforge-*.partial")), "kill -9 leaves its staging folder"
    third = _cli("-m", "core.cli", "train", "--data", str(SAMPLE), "--out", str(out), "--dry-run", cwd=REPO)
    assert third.returncode == 0, third.stderr
    assert (out / "model_stub.json").is_file()
    assert hidden_beside(out) == [], "the dead run's staging folder (or a lock file) is still there"


def test_self_test_service_dies_with_a_killed_export(tmp_path: Path) -> None:
    stub = write_stub(tmp_path / "model")
    service = tmp_path / "svc"
    build(stub, service)
    # The export process, stopped in its self-test right after the service answered /health.
    script = textwrap.dedent(
        """
        import sys, time
        from core.exporter import serve
        real = serve.start_service_process
        def started(*args, **kwargs):
            process, url = real(*args, **kwargs)
            print(process.pid, flush=True)
            time.sleep(300)
        serve.start_service_process = started
        serve.self_test(sys.argv[1], ["hi"], ["x"], 4)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(service)], cwd=REPO, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    child = 0
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        child = int(line.strip())
        assert staging.pid_alive(child) and not _zombie(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while staging.pid_alive(child) and not _zombie(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not staging.pid_alive(child) or _zombie(child), "the service outlived the killed export"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and staging.pid_alive(child) and not _zombie(child):
            os.kill(child, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


# ----------------------------------------------------------------------------- file modes


def test_written_files_get_the_usual_modes(tmp_path: Path) -> None:
    file_mode, dir_mode = usual_modes()
    model = tmp_path / "model"
    run_training(SAMPLE, model, dry_run=True)
    service = tmp_path / "svc"
    build(model / "model_stub.json", service, export_onnx=True)
    build(model / "model_stub.json", service, export_onnx=True, overwrite=True)
    run = runs.create_run(tmp_path / "runs", runs.RunOptions(train=TrainConfig(data_path=str(SAMPLE), output_dir="")))
    checked = 0
    for folder in (model, service, run.path):
        assert oct(folder.stat().st_mode & 0o777) == oct(dir_mode), folder
        for path in folder.rglob("*"):
            mode = path.stat().st_mode & 0o777
            want = dir_mode if path.is_dir() or path.name == "run.sh" else file_mode
            assert oct(mode) == oct(want), path
            checked += 1
    assert checked > 10
    assert json.loads((service / "model_metadata.json").read_text())["model_stub"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_normalize_modes_follows_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x")
    os.chmod(folder / "a.bin", 0o600)
    os.chmod(folder / "sub", 0o700)
    old = os.umask(0o027)
    try:
        assert staging.current_umask() == 0o027
        staging.normalize_modes(folder)
    finally:
        os.umask(old)
    assert (folder / "a.bin").stat().st_mode & 0o777 == 0o640
    assert (folder / "sub").stat().st_mode & 0o777 == 0o750


def test_a_link_where_the_lock_goes_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """``ln -s victim .out.tinyforge.lock``: neither train nor export writes through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    stub = write_stub(tmp_path / "model")
    for name in ("out", "svc"):
        (tmp_path / f".{name}{staging.LOCK_SUFFIX}").symlink_to(victim)
    result = _cli("-m", "core.cli", "train", "--data", str(SAMPLE), "--out", "out", "--dry-run", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "symbolic link" in result.stderr and str(tmp_path / ".out.tinyforge.lock") in result.stderr
    with pytest.raises(ExportError, match="symbolic link"):
        build(stub, tmp_path / "svc")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "svc").exists()
    os.symlink(tmp_path / "nowhere", tmp_path / f".x{staging.LOCK_SUFFIX}")
    with pytest.raises(staging.OutputFolderError, match="symbolic link"), staging.output_lock(tmp_path / "x"):
        pass
    assert not (tmp_path / "nowhere").exists()


def test_a_killed_starter_conversion_leaves_no_half_copy_behind(tmp_path: Path) -> None:
    """SIGTERM during the starter's first conversion left a .tmp of up to 538 MB in the cache."""
    from core.models.starter import _remove_dead_conversions

    target = tmp_path / "smollm2-135m-instruct"
    dead = tmp_path / f".{target.name}.tinyforge-{_dead_pid()}-ab12.partial"
    live = tmp_path / f".{target.name}.tinyforge-{os.getpid()}-cd34.partial"
    old = tmp_path / f".{target.name}.x1y2z3.tmp"  # an older version's temp folder
    recent = tmp_path / f".{target.name}.q9r8.tmp"
    for folder in (dead, live, old, recent):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 10)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    _remove_dead_conversions(target, staging.remove_leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, recent.name])


def test_a_full_disk_names_the_file_and_leaves_no_empty_folder_or_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk-full errors named no path and left an empty evaluations/ and empty lock files."""
    import errno

    from core.jsonio import write_json_atomic

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out" / "evaluations" / "mine.json"
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match=r"No space left on device \(writing .*mine\.json\)"):
            write_json_atomic(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []  # out/ and out/evaluations/ were ours, and are gone
    real_write = os.write

    def full_for_locks(fd: int, data: bytes) -> int:
        if data.startswith(b"pid "):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_locks)
    with pytest.raises(OSError, match=r"writing the lock file .*\.svc\.tinyforge\.lock"), \
            staging.output_lock(tmp_path / "svc"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_quantizing_without_room_says_so_before_the_quantizer_fails_oddly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short of disk, onnxruntime's quantizer failed with "Failed to find proper ai.onnx domain"."""
    import shutil as shutil_module
    from collections import namedtuple

    from core.exporter import quantize

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(100, 99, 1024))
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"x" * 4096)
    with pytest.raises(OSError, match=r"No space left on device: quantizing model\.onnx needs about .* free"):
        quantize.quantize_int8(graph, tmp_path / "quant" / "q.onnx")
