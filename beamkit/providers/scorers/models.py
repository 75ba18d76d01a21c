"""Models loaded once per process and shared by every scorer and job that asks for the same one.

A key says what was loaded where (``("clip", model, processor, device, dtype)``); the first
caller loads it, the others wait for that load instead of starting their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ...errors import BeamkitError, ErrorCode
from ..diffusers.local import free_memory

T = TypeVar("T")


class Models:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Hashable, Any] = {}
        self._failed: dict[Hashable, BeamkitError] = {}
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, load: Callable[[], T], what: str) -> T:
        """The model of ``key``, loaded by ``load`` the first time. A model that failed to load fails
        every later call at once (fatal: the job ends) instead of being fetched again per picture."""
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
                if key in self._failed:
                    raise self._failed[key]
            try:
                model = load()
            except BeamkitError as exc:
                error = exc
            except Exception as exc:
                error = BeamkitError(f"could not load {what}: {type(exc).__name__}: {exc}", ErrorCode.PROVIDER_ERROR,
                                     fatal=True)
                error.__cause__ = exc
            else:
                with self._lock:
                    self._loaded[key] = model
                    self._loading.pop(key, None)
                return model
            with self._lock:
                self._failed[key] = error
            raise error

    def forget_failures(self) -> None:
        """A new job tries the models that failed to load again; within one job a failure stands."""
        with self._lock:
            self._failed.clear()

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._loaded)

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._failed.clear()
        free_memory()


#: the process's scorer models
MODELS = Models()


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
