"""`crosscart doctor`: check a deployment's configuration and say what to fix.

Checks: the database answers and is migrated to the head revision; MLflow answers and the served models
have a champion; the identity key is not the development default and every stored identity was hashed
by a key the keyring holds; every coupon id and experiment, layer and variant name is in the form
lookups read (a warning); no more experiments run than the start caps admit (a warning); Redis answers
when configured; the data directory is writable. Exit code 1 when any check fails (warnings do not
fail)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import typer

DEV_IDENTITY_KEY = "crosscart-dev-identity-key"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _database(settings) -> list[Check]:
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from commerce.db import make_engine
    from commerce.migrate import alembic_config, current

    url = settings.resolved_database_url
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver or network error
        return [
            Check("database", "fail", f"unreachable: {type(exc).__name__}", "check CROSSCART_DATABASE_URL")
        ]
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    at = current(url)
    if at != head:
        return [
            Check(
                "database",
                "fail",
                f"schema at {at or 'empty'}, code expects {head}",
                "run `crosscart db upgrade`",
            )
        ]
    return [Check("database", "ok", f"reachable, schema at {head}")]


def _registry(settings) -> list[Check]:
    from training.registry import (
        ARTIFACT_KEY,
        UPLIFT_KEY,
        RegistryUnreadable,
        artifact_problem,
        champion_version,
        registry_client,
    )

    uri = settings.resolved_mlflow_uri
    try:
        client = registry_client(uri)  # never creates a missing registry file
        client.search_experiments(max_results=1)
    except RegistryUnreadable as exc:
        fix = (
            "point CROSSCART_MLFLOW_URI at the registry, restore it from its backup (with its artifacts), "
            "or, on a new deployment, train a model (`crosscart train ...`, `crosscart demo`) to create it"
        )
        return [Check("mlflow", "fail", str(exc), fix)]
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0][:200]
        return [Check("mlflow", "fail", f"cannot be read: {type(exc).__name__}: {first_line}",
                      "check CROSSCART_MLFLOW_URI")]  # fmt: skip
    checks = [Check("mlflow", "ok", "reachable")]
    for what, name, key, required in (
        ("recommender", settings.model_name, ARTIFACT_KEY, True),
        ("uplift model", settings.uplift_model_name, UPLIFT_KEY, False),
    ):
        try:
            version = champion_version(client, name, settings.model_alias)
        except Exception:
            version = None
        if version is None:
            fix = "train and register one (`crosscart train ...`, or `crosscart demo`)"
            detail = f"no {name}@{settings.model_alias}"
            checks.append(Check(what, "fail" if required else "warn", detail, fix))
            continue
        label = f"{name}@{settings.model_alias} is version {version.version}"
        problem = artifact_problem(uri, name, version.version, key)
        if problem is None:
            checks.append(Check(what, "ok", label))
        else:  # serving falls back (or keeps the version it loaded before, until it restarts)
            fix = "restore the artifact store from its backup, or train and promote a new version"
            checks.append(Check(what, "fail" if required else "warn", f"{label}, but {problem}", fix))
    return checks


def _identity(settings) -> list[Check]:
    if settings.identity_key == DEV_IDENTITY_KEY:
        return [Check("identity key", "fail", "the development default protects resident ID numbers",
                      "set CROSSCART_IDENTITY_KEY to a long random secret (docs/operations.md)")]  # fmt: skip
    if len(settings.identity_key) < 32:
        return [Check("identity key", "warn", "shorter than 32 characters", "use a long random secret")]
    return [Check("identity key", "ok", "set")]


def _identity_versions(settings) -> list[Check]:
    """Every stored identity digest must have been made by a key the keyring still holds: a person
    hashed under a forgotten key is no longer recognised, and their annual limit starts over."""
    from sqlalchemy import func, select

    import commerce.all_models  # noqa: F401
    from commerce.db import make_engine
    from commerce.errors import ValidationError
    from commerce.shoppers import ShopperIdentity

    try:
        keyring = settings.identity_keyring
    except ValidationError as exc:
        return [
            Check(
                "identity key versions",
                "fail",
                str(exc),
                "fix CROSSCART_IDENTITY_KEY_VERSION / _PREVIOUS_KEYS",
            )
        ]
    try:
        engine = make_engine(settings.resolved_database_url)
        with engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(ShopperIdentity.key_version, func.count()).group_by(ShopperIdentity.key_version)
                ).all()
            )
        engine.dispose()
    except Exception:  # unreachable or not migrated: the database check says so
        return []
    known = {keyring.version, *keyring.previous}
    lost = {v: n for v, n in counts.items() if v not in known}
    if lost:
        detail = ", ".join(f"{n} under version {v}" for v, n in sorted(lost.items()))
        return [Check("identity key versions", "fail", f"identities hashed by keys not configured: {detail}",
                      'add them to CROSSCART_IDENTITY_PREVIOUS_KEYS as {"VERSION": "key"}')]  # fmt: skip
    older = {v: n for v, n in counts.items() if v != keyring.version}
    if older:
        detail = ", ".join(f"{n} under version {v}" for v, n in sorted(older.items()))
        return [Check("identity key versions", "ok", f"current version {keyring.version}; still {detail} "
                      "(moved when the person is seen again: keep those keys)")]  # fmt: skip
    return [
        Check("identity key versions", "ok", f"every identity under the current version {keyring.version}")
    ]


def _redis(settings) -> list[Check]:
    if not settings.redis_url:
        return [
            Check(
                "redis",
                "warn",
                f"not configured: rate limits are per replica (each admits limit // "
                f"{settings.rate_limit_replicas}, CROSSCART_RATE_LIMIT_REPLICAS)",
                "set CROSSCART_REDIS_URL",
            )
        ]
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        return [Check("redis", "fail", f"unreachable: {type(exc).__name__}", "check CROSSCART_REDIS_URL")]
    try:
        if refused := _subscribe_refused(client):
            return [refused]
        config = client.config_get("maxmemory*")
    except redis.RedisError:  # CONFIG disabled (managed Redis): the policy cannot be seen from here
        return [Check("redis", "ok", "reachable (eviction policy not readable)")]
    finally:
        client.close()
    policy = config.get("maxmemory-policy", "noeviction")
    if int(config.get("maxmemory", 0) or 0) and policy != "noeviction":
        # the API counts rate limits in each replica rather than in a store that forgets them (60 calls at
        # 50 a minute, none refused), and an evicted batch of lists is refused; with noeviction a full
        # Redis fails writes, and the replicas count and keep sessions locally until it has room
        # (docs/operations.md)
        return [
            Check(
                "redis",
                "warn",
                f"full, it evicts keys (maxmemory-policy {policy}): each API replica counts rate limits "
                f"on its own (limit // {settings.rate_limit_replicas}, CROSSCART_RATE_LIMIT_REPLICAS), "
                "live sessions and published lists may be lost",
                "CONFIG SET maxmemory-policy noeviction (or give it no maxmemory, or a Redis of its own)",
            )
        ]
    return [Check("redis", "ok", "reachable")]


def _subscribe_refused(client) -> Check | None:
    """A warning if Redis refuses the revocation feed's SUBSCRIBE: an ACL user without the channel (a
    Redis 7 user gets none unless granted) passed PING, and the replicas only polled for revocations.
    So is a connection dropped or timed out after PING: it crashed doctor, the checks after it unrun."""
    import redis

    from serving.revocations import CHANNEL

    pubsub = client.pubsub()
    try:
        pubsub.subscribe(CHANNEL)
        pubsub.get_message(timeout=2)  # the confirmation, or the refusal
    except redis.ResponseError as exc:
        return Check(
            "redis",
            "warn",
            f"reachable, but the revocation channel {CHANNEL} is refused ({exc}): revoked keys reach the "
            "other replicas by polling the database, not at once",
            f"grant the user the channel: ACL SETUSER <user> &{CHANNEL}",
        )
    except redis.RedisError as exc:
        return Check(
            "redis",
            "warn",
            f"answered PING, but subscribing to the revocation channel {CHANNEL} failed "
            f"({type(exc).__name__}: {exc})",
            "check Redis and the network to it, then run doctor again",
        )
    finally:
        pubsub.close()
    return None


def _data_dir(settings) -> list[Check]:
    try:
        settings.ensure_dirs()
        probe = settings.data_dir / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return [Check("data dir", "fail", f"{settings.data_dir}: {exc.strerror}", "set CROSSCART_DATA_DIR")]
    return [Check("data dir", "ok", str(settings.data_dir))]


def _read_database(settings, read):
    """`read(session)` in a read-only transaction on the configured database, or None when it is
    unreachable or not migrated (the database check says so); the engine is disposed either way."""
    import commerce.all_models  # noqa: F401
    from commerce.db import make_engine, make_session_factory, read_only

    try:
        engine = make_engine(settings.resolved_database_url)
    except Exception:  # a URL it cannot use: the database check says so
        return None
    try:
        with read_only(make_session_factory(engine)) as session:
            return read(session)
    except Exception:
        return None
    finally:
        engine.dispose()


def _stored_names(settings) -> list[Check]:
    """Names and chosen ids stored in another form than the one lookups read cannot be found
    (`commerce.services.renormalise`)."""
    from commerce.services.renormalise import unnormalised

    found = _read_database(settings, unnormalised)
    if found is None:
        return []
    if found:
        shown = "; ".join(r.describe() for r in found[:3]) + ("; ..." if len(found) > 3 else "")
        return [
            Check(
                "stored names",
                "warn",
                f"{len(found)} not in normal form, no lookup finds them: {shown}",
                "run `crosscart db renormalise --dry-run`, then without --dry-run (docs/commerce.md)",
            )
        ]
    return [Check("stored names", "ok", "chosen ids and experiment names in normal form")]


def _experiment_caps(settings) -> list[Check]:
    """Experiments running past the start caps (started through the store directly, imported): the
    replicas serve only those the caps admit (`serving.ab.within_caps`) and leave the others out."""
    from commerce.services.experiments import running_configs
    from serving.ab import past_caps_summary, within_caps

    configs = _read_database(settings, running_configs)
    if configs is None:
        return []
    live, left_out = within_caps(configs, settings.model_alias)
    if left_out:
        return [
            Check(
                "experiments",
                "warn",
                past_caps_summary(len(configs), live, left_out),
                "stop some until within the caps: `crosscart experiment stop NAME` (docs/experiments.md)",
            )
        ]
    return [Check("experiments", "ok", f"{len(configs)} running, within the start caps")]


def run_checks(settings) -> list[Check]:
    checks: list[Check] = []
    steps = (
        _database,
        _registry,
        _identity,
        _identity_versions,
        _stored_names,
        _experiment_caps,
        _redis,
        _data_dir,
    )
    for step in steps:
        checks += step(settings)
    return checks


def doctor(as_json: bool = typer.Option(False, "--json", help="One JSON object per check.")) -> None:
    """Check this deployment's configuration (CROSSCART_* settings) and say what to fix."""
    import json

    from crosscart.settings import get_settings

    checks = run_checks(get_settings())
    for check in checks:
        if as_json:
            typer.echo(json.dumps(asdict(check)))
        else:
            mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[check.status]
            typer.echo(f"{mark} {check.name}: {check.detail}" + (f" -> {check.fix}" if check.fix else ""))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
