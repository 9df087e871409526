"""The local stack's state folder (``.optout-state/`` by default) and the snapshot file in it.

The folder holds:

- ``lock``: an ``fcntl.flock`` lock held for the stack's whole life, by ``optout local`` and by its
  moto process (which inherits the descriptor), so two stacks never share one folder;
- ``moto.snapshot``: everything moto holds (tables, buckets, queues, topics, secrets, keys, SES
  identities and outbox), pickled, compressed, replaced atomically;
- ``imports/``: the progress files of ``optout suppression import`` into this stack, so they are
  discarded together with the data they describe.

Pickling is plain ``pickle`` with a dispatch table for what moto keeps that cannot be pickled as
is (locks, conditions, cryptography keys) and for what unpickles slowly (DynamoDB's
``LimitedSizeDict`` measures the whole item on every key it is given back).
"""

from __future__ import annotations

import contextlib
import copyreg
import fcntl
import gc
import io
import json
import os
import pickle  # nosec B403 - our own state file, written by this module into a folder of ours
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from optout_local.template import ROOT

DEFAULT_STATE_DIR = ROOT / ".optout-state"
SNAPSHOT = "moto.snapshot"
IMPORTS = "imports"
LOCK = "lock"
MAGIC = b"optout-local-state 1\n"


class StateBusy(Exception):
    """Another local stack holds this state folder."""


class StateDir:
    """A state folder, locked by this process. ``StateDir.open`` returns the one this process holds."""

    _held: ClassVar[dict[Path, StateDir]] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.restoring = False  # set by prepare(): a snapshot is there and the stack will start from it
        self._fd: int | None = None
        self._prepared = False

    @classmethod
    def open(cls, path: Path, info: dict[str, Any] | None = None) -> StateDir:
        """Lock the folder ``path`` (creating it), or raise StateBusy naming who holds it."""
        path = path.expanduser().resolve()
        with cls._guard:
            if path in cls._held:
                return cls._held[path]
            state = cls(path)
            state._lock(info or {})
            cls._held[path] = state
            return state

    @classmethod
    def release(cls, path: Path) -> None:
        with cls._guard:
            state = cls._held.pop(path.expanduser().resolve(), None)
        if state is not None and state._fd is not None:
            os.close(state._fd)  # closing the last descriptor of the open file drops the flock
            state._fd = None

    def _lock(self, info: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)  # no O_TRUNC: the holder wrote it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateBusy(
                f"a local stack is already starting or running with the state folder {self.path}{holder}; "
                "stop it first, or give this one another folder with --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), **info}).encode())
        self._fd = fd

    def fileno(self) -> int:
        """The locked descriptor: pass it to a child process so the lock lasts as long as the child."""
        if self._fd is None:
            raise RuntimeError(f"state folder {self.path} is not locked")
        return self._fd

    @property
    def snapshot(self) -> Path:
        return self.path / SNAPSHOT

    @property
    def imports(self) -> Path:
        return self.path / IMPORTS

    def prepare(self, fresh: bool) -> bool:
        """Discard the saved state if ``fresh``; return whether the stack starts from a snapshot."""
        if not self._prepared:
            for leftover in self.path.glob(f".{SNAPSHOT}.*.tmp"):  # a write cut short by SIGKILL
                leftover.unlink(missing_ok=True)
            if fresh:
                self.snapshot.unlink(missing_ok=True)
                shutil.rmtree(self.imports, ignore_errors=True)
            self.restoring = self.snapshot.exists()
            self._prepared = True
        return self.restoring


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return ""
    details = [f"pid {holder['pid']}"] if "pid" in holder else []
    details += [f"{key} {holder[key]}" for key in ("api", "aws") if key in holder]
    return f" ({', '.join(details)})" if details else ""


# --- the snapshot file -------------------------------------------------------------------------


def write_snapshot(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    """Replace ``path`` atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    header = json.dumps({**meta, "written_at": time.time()}).encode() + b"\n"
    try:
        with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as handle:
            handle.write(MAGIC + header)
            handle.write(zlib.compress(data, 1))  # 20x smaller, ~40 ms for 30 MB: cheaper than writing it raw
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_snapshot(path: Path) -> tuple[dict[str, Any], bytes]:
    with path.open("rb") as handle:
        if handle.readline() != MAGIC:
            raise ValueError(f"{path} is not an optout local state snapshot")
        meta = json.loads(handle.readline())
        return meta, zlib.decompress(handle.read())


# --- what moto holds, as bytes -----------------------------------------------------------------


def capture() -> tuple[bytes, list[str]]:
    """Pickle every moto backend in use (each service, account and region), in one consistent pass.

    The caller makes sure nothing changes meanwhile. One pickle for everything keeps references
    between services (an SNS subscription and its queue) shared.
    """
    from moto import backends
    from moto.core.base_backend import BackendDict

    payload: dict[str, dict[str, dict[str, Any]]] = {}
    in_use: list[Any] = list(BackendDict._instances)  # type: ignore[misc]  # moto: every backend in use
    for backend_dict in in_use:
        name = str(backend_dict.service_name)
        try:
            registered = backends.get_backend(name)  # type: ignore[call-overload]
        except (ImportError, AttributeError):
            registered = None
        if registered is not backend_dict:
            continue  # not one moto serves by that name (cannot be put back): skip rather than fail
        payload[name] = {account: dict(regions) for account, regions in backend_dict.items()}
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch_table()
    with _no_gc():
        pickler.dump(payload)
    return buffer.getvalue(), sorted(payload)


def restore(data: bytes) -> list[str]:
    """Put the backends of a snapshot into moto's registries, before moto serves anything."""
    from moto import backends

    with _no_gc():
        payload: dict[str, dict[str, dict[str, Any]]] = pickle.loads(data)  # noqa: S301  # nosec B301 - our own file
    for name, accounts in payload.items():
        backend_dict = backends.get_backend(name)  # type: ignore[call-overload]
        for account, regions in accounts.items():
            for region, backend in regions.items():
                dict.__setitem__(backend_dict[account], region, backend)  # creates the account's dict
    return sorted(payload)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic collector off for one pass: it would scan the growing heap again and again (2-4x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_table: dict[type, Any] | None = None


def _dispatch_table() -> dict[type, Any]:
    global _table
    if _table is None:
        table: dict[type, Any] = dict(copyreg.dispatch_table)
        # Locks and conditions (SQS queues wait on one) come back new and free.
        table[type(threading.Lock())] = lambda _: (threading.Lock, ())
        table[type(threading.RLock())] = lambda _: (threading.RLock, ())
        table[threading.Condition] = lambda _: (threading.Condition, ())
        # KMS keeps a private key object per key: save it as PKCS#8 DER.
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        for key_type in (rust_openssl.rsa.RSAPrivateKey, rust_openssl.ec.ECPrivateKey):
            table[key_type] = _reduce_private_key
        # DynamoDB items: rebuild the attribute dict in one update, not one measured key at a time.
        from moto.dynamodb.models.dynamo_type import LimitedSizeDict

        table[LimitedSizeDict] = lambda attrs: (_limited_size_dict, (dict(attrs),))
        _table = table
    return _table


def _reduce_private_key(key: Any) -> tuple[Any, tuple[bytes]]:
    from cryptography.hazmat.primitives import serialization

    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return _private_key, (der,)


def _private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_private_key(der, password=None)


def _limited_size_dict(attrs: dict[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    rebuilt = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.update(rebuilt, attrs)  # the size limit was checked when the item was written
    return rebuilt
