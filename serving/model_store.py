"""The served recommender: loaded from the registry alias at start, hot-swapped when the alias moves.

The store holds one immutable `ModelSnapshot`; a request reads the reference once and uses that snapshot to
the end, while the poller builds the next snapshot aside and swaps the reference in a single assignment, so
a swap never drops or mixes a request. When no model can be loaded the snapshot has no recommender and a
`fallback_reason`, and the API answers from catalog popularity instead of failing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.logistics.delivery import DeliveryTimeModel
from models.recommenders.base import Recommender
from models.recommenders.common import top_n
from models.uplift.base import CouponUpliftModel
from serving.refresh import FailureCode, failure_code
from training.registry import RegistryNotRead

log = logging.getLogger(__name__)
_EMPTY = (np.array([], dtype=object), np.array([], dtype=np.float32))


class ModelSource(Protocol):
    """Where models come from: the MLflow registry in production, a fake in tests."""

    def champion(self) -> str | None:
        """The version the alias points to, or None when the registry has none."""

    def for_alias(self, alias: str) -> ModelSource:
        """The same registry read through another alias (an experiment's challenger)."""

    def load(self, version: str) -> Any:
        """The recommender of `version`; raises on a missing or corrupt artifact."""


@dataclass(frozen=True, eq=False)
class ModelSnapshot:
    name: str
    version: str | None
    # the uplift store's snapshots hold a CouponUpliftModel, the delivery store's a DeliveryTimeModel
    recommender: Recommender | CouponUpliftModel | DeliveryTimeModel | None
    fallback_reason: str | None = None
    loaded_at: float = field(default_factory=time.time)
    _scores: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cache_size: int = 100_000  # shoppers whose scores stay memoised
    _positions: dict = field(default_factory=dict, repr=False)
    _item_maps: dict = field(default_factory=dict, repr=False)

    @property
    def model_label(self) -> str:
        """What responses report as the model: the recommender's own name, or `popularity`."""
        if self.recommender is None:
            return "popularity"
        return str(getattr(self.recommender, "name", type(self.recommender).__name__))

    def knows(self, shopper_id: str) -> bool:
        """Whether the recommender learned `shopper_id` exactly as spelt (`Recommender.knows_user`)."""
        return self.recommender is not None and self.recommender.knows_user(shopper_id)

    def warm(self, shopper_ids: list[str], k: int, catalog) -> int:
        """Precompute the top-k of these shoppers (before the snapshot goes live); returns how many."""
        self.item_positions(catalog)
        for shopper in shopper_ids:
            self.top_positions(shopper, k, catalog)
        return len(shopper_ids)

    def item_positions(self, catalog) -> np.ndarray | None:
        """Catalog position of each of the model's items (-1: not in the catalog), for models that score
        one user's whole row (`Recommender.scored_items` / `user_scores`). Built once per catalog
        snapshot, ideally before it goes live (see serving.app); the maps of the two newest snapshots
        are kept, so requests still on the previous one do not rebuild theirs."""
        item_ids = None if self.recommender is None else self.recommender.scored_items()
        if item_ids is None:
            return None
        stamp = (id(catalog), catalog.built_at)
        mapping = self._item_maps.get(stamp)
        if mapping is None:
            mapping = catalog.positions(np.asarray(item_ids, dtype=object))
            with self._lock:
                self._item_maps[stamp] = mapping
                while len(self._item_maps) > 2:
                    self._item_maps.pop(next(iter(self._item_maps)))
        return mapping

    def top_positions(self, shopper_id: str, k: int, catalog) -> tuple[np.ndarray, np.ndarray]:
        """`top_items` as positions in `catalog` (-1: not in it), remembered until the catalog changes."""
        mapping = self.item_positions(catalog)
        if mapping is not None:  # fast scoring: model item indexes map straight to catalog positions
            cols, scores = self._top_cols(shopper_id, k)
            return mapping[cols], scores
        items, scores = self.top_items(shopper_id, k)
        stamp = (id(catalog), catalog.built_at)
        cached = self._positions.get((shopper_id, k))
        if cached is None or cached[0] != stamp:
            cached = (stamp, catalog.positions(items))
            self._positions[(shopper_id, k)] = cached
        return cached[1], scores

    def _top_cols(self, shopper_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A `user_scores` model's top-k as (model item indexes, scores), memoised like `top_items`."""
        key = ("cols", shopper_id, k)
        with self._lock:
            hit = self._scores.get(key)
            if hit is not None:
                self._scores.move_to_end(key)
                return hit
        scores = self.recommender.user_scores(shopper_id)
        if scores is None:
            entry = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32))
        else:
            cols = top_n(scores, k)
            entry = (cols, scores[cols].astype(np.float32))
        self._remember(key, entry)
        return entry

    def top_items(self, shopper_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's top-k for a shopper as (item ids, scores), memoised per snapshot (a new version
        starts a fresh cache). Arrays, not tuples, keep a cached shopper at a few kilobytes."""
        if self.recommender is None:
            return _EMPTY
        key = (shopper_id, k)
        with self._lock:
            hit = self._scores.get(key)
            if hit is not None:
                self._scores.move_to_end(key)
                return hit
        ranked = self.recommender.recommend([shopper_id], n=k, exclude_seen=False)[0]
        entry = (
            np.array([item for item, _ in ranked], dtype=object),
            np.array([score for _, score in ranked], dtype=np.float32),
        )
        self._remember(key, entry)
        return entry

    def _remember(self, key: tuple, entry: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            self._scores[key] = entry
            if len(self._scores) > self.cache_size:
                evicted, _ = self._scores.popitem(last=False)
                self._positions.pop(evicted, None)


#: How long serving waits on MLflow's HTTP API. MLflow's own defaults (120 s a read, 7 retries with
#: backoff) kept a replica unready, and every model poll and /v1/models request blocked, for over a
#: quarter of an hour when the registry accepted connections and never answered. The poll is the retry.
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def bound_mlflow_waits(environ: MutableMapping[str, str]) -> None:
    """Install `MLFLOW_HTTP_BOUNDS` in the process environment (MLflow reads it on every call), unless
    the operator set those variables."""
    for name, value in MLFLOW_HTTP_BOUNDS.items():
        environ.setdefault(name, value)


class MlflowModelSource:
    """Reads `models:/<name>@<alias>` through training.registry (imported lazily: MLflow is slow to load).

    `loader(tracking_uri, name, version)` turns a version into the served object: by default the
    recommender (training.registry.load_recommender_version)."""

    def __init__(
        self, tracking_uri: str, name: str, alias: str, loader: Callable[[str, str, str], Any] | None = None
    ):
        self.tracking_uri, self.name, self.alias = tracking_uri, name, alias
        self._loader = loader

    def for_alias(self, alias: str) -> MlflowModelSource:
        return MlflowModelSource(self.tracking_uri, self.name, alias, self._loader)

    def champion(self) -> str | None:
        from training.registry import champion_version, registry_client

        found = champion_version(registry_client(self.tracking_uri), self.name, self.alias)
        return None if found is None else str(found.version)

    def load(self, version: str) -> Any:
        if self._loader is not None:
            return self._loader(self.tracking_uri, self.name, version)
        from training.registry import load_recommender_version

        return load_recommender_version(self.tracking_uri, self.name, version)


class ModelStore:
    """Current model snapshot plus the background poll that swaps it.

    `warm_up(snapshot)`, when given, runs on a newly loaded snapshot before it goes live (e.g. precompute
    the most active shoppers' scores), so the swap never exposes a cold cache to traffic.
    """

    def __init__(
        self,
        source: ModelSource | None,
        name: str,
        poll_seconds: float = 30.0,
        warm_up: Callable[[ModelSnapshot], object] | None = None,
    ):
        self.source = source
        self.name = name
        self.poll_seconds = poll_seconds
        self.warm_up = warm_up
        self.decided = False  # the first check finished: serving a model or, knowingly, the fallback
        self.on_change: Callable[[ModelSnapshot], object] | None = None  # e.g. the model-version metric
        self._current = ModelSnapshot(name=name, version=None, recommender=None, fallback_reason="not loaded")
        # (version, "load-failed" or "score-failed", the error) the alias points at but cannot serve
        self.broken: tuple[str, str, str] | None = None
        self.registry_error: FailureCode | None = None  # why the last alias check failed (None: it succeeded)
        self.registry_message: str | None = None  # and the error's whole message (admins only: paths, hosts)
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ModelSnapshot:
        return self._current

    @current.setter
    def current(self, snapshot: ModelSnapshot) -> None:
        self._current = snapshot
        if self.on_change is not None:
            self.on_change(snapshot)

    def refresh(self) -> bool:
        """Check the alias and load a new version if it moved; True when the snapshot changed.

        A version that fails to load (or to warm up) is remembered in `broken` and not downloaded again
        until the alias moves; if nothing was ever loaded the store stays on the popularity fallback with
        the reason recorded.
        """
        try:
            return self._refresh()
        finally:
            self.decided = True

    def _refresh(self) -> bool:
        if self.source is None:
            return self._set_fallback("no model registry configured")
        try:
            version = self.source.champion()
        except Exception as exc:  # registry unreachable or unreadable: keep whatever we serve now
            return self._registry_failed(exc)
        self.registry_error = self.registry_message = None
        if version is None:
            return self._set_fallback(f"no model registered as {self.name}")
        if version == self.current.version or (self.broken is not None and version == self.broken[0]):
            return False  # nothing new, or the version already found broken: wait for the alias to move
        self.broken = None
        try:
            recommender = self.source.load(version)
        except RegistryNotRead as exc:  # the version may be whole: asked again at the next poll
            return self._registry_failed(exc)
        except Exception as exc:  # corrupt or missing artifact
            log.error("loading %s version %s failed: %s", self.name, version, exc)
            self.broken = (version, "load-failed", f"{type(exc).__name__}: {exc}")
            if self.current.recommender is None:
                self.current = ModelSnapshot(
                    name=self.name,
                    version=version,
                    recommender=None,
                    fallback_reason=f"version {version} failed to load",
                )
                return True
            return False
        snapshot = ModelSnapshot(name=self.name, version=version, recommender=recommender)
        if self.warm_up is not None:
            try:
                self.warm_up(snapshot)
            except Exception as exc:  # a model that cannot score is as unusable as one that cannot load
                log.error("warming %s version %s failed: %s", self.name, version, exc)
                self.broken = (version, "score-failed", f"{type(exc).__name__}: {exc}")
                return False
        self.swaps += 1
        self.current = snapshot
        log.info("serving %s version %s", self.name, version)
        return True

    def _registry_failed(self, error: BaseException) -> bool:
        log.warning("model registry check failed: %s", error)
        # one word for /ready (a registry file missing or corrupt says which); the message, which can
        # name the file's path or the server's address, for the log and admins
        code = failure_code(error)  # an error of no known kind (MLflow's own): the registry did not answer
        self.registry_error = "unavailable" if code == "failed" else code
        self.registry_message = f"{type(error).__name__}: {error}"
        if self.current.recommender is None:
            return self._set_fallback(f"registry {self.registry_error}")
        return False

    def _set_fallback(self, reason: str) -> bool:
        if self.current.recommender is None and self.current.fallback_reason == reason:
            return False
        if self.current.recommender is not None:
            # The alias vanished: keep serving the loaded model rather than degrading.
            return False
        self.current = ModelSnapshot(name=self.name, version=None, recommender=None, fallback_reason=reason)
        return True

    def start(self) -> None:
        """Load and poll in a daemon thread: the API answers (from popularity) while the first model
        loads and warms up."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="model-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
