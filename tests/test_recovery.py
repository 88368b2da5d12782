"""Nothing lost, nothing left behind: a finished run that cannot be written where asked goes to
the recovery folder (and loads from there), a save killed with SIGKILL leaves no partial target
and its temporaries are swept at the next start, and outputs never write through a planted link.

Everything here is deterministic: a "full disk" is a file-size limit (RLIMIT_FSIZE, SIGXFSZ
ignored, so writes fail with EFBIG as on a full disk), Ctrl+C is a real SIGINT the process sends
itself at a chosen point, and a save is killed while a test hook holds it inside the write.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import models.atomic as atomic
from models.checkpoint import load_checkpoint, save_checkpoint
from studio import cli
from studio.cli import main

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="signals, rlimits and PIDs as on POSIX")


@pytest.fixture(autouse=True)
def private_places(tmp_path, monkeypatch):
    """Each test its own data folder (recovery, journal) and temp dir."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    return temp


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """30 16×16 images of bars."""
    d = tmp_path_factory.mktemp("bars")
    rng = np.random.default_rng(0)
    for i in range(30):
        a = np.zeros((16, 16), np.uint8)
        k = rng.integers(2, 14)
        if i % 2:
            a[:, k - 2 : k + 2] = 255
        else:
            a[k - 2 : k + 2, :] = 255
        Image.fromarray(a).save(d / f"bar_{i:02d}.png")
    return d


TRAIN = ["--size", "16", "--hidden", "24", "--epochs", "2", "--batch-size", "10", "--seed", "1", "-q"]


def recovered(err: str) -> Path:
    """The recovery file the one-sentence message names."""
    line = next(x for x in err.splitlines() if x.startswith("harmonium: could not write"))
    return Path(line.split(" was saved to ", 1)[1].split(" instead", 1)[0])


def same_weights(a: Path, b: Path) -> bool:
    ta = {k: v for k, v in load_file(a).items() if not k.startswith("trainer.")}
    tb = {k: v for k, v in load_file(b).items() if not k.startswith("trainer.")}
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# ------------------------------------------------------------------------ recovery of a run
@posix_only
def test_full_disk_puts_the_trained_model_in_the_recovery_folder(folder, tmp_path):
    """A file-size limit between the model's size and the resumable checkpoint's: the target and
    the full recovery copies fail (EFBIG, as a full disk), the model alone fits; the message names
    it, the exit status is 1, no traceback, no partial file, and it is the model that was trained."""
    full = tmp_path / "full.safetensors"
    assert main(["train", str(folder), *TRAIN, "--out", str(full)]) == 0
    ck = load_checkpoint(full)
    alone = save_checkpoint(tmp_path / "alone.safetensors", ck.model, preprocess=ck.preprocess,
                            extra=ck.meta["extra"])
    small, big = alone.stat().st_size, full.stat().st_size
    assert big > small + 4096  # the training state (momentum, chains) is what does not fit
    limit = (small + big) // 2

    out = tmp_path / "disk" / "model.safetensors"
    out.parent.mkdir()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        from studio.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    r = subprocess.run([sys.executable, "-c", script, "train", str(folder), *TRAIN, "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    where = recovered(r.stderr)
    assert f"could not write {out} (File too large)" in r.stderr
    assert "without its training state" in r.stderr
    assert where.parent == tmp_path / "xdg" / "harmonium" / "recovery"
    assert list(out.parent.iterdir()) == []  # no partial target, no temporary
    assert same_weights(where, full)
    assert load_checkpoint(where).kind == "rbm"


def test_out_that_became_a_folder_during_training_is_recovered_resumable(folder, tmp_path, capsys, monkeypatch):
    """`--out` naming a folder is refused before training; one that turns into a folder while
    training (here: the start-up check skipped) sends the whole resumable checkpoint to the
    recovery folder, and training resumes from it."""
    out = tmp_path / "taken"
    out.mkdir()
    assert main(["train", str(folder), *TRAIN, "--out", str(out)]) == 2
    assert "is a folder; name the checkpoint file to write" in capsys.readouterr().err

    monkeypatch.setattr(cli, "check_out", lambda out: None)
    assert main(["train", str(folder), *TRAIN, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"could not write {out} (" in err
    where = recovered(err)
    assert f"resume it with --resume {where}" in err
    assert list(out.iterdir()) == []
    more = tmp_path / "more.safetensors"
    assert main(["train", str(folder), "--resume", str(where), "--epochs", "3", "--out", str(more), "-q"]) == 0
    assert len(load_checkpoint(more).history) == 3


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--epochs", "1", "--out", str(blocker / "sub" / "m.safetensors"), "-q"]) == 2
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            assert main(["train", "--epochs", "1", "--out", str(ro / "m.safetensors"), "-q"]) == 2
            assert "is read-only or not yours" in capsys.readouterr().err
        finally:
            ro.chmod(0o755)


class _Stopper:
    """Wraps a trainer's run so that the process sends itself a real SIGINT after `after` events
    (the person's first Ctrl+C), and safetensors' writer so that it sends one more SIGINT from
    inside each of the first `saves` writes (Ctrl+C pressed again while saving)."""

    def __init__(self, monkeypatch, after: int, saves: int) -> None:
        import models.factory
        import safetensors.torch

        self.writes: list[str] = []
        build, real_save = models.factory.build, safetensors.torch.save_file

        def build_and_wrap(*a, **k):
            trainer = build(*a, **k)
            run = trainer.run

            def interrupted_run():
                for i, ev in enumerate(run()):
                    yield ev
                    if i + 1 == after:
                        os.kill(os.getpid(), signal.SIGINT)

            trainer.run = interrupted_run
            return trainer

        def save_file(tensors, filename, metadata=None):
            real_save(tensors, filename, metadata=metadata)
            self.writes.append(str(filename))
            if len(self.writes) <= saves:
                os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt right here

        monkeypatch.setattr(models.factory, "build", build_and_wrap)
        monkeypatch.setattr(safetensors.torch, "save_file", save_file)


@posix_only
def test_second_ctrl_c_during_the_save_sends_the_model_to_recovery(folder, tmp_path, capsys, monkeypatch):
    """Ctrl+C stops training; Ctrl+C again during the save abandons the target; the recovery copy
    is written with Ctrl+C ignored (a third press, sent from inside that write, changes nothing)."""
    stopper = _Stopper(monkeypatch, after=1, saves=2)
    out = tmp_path / "m.safetensors"
    assert main(["train", str(folder), *TRAIN, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "stopped at step" in err and "interrupted by Ctrl+C" in err and "Traceback" not in err
    where = recovered(err)
    assert len(stopper.writes) == 2 and not out.exists()
    ck = load_checkpoint(where)
    assert ck.meta["extra"]["note"] == "interrupted" and ck.meta["trainer"]["step"] == 1
    assert list(tmp_path.glob(".*")) == []  # the abandoned temporary is gone


# ------------------------------------------------------------------------------ kill -9
BLOCKING_SAVE = textwrap.dedent("""
    import sys
    import safetensors.torch as st
    from models.atomic import work_dir
    from models.checkpoint import save_checkpoint
    from models.rbm import BernoulliRBM, RBMConfig

    real = st.save_file
    holder = work_dir("save")  # a project save's work folder, as studio.project makes
    work = holder.name

    def blocking(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        print(filename, work, sep="\\n", flush=True)
        sys.stdin.read()  # held inside the save until the test kills the process

    st.save_file = blocking
    import models.checkpoint as ck
    if hasattr(ck, "save_file"):  # should the module bind the writer at import
        ck.save_file = blocking
    save_checkpoint(sys.argv[1], BernoulliRBM(RBMConfig(n_visible=784, n_hidden=1000, image_shape=(1, 28, 28))))
""")


@posix_only
def test_kill_9_during_a_save_leaves_the_old_file_and_the_next_start_sweeps(tmp_path, private_places, capsys):
    target = tmp_path / "models" / "m.safetensors"
    save_checkpoint(target, tiny_rbm())
    before = target.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", BLOCKING_SAVE, str(target)], cwd=ROOT, env={**os.environ},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        written = Path(child.stdout.readline().strip())
        work = Path(child.stdout.readline().strip())
        assert written.is_file() and written.stat().st_size > 3_000_000, child.stderr.read() if child.poll() else ""
    finally:
        child.kill()  # SIGKILL: no cleanup of any kind runs
        child.wait(timeout=30)
        child.stdout.close(), child.stderr.close(), child.stdin.close()
    assert target.read_bytes() == before  # the old checkpoint, whole
    left = [p for p in target.parent.iterdir() if p != target]
    assert len(left) == 1 and atomic.TEMP_RE.fullmatch(left[0].name) and left[0] == written.parent
    assert work.is_dir() and work.parent == private_places
    journal = tmp_path / "xdg" / "harmonium" / "pending"
    assert len(list(journal.iterdir())) == 1

    bystanders = [private_places / f"harmonium-save-{os.getpid()}-alive123",  # a live writer's
                  private_places / "harmonium-recovery-0", private_places / "other-tool-123"]
    for b in bystanders:
        b.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scan", str(empty)]) == 0  # the next start of the CLI
    capsys.readouterr()
    assert sorted(target.parent.iterdir()) == [target] and target.read_bytes() == before
    assert not work.exists() and list(journal.iterdir()) == []
    assert all(b.is_dir() for b in bystanders)


def tiny_rbm():
    from models.rbm import BernoulliRBM, RBMConfig

    return BernoulliRBM(RBMConfig(n_visible=16, n_hidden=4, image_shape=(1, 4, 4)))


@posix_only
def test_sweep_removes_only_what_dead_writers_of_ours_left(tmp_path, private_places):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)  # that process has ended: its PID is free (or reused by a younger one)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    journal = tmp_path / "xdg" / "harmonium" / "pending"
    journal.mkdir(parents=True)
    stale = tmp_path / f".m.safetensors.{pid}.0123456789ab.tmp"
    stale.write_bytes(b"half")
    (journal / f"{pid}.aaaaaaaaaaaa").write_bytes(os.fsencode(stale))
    (journal / f"{pid}.bbbbbbbbbbbb").write_bytes(os.fsencode(victim / "keep.txt"))  # not our pattern
    live = tmp_path / f".n.png.{os.getpid()}.0123456789ab.tmp"
    live.write_bytes(b"in flight")
    (journal / f"{os.getpid()}.cccccccccccc").write_bytes(os.fsencode(live))
    link = private_places / f"harmonium-save-{pid}-linkname"
    link.symlink_to(victim)  # planted: never followed
    old = private_places / f"harmonium-save-{pid}-abcdefgh"
    (old / "member").mkdir(parents=True)

    removed = atomic.sweep_stale()
    assert sorted(removed) == sorted([stale, old])
    assert not stale.exists() and not old.exists()
    assert (victim / "keep.txt").read_text() == "keep" and link.is_symlink() and live.exists()
    assert sorted(p.name for p in journal.iterdir()) == [f"{os.getpid()}.cccccccccccc"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times from /proc")
def test_a_reused_pid_does_not_keep_an_older_temporary(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert atomic.writer_alive(child.pid, time.time())  # written after it started: may be its
        assert not atomic.writer_alive(child.pid, time.time() - 3600)  # written before it existed
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdin.close()
    assert not atomic.writer_alive(child.pid, time.time())


def test_data_dir_honours_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "d"))
    assert atomic.recovery_dir() == tmp_path / "d" / "harmonium" / "recovery"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/not/allowed")
    if sys.platform.startswith("linux"):
        assert atomic.data_dir() == Path.home() / ".local" / "share" / "harmonium"


# ------------------------------------------------------------------------ outputs and links
@pytest.fixture(scope="module")
def small_checkpoint(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ck") / "m.safetensors"
    assert main(["train", str(folder), *TRAIN, "--out", str(out)]) == 0
    return out


@posix_only
def test_sample_replaces_a_planted_link_and_never_writes_through_it(small_checkpoint, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("do not overwrite")
    out = tmp_path / "samples"
    out.mkdir()
    (out / "grid.png").symlink_to(outside)
    (out / "sample_0000.png").symlink_to(tmp_path / "nowhere.png")  # dangling: must not create it
    assert main(["sample", str(small_checkpoint), "--n", "4", "--steps", "5", "--seed", "0", "--out", str(out), "-q"]) == 0
    assert outside.read_text() == "do not overwrite" and not (tmp_path / "nowhere.png").exists()
    for name in ("grid.png", "sample_0000.png"):
        assert not (out / name).is_symlink() and Image.open(out / name).format == "PNG"
    assert sorted(p.name for p in out.iterdir()) == ["grid.png"] + [f"sample_{i:04d}.png" for i in range(4)]


@posix_only
def test_sample_into_a_full_disk_leaves_no_empty_png(small_checkpoint, tmp_path):
    out = tmp_path / "samples"
    script = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # not one byte fits
        from studio.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    r = subprocess.run([sys.executable, "-c", script, "sample", str(small_checkpoint), "--n", "4", "--steps", "5",
                        "--out", str(out), "-q"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write" in r.stderr and "(File too large); 0 of the 5 PNGs were written" in r.stderr
    assert list(out.iterdir()) == []


def test_a_model_that_cannot_be_saved_at_all_says_so_in_one_sentence(tmp_path):
    from models.checkpoint import CheckpointError

    def refuse(path, with_state):
        raise CheckpointError("Cannot save m.safetensors: tensor 'weight' contains NaN")

    saved = cli.save_or_recover(tmp_path / "m.safetensors", refuse)
    assert saved.path is None and len(saved.failures) == 1  # no recovery place can help
    assert saved.message() == (f"could not save the trained model to {tmp_path / 'm.safetensors'} "
                               "(Cannot save m.safetensors: tensor 'weight' contains NaN); it is lost")
    assert not (tmp_path / "xdg" / "harmonium" / "recovery").exists() or \
        list((tmp_path / "xdg" / "harmonium" / "recovery").iterdir()) == []
