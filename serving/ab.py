"""A/B tests at serving time: what a variant serves, and the exposures it causes.

A running experiment whose variants carry `{"model_alias": ...}` in their config is a recommendation
experiment: a shopper assigned to such a variant is served the registry version under that alias, loaded
and hot-swapped by its own `ModelStore` exactly like the champion. A variant without `model_alias` (the
usual control) gets the champion. An alias that cannot be served (unknown, not loaded yet, corrupt) falls
back to the champion and the response says why; the shopper is then not counted as exposed, because the
variant was not actually shown.

Exposures are logged off the request path: the page only puts (experiment, variant, shopper) on a queue
the first time this replica shows it, and a writer thread stores them in batches through
`commerce.services.experiments.record_exposure` (idempotent per experiment and shopper, so replicas
and restarts never double count).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from experiments.ab.assignment import ExperimentSpec, assign
from serving.model_store import ModelSnapshot, ModelSource, ModelStore

log = logging.getLogger(__name__)
MODEL_ALIAS = "model_alias"


@dataclass(frozen=True)
class LiveExperiment:
    """A running experiment as the request path needs it: the assignment spec and each variant's config."""

    spec: ExperimentSpec
    configs: Mapping[str, Mapping] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping) -> LiveExperiment:
        """From `commerce.experiments.Experiment.as_config()`."""
        return cls(
            ExperimentSpec.from_config(config),
            {v["name"]: dict(v.get("config") or {}) for v in config["variants"]},
        )

    @property
    def model_aliases(self) -> dict[str, str]:
        """variant -> registry alias, for the variants that name one."""
        return {v: str(c[MODEL_ALIAS]) for v, c in self.configs.items() if c.get(MODEL_ALIAS)}


@dataclass(frozen=True)
class Assignment:
    """Which model a page uses and what the shopper is exposed to by seeing it."""

    model: ModelSnapshot
    alias: str
    alias_fallback_reason: str | None
    variants: dict[str, str]  # every running experiment the shopper is in -> variant
    exposed: tuple[tuple[str, str], ...]  # (experiment, variant) actually shown by this page


class AliasModels:
    """One `ModelStore` per registry alias that a running experiment serves, besides the champion.

    `sync(aliases)` runs in the experiments refresh (a background thread in production): it adds stores
    for new aliases (loaded right away, or polled in their own thread once `start()` was called) and stops
    the ones no experiment uses any more. Readers see an immutable dict swapped in one assignment.
    """

    def __init__(
        self,
        source: ModelSource | None,
        name: str,
        poll_seconds: float,
        warm_up: Callable[[ModelSnapshot], object] | None = None,
    ):
        self.source, self.name, self.poll_seconds, self.warm_up = source, name, poll_seconds, warm_up
        self.stores: dict[str, ModelStore] = {}
        self._background = False
        self._lock = threading.Lock()

    def _source_for(self, alias: str) -> ModelSource | None:
        for_alias = getattr(self.source, "for_alias", None)
        return None if for_alias is None else for_alias(alias)

    def sync(self, aliases: Iterable[str]) -> None:
        wanted = set(aliases)
        with self._lock:
            stores = dict(self.stores)
            for alias in wanted - stores.keys():
                store = ModelStore(self._source_for(alias), self.name, self.poll_seconds, self.warm_up)
                if self._background:
                    store.start()
                else:
                    store.refresh()
                stores[alias] = store
            for alias in stores.keys() - wanted:
                stores.pop(alias).stop()
            self.stores = stores

    def start(self) -> None:
        """From now on new stores poll their alias in the background (as the champion's store does)."""
        with self._lock:
            self._background = True
            for store in self.stores.values():
                store.start()

    def stop(self) -> None:
        with self._lock:
            self._background = False
            for store in self.stores.values():
                store.stop()


def load_live_experiments(session_factory: sessionmaker[Session]) -> list[LiveExperiment]:
    from commerce.services.experiments import running_configs

    with session_factory() as session:
        return [LiveExperiment.from_config(c) for c in running_configs(session)]


def choose(
    experiments: Iterable[LiveExperiment],
    shopper_id: str,
    champion: ModelStore,
    champion_alias: str,
    aliases: AliasModels,
) -> Assignment:
    """The shopper's variants and the model to serve. The first recommendation experiment the shopper
    is in decides the model (layers keep such experiments mutually exclusive)."""
    variants: dict[str, str] = {}
    deciding: tuple[str, str, str | None] | None = None  # (experiment, variant, alias or None: champion)
    for exp in experiments:
        variant = assign(exp.spec, shopper_id)
        if variant is None:
            continue
        variants[exp.spec.name] = variant
        model_aliases = exp.model_aliases
        if deciding is None and model_aliases:
            deciding = (exp.spec.name, variant, model_aliases.get(variant))
    if deciding is None:
        return Assignment(champion.current, champion_alias, None, variants, ())
    name, variant, alias = deciding
    if alias is None or alias == champion_alias:
        return Assignment(champion.current, champion_alias, None, variants, ((name, variant),))
    store = aliases.stores.get(alias)
    snapshot = None if store is None else store.current
    if snapshot is None or snapshot.recommender is None:
        reason = "not loaded yet" if snapshot is None else snapshot.fallback_reason
        return Assignment(
            champion.current,
            champion_alias,
            f"variant {variant!r} of {name!r}: alias {alias!r} unavailable ({reason}); champion served",
            variants,
            (),
        )
    return Assignment(snapshot, alias, None, variants, ((name, variant),))


class ExposureLog:
    """Queues first exposures seen by this replica and writes them in batches from a daemon thread.

    `note` is all the request path pays: a set lookup and, the first time, a queue put. A failed write
    keeps the batch for the next attempt (the insert is idempotent), so a database hiccup loses nothing;
    a row the database refuses for good (the experiment stopped meanwhile) is dropped with a warning.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], every_seconds: float = 1.0, seen_cap: int = 1_000_000
    ):
        self.session_factory, self.every_seconds, self.seen_cap = session_factory, every_seconds, seen_cap
        self.written = 0  # first exposures stored by this replica
        self._seen: set[tuple[str, str]] = set()
        self._queue: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._pending: list[tuple[str, str, str]] = []
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, shopper_id: str, exposed: Iterable[tuple[str, str]]) -> None:
        for experiment, variant in exposed:
            key = (experiment, shopper_id)
            if key in self._seen:
                continue
            if len(self._seen) >= self.seen_cap:  # forgetting only re-sends: the insert ignores repeats
                self._seen.clear()
            self._seen.add(key)
            self._queue.put((experiment, variant, shopper_id))

    def flush(self) -> int:
        """Write everything queued so far; returns how many rows were new exposures."""
        from commerce.errors import DomainError
        from commerce.services.experiments import record_exposure

        with self._flush_lock:
            while True:
                try:
                    self._pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not self._pending:
                return 0
            new = 0
            try:
                with self.session_factory() as session:
                    for row in self._pending:
                        try:
                            with session.begin_nested():
                                new += record_exposure(session, *row)
                        except DomainError as exc:
                            log.warning("exposure %s not recorded: %s", row, exc)
                    session.commit()
            except Exception as exc:  # database unavailable: keep the batch for the next flush
                log.warning("writing %d exposures failed, will retry: %s", len(self._pending), exc)
                return 0
            self._pending.clear()
            self.written += new
            return new

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self.flush()

    def stop(self) -> None:
        """Stop the writer and store what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
