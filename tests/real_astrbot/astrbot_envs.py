"""Virtual environments holding the real AstrBot from PyPI, for the AstrBot tests.

AstrBot is a large application (~150 packages, ~800 MB) with pins of its own, so it never
goes into the test environment: each supported line gets a virtual environment of its own
in the repository root, gitignored by the ``.venv-astrbot*/`` pattern:

- ``.venv-astrbot-py311/``: ``astrbot==4.14.6``, the newest release that installs on
  Python 3.11 (the Python the project's CI runs);
- ``.venv-astrbot-py312/``: the newest AstrBot 4.x (``astrbot>=4,<5``), which needs
  Python 3.12; it exists only when a Python 3.12 interpreter can be found.

An environment is created once and reused: a marker file inside it records the
requirement it was installed from, and it is rebuilt from scratch when the marker is
missing (a crashed or interrupted install) or names another requirement. Creation holds
an ``fcntl`` lock, so parallel pytest processes (or xdist workers) wait for one install
instead of racing two pips into the same folder. pip's output goes to ``pip.log`` in the
environment; a failure raises with the tail of that log, which is where the reason is.

Nothing here imports AstrBot: the test process only ever talks to these environments
through subprocesses (see ``astrbot_runner.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The requirement installed into the Python 3.11 environment.
PY311_SPEC = "astrbot==4.14.6"
#: The requirement installed into the Python 3.12 environment (the newest 4.x).
PY312_SPEC = "astrbot>=4,<5"

MARKER = ".astrbot-env.json"
LOCK = ".lock"
PIP_LOG = "pip.log"

#: Bumped when the layout of an environment changes, so old ones are rebuilt.
_LAYOUT = 1

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"[astrbot-env] {msg}", file=sys.stderr, flush=True)


def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml), where the environments live."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {here}")


# ---------------------------------------------------------------------------------------------
# interpreters


def _probe_interpreter(candidate: str, want: tuple[int, int]) -> str | None:
    """Run ``candidate`` and return its real base executable if it is Python ``want``.

    The candidate may be a pyenv shim (which exists on PATH but fails when that version is
    not active) or a virtual environment's python; the base executable is what a new
    virtual environment should be created from.
    """
    code = (
        "import sys; print(sys.version_info[0], sys.version_info[1]); "
        "print(getattr(sys, '_base_executable', sys.executable) or sys.executable)"
    )
    try:
        out = subprocess.run([candidate, "-c", code], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        major, minor = (int(x) for x in out[0].split())
    except ValueError:
        return None
    if (major, minor) != want:
        return None
    base = out[1].strip()
    return base if base and os.path.exists(base) else candidate


def find_python(version: str) -> str | None:
    """A working interpreter for ``version`` ("3.11", "3.12"), or None.

    Looks at the running interpreter, then ``python<version>`` on PATH, then pyenv's
    installs (``~/.pyenv/versions/<version>*/bin`` and ``/root/.pyenv/...``), newest first.
    """
    want = tuple(int(x) for x in version.split("."))
    candidates: list[str] = []
    if sys.version_info[:2] == want:
        candidates.append(sys.executable)
    if found := shutil.which(f"python{version}"):
        candidates.append(found)
    for home in dict.fromkeys([str(Path.home()), "/root"]):
        pattern = os.path.join(home, ".pyenv", "versions", f"{version}*", "bin", f"python{version}")
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for candidate in dict.fromkeys(candidates):
        if (base := _probe_interpreter(candidate, want)) is not None:  # type: ignore[arg-type]
            return base
    return None


# ---------------------------------------------------------------------------------------------
# environments


@dataclass(frozen=True)
class AstrBotEnv:
    """A ready virtual environment with AstrBot installed."""

    name: str  #: "py311" or "py312"
    path: Path  #: the environment's folder
    spec: str  #: the pip requirement it was installed from
    astrbot_version: str  #: the AstrBot version pip resolved
    python_version: str  #: "3.11.7"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def pip_log(self) -> Path:
        return self.path / PIP_LOG

    def install(self, requirements: str | os.PathLike | Sequence[str], *, force: bool = False,
                log: Log = _stderr) -> None:
        """Install extra requirements: a requirements.txt path, or a list of pip specifiers."""
        install_requirements(self, requirements, force=force, log=log)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` (the folder itself is never deleted)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(folder: Path, data: dict) -> None:
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, folder / MARKER)


def _run_logged(cmd: list[str], log_path: Path, what: str, timeout: float,
                cwd: Path | None = None) -> None:
    """Run ``cmd`` with its output appended to ``log_path``; raise with the log's tail on failure."""
    with open(log_path, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=cwd,
                                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                                     "PYTHONUNBUFFERED": "1"}).returncode
        except subprocess.TimeoutExpired:
            rc = f"timeout after {timeout:.0f}s"
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}); last lines of {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _clear(folder: Path) -> None:
    """Empty ``folder`` except its lock file (deleting a locked file would break the lock)."""
    for entry in folder.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _query(python: Path, code: str) -> str:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=True, timeout=60, cwd=python.parent).stdout.strip()


def ensure_env(name: str, base_python: str, spec: str, *, root: Path | None = None,
               log: Log = _stderr, timeout: float = 1800) -> AstrBotEnv:
    """Create (or reuse) ``<root>/.venv-astrbot-<name>/`` with ``spec`` installed.

    Reused only when its marker records a finished install of the same ``spec`` and its
    python still runs; otherwise emptied and built again.
    """
    folder = (root or repo_root()) / f".venv-astrbot-{name}"
    with _locked(folder):
        marker = _read_marker(folder)
        python = folder / "bin" / "python"
        if (marker and marker.get("spec") == spec and marker.get("layout") == _LAYOUT
                and python.exists()):
            try:
                # not "import astrbot": that creates data/ in the working directory
                _query(python, "import importlib.metadata as m, importlib.util as u; "
                               "assert u.find_spec('astrbot'); print(m.version('astrbot'))")
                return _env_from(name, folder, marker)
            except (OSError, subprocess.SubprocessError):
                log(f"{folder.name}: marker present but astrbot is missing; rebuilding")
        start = time.monotonic()
        log(f"{folder.name}: creating with {base_python} and installing {spec!r} "
            f"(a few minutes; pip's output goes to {folder / PIP_LOG})")
        _clear(folder)
        pip_log = folder / PIP_LOG
        _run_logged([base_python, "-m", "venv", str(folder)], pip_log, "python -m venv", 300)
        _run_logged([str(python), "-m", "pip", "install", "--progress-bar", "off", spec],
                    pip_log, f"pip install {spec}", timeout)
        version = _query(python, "import importlib.metadata as m; print(m.version('astrbot'))")
        py_version = _query(python, "import platform; print(platform.python_version())")
        marker = {"layout": _LAYOUT, "spec": spec, "astrbot_version": version,
                  "python_version": py_version, "base_python": base_python,
                  "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "install_seconds": round(time.monotonic() - start, 1), "extras": []}
        _write_marker(folder, marker)
        log(f"{folder.name}: astrbot {version} on Python {py_version} ready "
            f"in {marker['install_seconds']:.0f}s")
        return _env_from(name, folder, marker)


def _env_from(name: str, folder: Path, marker: dict) -> AstrBotEnv:
    return AstrBotEnv(name=name, path=folder, spec=marker["spec"],
                      astrbot_version=marker["astrbot_version"],
                      python_version=marker["python_version"])


def install_requirements(env: AstrBotEnv, requirements: str | os.PathLike | Sequence[str], *,
                         force: bool = False, log: Log = _stderr, timeout: float = 900) -> None:
    """pip-install ``requirements`` (a requirements.txt path or a list of specifiers) into ``env``.

    Each distinct set is installed once: the hash of its text is added to the marker, and a
    later call with the same text returns at once (pip's own "already satisfied" pass takes
    seconds). The hash covers the text only: when a line points at a local folder whose
    content changed (``botrace @ file:///...``), pass ``force=True``. A requirements file's
    relative paths resolve from its own folder.
    """
    cwd = None
    if isinstance(requirements, str | os.PathLike):
        path = Path(requirements).resolve()
        content = path.read_text()
        args = ["-r", str(path)]
        cwd = path.parent
    else:
        content = "\n".join(requirements)
        args = list(requirements)
    if not content.strip():
        return
    digest = hashlib.sha256(content.encode()).hexdigest()
    with _locked(env.path):
        marker = _read_marker(env.path) or {}
        if digest in marker.get("extras", []) and not force:
            return
        log(f"{env.path.name}: installing extra requirements {args}")
        _run_logged([str(env.python), "-m", "pip", "install", "--progress-bar", "off", *args],
                    env.pip_log, f"pip install {' '.join(args)}", timeout, cwd=cwd)
        if digest not in marker.setdefault("extras", []):
            marker["extras"].append(digest)
        _write_marker(env.path, marker)


def py311_env(*, root: Path | None = None, log: Log = _stderr) -> AstrBotEnv | None:
    """The AstrBot 4.14.6 environment on Python 3.11 (None if no 3.11 interpreter exists)."""
    base = find_python("3.11")
    return None if base is None else ensure_env("py311", base, PY311_SPEC, root=root, log=log)


def py312_env(*, root: Path | None = None, log: Log = _stderr) -> AstrBotEnv | None:
    """The newest AstrBot 4.x environment on Python 3.12 (None if no 3.12 interpreter exists)."""
    base = find_python("3.12")
    return None if base is None else ensure_env("py312", base, PY312_SPEC, root=root, log=log)


if __name__ == "__main__":  # pragma: no cover - manual use: python tests/real_astrbot/astrbot_envs.py
    for make in (py311_env, py312_env):
        env = make()
        print(env if env else f"{make.__name__}: no interpreter")
