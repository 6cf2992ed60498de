"""A/B tests at serving time: what a variant serves, and the exposures it causes.

A running experiment whose variants carry `{"model_alias": ...}` in their config is a recommendation
experiment: a shopper assigned to such a variant is served the registry version under that alias, loaded
and hot-swapped by its own `ModelStore` exactly like the champion. A variant without `model_alias` (the
usual control) gets the champion. An alias that cannot be served (unknown, not loaded yet, corrupt) falls
back to the champion and the response says why; the shopper is then not counted as exposed, because the
variant was not actually shown.

A variant whose config is `{"interleave": [alias_a, alias_b]}` serves one team-draft interleaved
page of the two aliases (either may be the champion's); one with `{"explore": epsilon}` (alone or
with `model_alias`) serves, with probability epsilon, a uniformly random page of eligible products
instead of the model's. Both log every shown product (slot, team, propensity) as impressions
(`serving.logged_pages`), besides the exposure.

Exposures are logged off the request path: the page only puts (experiment, variant, shopper) on a queue
the first time this replica shows it, and a writer thread stores them in batches through
`commerce.services.experiments.record_exposure` (idempotent per experiment and shopper, so replicas
and restarts never double count).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from commerce.db import read_only
from experiments.ab.assignment import ExperimentSpec, assign
from serving.batch_writer import Backlog, PeriodicFlush
from serving.model_store import ModelSnapshot, ModelSource, ModelStore

if TYPE_CHECKING:
    from commerce.errors import Conflict
    from commerce.experiments import Experiment

log = logging.getLogger(__name__)
MODEL_ALIAS = "model_alias"
INTERLEAVE = "interleave"
EXPLORE = "explore"


#: A registry alias the API may serve or move: variants name aliases, and each distinct one gets a model
#: store polling the registry for it, so no other string (`../../x`, a number, 10 kB) ever reaches it.
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


#: A variant's config is a small flat-ish object: nesting deeper than this (800 levels was a 500, the
#: response encoder's depth limit, after the row was written) or more than this many bytes of JSON is a 422.
MAX_CONFIG_DEPTH = 8
MAX_CONFIG_BYTES = 4096


def _alias(value) -> bool:
    return isinstance(value, str) and ALIAS.match(value) is not None


def _depth(value, limit: int) -> int:
    """Nesting depth of a JSON value, counted no further than `limit` + 1 (no recursion to exhaust)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth


def check_variant_config(config: Mapping | None) -> Mapping | None:
    """Refuse page-shaping keys serving could not apply (ValueError), before an experiment starts."""
    if not config:
        return config
    if _depth(config, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
        raise ValueError(f"config nests deeper than {MAX_CONFIG_DEPTH} levels")
    if len(json.dumps(config, separators=(",", ":"))) > MAX_CONFIG_BYTES:
        raise ValueError(f"config is longer than {MAX_CONFIG_BYTES} characters of JSON")
    pair = config.get(INTERLEAVE)
    if pair is not None and not (
        isinstance(pair, list) and len(pair) == 2 and all(_alias(a) for a in pair) and pair[0] != pair[1]
    ):
        raise ValueError("interleave must name two different model aliases")
    if config.get(MODEL_ALIAS) is not None and not _alias(config[MODEL_ALIAS]):
        raise ValueError(f"model_alias must match {ALIAS.pattern}")
    eps = config.get(EXPLORE)
    if eps is not None and not (isinstance(eps, int | float) and 0 < eps <= 1):
        raise ValueError("explore must be a probability in (0, 1]")
    if pair is not None and (eps is not None or config.get(MODEL_ALIAS)):
        raise ValueError("an interleaving variant takes no model_alias or explore")
    return config


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

    @property
    def served_aliases(self) -> set[str]:
        """Every alias a variant serves, alone or interleaved (their model stores must be loaded)."""
        out = set(self.model_aliases.values())
        for c in self.configs.values():
            out.update(str(a) for a in c.get(INTERLEAVE) or ())
        return out

    @property
    def shapes_pages(self) -> bool:
        """Whether a variant changes the recommendation page (model, interleaving or exploration)."""
        return any(c.get(MODEL_ALIAS) or c.get(INTERLEAVE) or c.get(EXPLORE) for c in self.configs.values())


@dataclass(frozen=True)
class Assignment:
    """Which model a page uses and what the shopper is exposed to by seeing it."""

    model: ModelSnapshot
    alias: str
    alias_fallback_reason: str | None
    variants: dict[str, str]  # every running experiment the shopper is in -> variant
    exposed: tuple[tuple[str, str], ...]  # (experiment, variant) actually shown by this page
    interleave: tuple[tuple[str, ModelSnapshot], tuple[str, ModelSnapshot]] | None = None
    explore: float = 0.0  # probability of a uniformly random page instead of the model's


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


#: Registry aliases that running experiments may serve besides the champion, together. Each is a model
#: store on every replica (a model in memory, a thread polling the registry): one marketer key starting
#: experiments of 20 variants, each naming an alias of its own, made every replica hold and poll 80 of
#: them after 4 starts, without bound.
MAX_EXPERIMENT_ALIASES = 8


#: Experiments running at once. Each is assigned on every recommendation page (a hash per experiment per
#: shopper) and refreshed into every replica: with no bound, a marketer key could start thousands.
MAX_RUNNING_EXPERIMENTS = 32

#: PostgreSQL advisory lock serializing experiment starts (`start_experiment`), so two at once cannot
#: both pass the caps above. (7_236_001 and 7_236_002 are commerce's history and coupon locks.)
EXPERIMENT_START_LOCK_KEY = 7_236_003


def experiment_aliases(live: Iterable[LiveExperiment], champion: str) -> set[str]:
    """The aliases the running experiments `live` serve besides the champion's: the model stores to load."""
    return {a for e in live for a in e.served_aliases} - {champion}


def _past_caps(live: list[LiveExperiment], exp: LiveExperiment, champion_alias: str) -> Conflict | None:
    """Why `exp` may not run beside the running `live` (409), or None: more than `MAX_RUNNING_EXPERIMENTS`
    at once, or more than `MAX_EXPERIMENT_ALIASES` aliases served besides `champion_alias`."""
    from commerce.errors import Conflict

    if len(live) + 1 > MAX_RUNNING_EXPERIMENTS:
        return Conflict(
            f"{len(live)} experiments are running; at most {MAX_RUNNING_EXPERIMENTS} at once: stop one first",
            code="too_many_experiments",
        )
    served = experiment_aliases([*live, exp], champion_alias)
    if len(served) > MAX_EXPERIMENT_ALIASES:
        return Conflict(
            f"running experiments would serve {len(served)} model aliases besides the champion; at most "
            f"{MAX_EXPERIMENT_ALIASES} (each is a model every replica loads): stop one first",
            code="too_many_model_aliases",
        )
    return None


def start_experiment(session: Session, name: str, champion_alias: str) -> Experiment:
    """Start the draft experiment `name` (`commerce.services.experiments.start_experiment`) unless the
    running experiments would then number more than `MAX_RUNNING_EXPERIMENTS` (409
    `too_many_experiments`) or serve more than `MAX_EXPERIMENT_ALIASES` aliases besides `champion_alias`
    (409 `too_many_model_aliases`); refused, nothing changes. The one place these caps are checked: the
    API, the console and `crosscart experiment start` all start through it.

    Starts are serialized until the caller's transaction ends (on PostgreSQL an advisory lock taken
    before anything is read; SQLite's BEGIN IMMEDIATE already serializes writers): two starts at once
    each saw the other's experiment still a draft and together went past the caps."""
    from sqlalchemy import text

    from commerce.services import experiments as store

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EXPERIMENT_START_LOCK_KEY})
    exp = store.get_experiment(session, name)
    if exp.status == "draft":  # anything else is refused by the store's own state check below
        live = [LiveExperiment.from_config(c) for c in store.running_configs(session)]
        refused = _past_caps(live, LiveExperiment.from_config(exp.as_config()), champion_alias)
        if refused is not None:
            raise refused
    return store.start_experiment(session, name)


def within_caps(configs: Sequence[Mapping], champion_alias: str) -> tuple[list[LiveExperiment], list[str]]:
    """The running experiments (`commerce.services.experiments.running_configs`) a replica serves, in
    `configs`' order (pages are decided in it), and the names of the others. More can be running than
    the caps allow (started through the store directly, imported, started before the caps): every replica
    assigned them all on every page and loaded a model store per alias, without bound. Kept are those
    `start_experiment` would have let run had they started one by one in the order they did (by
    `started_at`, then id; none last); every replica reads the same rows, so all keep the same ones."""
    order = sorted(
        range(len(configs)),
        key=lambda i: (configs[i]["started_at"] is None, configs[i]["started_at"] or datetime.min, i),
    )
    kept: dict[int, LiveExperiment] = {}
    for i in order:
        exp = LiveExperiment.from_config(configs[i])
        if _past_caps(list(kept.values()), exp, champion_alias) is None:
            kept[i] = exp
    return [kept[i] for i in sorted(kept)], [c["name"] for i, c in enumerate(configs) if i not in kept]


def past_caps_summary(running: int, live: list[LiveExperiment], left_out: list[str]) -> str:
    """What `within_caps` left out, for the replica's warning and `crosscart doctor`."""
    more = len(left_out) - 10
    shown = ", ".join(map(repr, left_out[:10])) + (f" and {more} more" if more > 0 else "")
    return (
        f"{running} experiments are running, past the start caps ({MAX_RUNNING_EXPERIMENTS} at once, "
        f"{MAX_EXPERIMENT_ALIASES} model aliases besides the champion): replicas serve {len(live)}, the "
        f"first by start time that fit, and not {shown}"
    )


class RunningExperiments:
    """A replica's view of the running experiments (`state.experiments` refreshes through `load`):
    `within_caps` of the database's, with a warning each time the ones left out change (not on every
    refresh), and a line when none are left out again."""

    def __init__(self, session_factory: sessionmaker[Session], champion_alias: str):
        self.session_factory, self.champion_alias = session_factory, champion_alias
        self.left_out: list[str] = []

    def load(self) -> list[LiveExperiment]:
        from commerce.services.experiments import running_configs

        with read_only(self.session_factory) as session:
            configs = running_configs(session)
        live, left_out = within_caps(configs, self.champion_alias)
        if left_out != self.left_out:
            if left_out:
                log.warning(
                    "%s (`crosscart doctor` lists them too)", past_caps_summary(len(configs), live, left_out)
                )
            else:
                log.info("every running experiment is within the start caps again: serving %d", len(live))
            self.left_out = left_out
        return live


def _snapshot(alias: str, champion: ModelStore, champion_alias: str, aliases: AliasModels):
    """The alias's servable snapshot, or (None, why not)."""
    if alias == champion_alias:
        return champion.current, None
    store = aliases.stores.get(alias)
    snapshot = None if store is None else store.current
    if snapshot is None or snapshot.recommender is None:
        return None, "not loaded yet" if snapshot is None else snapshot.fallback_reason
    return snapshot, None


def choose(
    experiments: Iterable[LiveExperiment],
    shopper_id: str,
    champion: ModelStore,
    champion_alias: str,
    aliases: AliasModels,
) -> Assignment:
    """The shopper's variants and the model to serve. The first recommendation experiment the shopper
    is in decides the page (layers keep such experiments mutually exclusive)."""
    variants: dict[str, str] = {}
    deciding: tuple[str, str, Mapping] | None = None  # (experiment, variant, variant config)
    for exp in experiments:
        variant = assign(exp.spec, shopper_id)
        if variant is None:
            continue
        variants[exp.spec.name] = variant
        if deciding is None and exp.shapes_pages:
            deciding = (exp.spec.name, variant, exp.configs.get(variant) or {})
    if deciding is None:
        return Assignment(champion.current, champion_alias, None, variants, ())
    name, variant, config = deciding
    pair = config.get(INTERLEAVE)
    wanted = [str(a) for a in pair] if pair else [str(config.get(MODEL_ALIAS) or champion_alias)]
    snapshots = []
    for alias in wanted:
        snapshot, why = _snapshot(alias, champion, champion_alias, aliases)
        if snapshot is None:
            return Assignment(
                champion.current,
                champion_alias,
                f"variant {variant!r} of {name!r}: alias {alias!r} unavailable ({why}); champion served",
                variants,
                (),
            )
        snapshots.append(snapshot)
    exposed = ((name, variant),)
    if pair:
        teams = ((wanted[0], snapshots[0]), (wanted[1], snapshots[1]))
        return Assignment(snapshots[0], "+".join(wanted), None, variants, exposed, interleave=teams)
    explore = float(config.get(EXPLORE) or 0.0)
    return Assignment(snapshots[0], wanted[0], None, variants, exposed, explore=explore)


class ExposureLog(PeriodicFlush):
    """Queues first exposures seen by this replica and writes them in batches from a daemon thread.

    `note` is all the request path pays: a set lookup and, the first time, a queue put. A failed write
    keeps the batch for the next attempt (the insert is idempotent), so a database hiccup loses nothing;
    a row refused for good (the experiment stopped meanwhile, text the database cannot store: a NUL, an
    over-long shopper id) is dropped with a warning.
    While the database is down at most `max_exposures` exposures and `max_pages` pages wait (a
    `Backlog`); an exposure that did not fit is noted again by the shopper's next page.
    """

    thread_name = "exposure-writer"

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        every_seconds: float = 1.0,
        seen_cap: int = 1_000_000,
        max_exposures: int = 200_000,
        max_pages: int = 20_000,
    ):
        super().__init__(every_seconds)
        self.session_factory, self.seen_cap = session_factory, seen_cap
        self.written = 0  # first exposures stored by this replica
        self._seen: set[tuple[str, str]] = set()
        self.exposures = Backlog("exposures", max_exposures)
        self.pages = Backlog("logged pages", max_pages)
        self.pages_written = 0

    @property
    def backlogs(self) -> tuple[Backlog, ...]:
        return (self.exposures, self.pages)

    def note(self, shopper_id: str, exposed: Iterable[tuple[str, str]]) -> None:
        for experiment, variant in exposed:
            key = (experiment, shopper_id)
            if key in self._seen or not self.exposures.put((experiment, variant, shopper_id)):
                continue  # not marked seen when it did not fit: the next page notes it again
            if len(self._seen) >= self.seen_cap:  # forgetting only re-sends: the insert ignores repeats
                self._seen.clear()
            self._seen.add(key)

    def note_page(self, experiment: str, variant: str, shopper_id: str, rows: list[dict], ts) -> None:
        """Queue the impressions of one logged page (every page, not only the first)."""
        self.pages.put((experiment, variant, shopper_id, rows, ts))

    def flush(self) -> int:
        """Write everything queued so far; returns how many rows were new exposures."""
        from sqlalchemy.exc import DataError

        from commerce.errors import DomainError
        from commerce.services.experiments import record_exposure, record_impressions

        refused = (DomainError, DataError)  # for good: the experiment stopped, text the database refuses

        with self._flush_lock:
            exposures, pages_queued = self.exposures.drain(), self.pages.drain()
            if not exposures and not pages_queued:
                return 0
            new = pages = 0
            try:
                with self.session_factory() as session:
                    for row in exposures:
                        try:
                            with session.begin_nested():
                                new += record_exposure(session, *row)
                        except refused as exc:
                            log.warning("exposure %s not recorded: %s", row, exc)
                    for experiment, variant, shopper, rows, ts in pages_queued:
                        try:
                            with session.begin_nested():
                                record_impressions(session, experiment, variant, shopper, rows, ts)
                                pages += 1
                        except refused as exc:
                            log.warning("page of %s for %s not recorded: %s", experiment, shopper, exc)
                    session.commit()
            except Exception as exc:  # database unavailable: keep the batch for the next flush
                log.warning("writing %d exposures failed, will retry: %s", len(exposures), exc)
                return 0
            self.exposures.stored()
            self.pages.stored()
            self.written += new
            self.pages_written += pages
            return new
